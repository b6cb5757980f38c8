"""Strict numerics for the whole suite: float64 and no silent rank promotion."""

import os
from pathlib import Path

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
    """Folder of the shared CM1 reference output; skips where it is not beside the repo."""
    if not CM1_MAIN.exists():
        pytest.skip(f"CM1 reference data not found at {CM1_DIR} (set XLEX_CM1_DATA)")
    return CM1_DIR
