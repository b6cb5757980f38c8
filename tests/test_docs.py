"""The documentation builds with Sphinx, warnings treated as errors.

This runs the command from ``docs/conf.py`` and ``docs/install.md``
(``python -m sphinx -W --keep-going -b html docs <out>``) in a subprocess, into
a temporary folder, so a docstring that Sphinx cannot parse, a broken link
between pages or a page missing from the table of contents fails the suite.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
# The extensions docs/conf.py loads (the theme is optional: it falls back to alabaster).
REQUIRED = {"sphinx": "sphinx", "myst_nb": "myst-nb"}


@pytest.mark.slow
def test_sphinx_build_has_no_warnings(tmp_path):
    missing = [pip for module, pip in REQUIRED.items()
               if importlib.util.find_spec(module) is None]
    if missing:
        pytest.skip(f"the docs build needs {', '.join(missing)} "
                    f"(pip install -e '.[docs]')")
    out = tmp_path / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (
        f"sphinx exited with {result.returncode}\n--- stderr ---\n{result.stderr[-6000:]}"
        f"\n--- stdout (tail) ---\n{result.stdout[-2000:]}")
    for page in ("index", "install", "quickstart", "cases", "cm1", "running", "sgs", "surface",
                 "training", "parallel", "troubleshooting", "api", "contract", "validation",
                 "contributing", "notebooks/01_warm_bubble_vs_cm1",
                 "notebooks/02_gray_zone_smagorinsky", "notebooks/03_train_neural_sgs"):
        assert (out / f"{page}.html").is_file(), f"{page}.html was not built"
    api = (out / "api.html").read_text(encoding="utf-8")
    for name in ("xlex.accessor.LexAccessor.integrate", "xlex.cases.warm_bubble",
                 "xlex.io.cm1.open_cm1", "xlex.core.errors.BlowUpError",
                 "xlex.runner.resume",
                 # the physics of a run (xlex.Physics and its schemes, xlex.make_step) and
                 # the resolution of integrate's options
                 "xlex.core.model.Physics", "xlex.core.model.make_step",
                 "xlex.core.model.parameters",
                 "xlex.core.dynamics.numerics.Advection",
                 "xlex.core.dynamics.numerics.PressureSolver",
                 "xlex.core.physics.smagorinsky.Smagorinsky",
                 "xlex.core.physics.dynamic_smagorinsky.DynamicSmagorinsky",
                 "xlex.core.physics.surface.BulkSurface",
                 "xlex.core.physics.rotation.FPlane",
                 "xlex.core.physics.scheme.PhysicsScheme",
                 "xlex.options.resolve_physics", "xlex.options.recorded_physics",
                 "xlex.cases.convective_boundary_layer", "xlex.cases.gravity_wave",
                 "xlex.core.physics.dynamic_smagorinsky.dynamic_smagorinsky_viscosity",
                 "xlex.core.physics.surface.bulk_surface_fluxes",
                 # the compilation cache and the training pieces of xlex.ml
                 "xlex.compilation_cache.enable", "xlex.ml.training.train_online",
                 "xlex.ml.training.calibrate", "xlex.ml.losses.rollout_loss",
                 "xlex.ml.paper.truth_runs",
                 # runs over several devices
                 "xlex.core.parallel.make_mesh", "xlex.core.parallel.domain_split",
                 "xlex.runner.run_mesh"):
        assert f'id="{name}"' in api, f"{name} is missing from the API reference"
