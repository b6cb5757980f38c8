"""Zarr stores (``store="run.zarr"``) and determinism of whole runs."""

import shutil

import numpy as np
import pytest
import xarray as xr

import xlex
from xlex.options import recorded_physics

zarr = pytest.importorskip("zarr")

FIELDS = ("u", "v", "w", "th", "qv", "pipert")
RUN = dict(dt=20.0, output_every="1min", precision="float64", progress=False)


@pytest.fixture(scope="module")
def initial():
    return xlex.cases.warm_bubble(theta_c=5.0, dx=2000.0)


@pytest.fixture(scope="module")
def reference(initial):
    return initial.lex.integrate("4min", **RUN)


def test_same_inputs_give_bit_identical_output(initial, reference):
    again = initial.lex.integrate("4min", **RUN)
    for name in FIELDS:
        assert np.array_equal(again[name].values, reference[name].values), name


def test_zarr_store_holds_every_record(initial, reference, tmp_path):
    path = tmp_path / "run.zarr"
    out = initial.lex.integrate("4min", store=path, **RUN)
    stored = xr.open_zarr(path, consolidated=False).load()
    assert stored.sizes["time"] == 5
    assert stored.attrs["xlex_status"] == "complete"
    assert stored.attrs["xlex_dt"] == 20.0
    assert recorded_physics(stored.attrs) == xlex.Physics()  # the xlex_physics attribute
    assert stored["th"].attrs["standard_name"] == "air_potential_temperature"
    for name in FIELDS:
        assert np.array_equal(stored[name].values, out[name].values), name
        assert np.array_equal(stored[name].values, reference[name].values), name


@pytest.mark.parametrize("keep", [1, 3])
def test_zarr_resume_after_a_half_written_record_is_bit_identical(initial, reference, tmp_path,
                                                                   keep):
    path = tmp_path / "run.zarr"
    initial.lex.integrate("4min", store=path, **RUN)
    group = zarr.open_group(path, mode="r+")
    group["record_complete"][keep:] = 0  # as if killed while writing record `keep`
    group["th"][keep:] = np.nan
    assert xlex.io.store.complete_records(path) == keep
    resumed = xlex.resume(path, progress=False)
    assert resumed.sizes["time"] == 5
    np.testing.assert_array_equal(resumed["time"].values, reference["time"].values)
    for name in FIELDS:
        assert np.array_equal(resumed[name].values, reference[name].values), name


def test_zarr_resume_after_a_truncated_append(initial, reference, tmp_path):
    """A kill between xarray's appends of two arrays leaves arrays of unequal length."""
    path = tmp_path / "run.zarr"
    initial.lex.integrate("3min", store=path, **RUN)
    group = zarr.open_group(path, mode="r+")
    th = group["th"]
    th.resize((th.shape[0] + 1,) + th.shape[1:])  # one array got a 5th record, others not
    resumed = xlex.resume(path, "1min", progress=False)
    assert resumed.sizes["time"] == 5
    for name in FIELDS:
        assert np.array_equal(resumed[name].values, reference[name].values), name


def test_existing_zarr_store_is_not_overwritten(initial, tmp_path):
    path = tmp_path / "run.zarr"
    initial.lex.integrate("1min", store=path, **RUN)
    before = sorted(p.name for p in path.iterdir())
    with pytest.raises(xlex.XlexError, match="run.zarr"):
        initial.lex.integrate("1min", store=path, **RUN)
    assert sorted(p.name for p in path.iterdir()) == before
    out = initial.lex.integrate("2min", store=path, overwrite=True, **RUN)
    assert xr.open_zarr(path, consolidated=False).sizes["time"] == out.sizes["time"] == 3
    shutil.rmtree(path)


def test_unknown_store_suffix_is_refused(initial, tmp_path):
    with pytest.raises(xlex.OptionError, match=r"\.nc or \.zarr"):
        initial.lex.integrate("1min", store=tmp_path / "run.h5", **RUN)
