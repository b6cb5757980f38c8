"""The layout shows the architecture: the pure-JAX core (xlex/core) imports
neither xarray, netCDF4 nor tqdm, nor any xlex module outside the core; and
importing xlex changes no environment variable. Checked from the source with
``ast``, so a lazy import inside a function is caught too."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import xlex

PACKAGE = Path(xlex.__file__).resolve().parent
CORE = PACKAGE / "core"
#: Libraries the core must not use: the edges convert to and from them.
FORBIDDEN = ("xarray", "netCDF4", "tqdm", "dask", "matplotlib", "zarr", "cf_xarray", "h5netcdf")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            if module == "xlex":  # from xlex import runner: the submodule is what counts
                found += [(node.lineno, f"xlex.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, module))
    return found


def core_violations(path: Path) -> list[str]:
    bad = []
    for line, module in imported_modules(path):
        top = module.split(".")[0]
        if top in FORBIDDEN:
            bad.append(f"{path.name}:{line} imports {module}")
        elif top == "xlex" and not (module == "xlex.core" or module.startswith("xlex.core.")):
            bad.append(f"{path.name}:{line} imports the edge module {module}")
    return bad


CORE_FILES = sorted(CORE.rglob("*.py"))


def test_the_core_has_the_modules_of_the_architecture():
    names = {p.relative_to(CORE).as_posix() for p in CORE_FILES}
    for module in ("grid.py", "state.py", "operators.py", "thermo.py", "stepping.py",
                   "model.py", "dynamics/advection.py", "dynamics/pressure.py",
                   "physics/scheme.py", "physics/smagorinsky.py"):
        assert module in names


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.relative_to(CORE).as_posix())
def test_core_module_imports_no_edge_and_no_io_library(path):
    assert core_violations(path) == []


def test_the_check_catches_a_forbidden_import(tmp_path):
    fake = CORE / "_layout_probe.py"
    try:
        fake.write_text("import jax\n\ndef f():\n    import xarray as xr\n    from xlex import "
                        "runner\n    from ..io import store\n")
        bad = core_violations(fake)
    finally:
        fake.unlink()
    assert len(bad) == 3 and "xarray" in bad[0] and "xlex.runner" in bad[1] \
        and "xlex.io" in bad[2]


def test_importing_xlex_sets_no_environment_variable():
    code = ("import os, json; before = dict(os.environ); import xlex; "
            "print(json.dumps(sorted(k for k in os.environ if os.environ.get(k) != "
            "before.get(k))))")
    env = {k: v for k, v in os.environ.items() if k != "HDF5_USE_FILE_LOCKING"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_importing_xlex_and_xlex_ml_loads_no_flax_or_plotting():
    """flax (and the 60 MB it pulls) loads when a network is first used, and
    matplotlib when a figure is drawn; a cold ``import xlex`` needs neither."""
    code = ("import sys, xlex, xlex.ml; xlex.ml.make_training_data; "
            "print(sorted(m for m in ('flax', 'optax', 'orbax', 'matplotlib') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["network.py", "neural_sgs.py"])
def test_the_network_and_the_scheme_are_pure_jax(name):
    """The neural scheme runs inside the core's step: like the core, it uses no
    I/O or plotting library."""
    bad = [f"{name}:{line} imports {m}" for line, m in imported_modules(PACKAGE / "ml" / name)
           if m.split(".")[0] in FORBIDDEN]
    assert not bad, bad
