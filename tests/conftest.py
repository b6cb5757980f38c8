"""Strict numerics for the whole suite: float64 and no silent rank promotion."""

import os
import shutil
import tempfile
from pathlib import Path

# The suite never writes the user's compilation cache: it shares one of its own,
# made here (in pytest's main process, before xdist starts its workers, which
# inherit the variable) and removed at the end, so that the workers, the
# subprocesses tests start and the notebooks load what another already compiled.
# XLEX_COMPILATION_CACHE=0 in the environment turns it off.
if "XLEX_COMPILATION_CACHE" not in os.environ:
    os.environ["XLEX_COMPILATION_CACHE"] = tempfile.mkdtemp(prefix="xlex-test-cache-")
    os.environ["XLEX_TEST_CACHE_OWNER"] = str(os.getpid())

import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

REPO = Path(__file__).resolve().parents[1]
CM1_DIR = Path(os.environ.get("XLEX_CM1_DATA", REPO.parent / "shared" / "data" / "cm1"))
CM1_MAIN = CM1_DIR / "cm1_bubble_dT5K_dx400m.nc"
CM1_BASE = CM1_DIR / "cm1_bubble_dT5K_dx400m_initial_basestate.nc"


@pytest.fixture(scope="session")
def cm1_dir():
    """Folder of the shared CM1 reference output; skips where it is not beside the repo.

    Only tests that need more than the packaged extract use it (the full run's 21
    records); the reason says where the data live, since a new clone lacks them.
    """
    if not CM1_MAIN.exists():
        pytest.skip(f"needs the full CM1 run ({CM1_MAIN.name}, 23 MB), not found in "
                    f"{CM1_DIR}: it lives in shared/data/cm1 beside the repository; copy "
                    "that folder there or set XLEX_CM1_DATA to it (docs/contributing.md)")
    return CM1_DIR


def pytest_sessionfinish(session):
    """The process that made the suite's compilation cache removes it."""
    if os.environ.get("XLEX_TEST_CACHE_OWNER") == str(os.getpid()):
        shutil.rmtree(os.environ["XLEX_COMPILATION_CACHE"], ignore_errors=True)


#: The slowest files of the suite, slowest first (seconds of one CI run, 2 cores):
#: xdist (``--dist loadfile --no-loadscope-reorder``) hands out whole files in
#: this order, so the long ones start first and no worker waits at the end on a
#: notebook started last. Files not named follow in their usual order.
SLOW_FILES = (
    "notebooks/03_train_neural_sgs.ipynb", "tests/test_training.py", "tests/test_parallel.py",
    "tests/test_seam.py",
    "tests/test_store_kill.py", "tests/test_stepping.py", "tests/test_store.py",
    "tests/test_cli.py", "tests/test_density_current.py", "tests/test_model.py",
    "notebooks/02_gray_zone_smagorinsky.ipynb", "tests/test_convergence.py",
    "tests/test_gravity_waves.py", "tests/test_sponge.py",
    "tests/test_smagorinsky.py", "tests/test_neural_sgs.py", "tests/test_bench.py",
    "tests/test_dynamic_smagorinsky.py", "tests/test_cases.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FILES)}

    def key(item):
        path = item.nodeid.split("::")[0]
        return rank.get(path, len(SLOW_FILES))

    items.sort(key=key)  # stable: the order within a file, and of the rest, is kept
