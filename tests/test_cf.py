"""The CF details of the files xlex writes (docs/contract.md, "CF compliance").

A file xlex writes has no ``_FillValue`` on its coordinates, stores every field
in time in the run's precision, says whether a temperature is on the scale or a
difference, and keeps CM1's elapsed-time ``units = "seconds"``, so that plain
``xr.open_dataset`` of an xlex file and of a CM1 file still line up. The run is
a cheap stand-in step on the CM1 grid (400 m, 60 x 60 x 30), so nothing here
waits for the physics.
"""

from __future__ import annotations

import dataclasses
from importlib.resources import as_file, files

import netCDF4
import numpy as np
import pytest
import xarray as xr
from fakes import solve_info

import xlex
import xlex.runner
from xlex import align, datasets
from xlex.io import cf

COORDS = ("time", *cf.SPATIAL_DIMS)
EXTRACT = files("xlex").joinpath("data", datasets.CM1_WARM_BUBBLE_FILE)


def _warming_step(grid, physics, dt):
    """A stand-in ``make_step``: th warms a little every step (cheap to compile)."""
    def step(s, base, params):
        return dataclasses.replace(s, th=s.th + 0.01), solve_info(s.th.dtype)
    return step


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A float32 store of 3 records (one created, two appended) on CM1's grid."""
    path = tmp_path_factory.mktemp("cf") / "bubble.nc"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(xlex.runner, "make_step", _warming_step)
        mp.setattr(xlex.runner, "_COMPILED", {})
        xlex.cases.warm_bubble(dx=400.0).lex.integrate(
            "2min", dt=12.0, output_every="1min", precision="float32", progress=False,
            store=path)
    return path


@pytest.fixture(scope="module")
def cm1():
    return datasets.cm1_warm_bubble()


def test_coordinates_have_no_fill_value(written):
    with netCDF4.Dataset(written) as nc:
        for name in COORDS:
            assert "_FillValue" not in nc.variables[name].ncattrs(), name


def test_fields_in_time_are_in_the_run_precision(written):
    with netCDF4.Dataset(written) as nc:
        assert len(nc.dimensions["time"]) == 3
        for name, var in nc.variables.items():
            if var.dimensions[:1] == ("time",) and var.dtype.kind == "f" and name != "time":
                assert var.dtype == np.float32, name  # thpert, qvpert, pressure_iterations too
        for name in cf.BASE_STATE:  # profiles keep the precision they were computed in
            assert nc.variables[name].dtype == np.float64, name


def test_temperatures_say_scale_or_difference(written, cm1):
    on_scale, difference = "temperature: on_scale", "temperature: difference"
    with xr.open_dataset(written) as ds:
        for name in ("th", "th0", "thrho"):
            assert ds[name].attrs["units_metadata"] == on_scale, name
        assert ds["thpert"].attrs["units_metadata"] == difference
    assert cm1["th"].attrs["units_metadata"] == on_scale
    assert cm1["thpert"].attrs["units_metadata"] == difference


def test_xlex_and_cm1_files_line_up_in_plain_xarray(written, cm1):
    with xr.open_dataset(written) as ours, as_file(EXTRACT) as path, \
            xr.open_dataset(path) as theirs:
        for ds in (ours, theirs):  # elapsed seconds, not dates, in both
            assert ds["time"].dtype.kind == "f"
            assert ds["time"].attrs["units"] == "seconds" and ds["time"].attrs["axis"] == "T"
        a, b = xr.align(ours["time"], theirs["time"].astype(np.float64), join="inner")
        np.testing.assert_array_equal(a, [0.0, 60.0])
        xa, xb = align.align(ours, cm1, "thpert")
        np.testing.assert_array_equal(align.time_seconds(xa), [0.0, 60.0])
        assert xa.shape == xb.shape == (2, 30, 60, 60)


def test_cm1_dataset_written_again_has_no_coordinate_fill_value(tmp_path, cm1):
    path = tmp_path / "cm1.nc"
    cm1.isel(time=[0]).to_netcdf(path)
    with netCDF4.Dataset(path) as nc:
        for name in COORDS:
            assert "_FillValue" not in nc.variables[name].ncattrs(), name


def test_annotate_leaves_its_input_alone():
    ds = xr.Dataset(coords={"xh": ("xh", [200.0, 600.0])})
    ds["xh"].encoding["dtype"] = "float32"
    out = cf.annotate(ds)
    assert out["xh"].encoding == {"dtype": "float32", "_FillValue": None}
    assert ds["xh"].encoding == {"dtype": "float32"} and ds["xh"].attrs == {}
