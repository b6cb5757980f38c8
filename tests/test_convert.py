"""Bad input fails fast, before any compilation, with a clear message naming what is wrong.

Every test here runs with ``xlex.runner.make_step`` replaced by a sentinel that
raises :class:`ReachedCompilation`: a validation error must come before the
model is built, and a Dataset or option that passes validation shows up as
``ReachedCompilation`` (nothing in this file compiles a model).
"""

import re
import time

import numpy as np
import pytest
import xarray as xr

import xlex
import xlex.runner
from xlex.core.errors import (
    CFLError,
    DatasetError,
    OptionError,
    OptionTypeError,
    XlexError,
)
from xlex.io.convert import dataset_to_inputs

#: Validation is numpy on a 12x12x6 grid: far below this, compiling takes seconds.
FAST_SECONDS = 2.0


class ReachedCompilation(Exception):
    """Raised by the make_step sentinel: validation passed."""


@pytest.fixture(autouse=True)
def no_compilation(monkeypatch):
    def sentinel(*args, **kwargs):
        raise ReachedCompilation
    monkeypatch.setattr(xlex.runner, "make_step", sentinel)


@pytest.fixture(scope="module")
def ds():
    return xlex.cases.warm_bubble(theta_c=5, dx=2000.0)


GOOD = dict(duration="2min", dt=20.0, output_every="1min")


def integrate(ds, **kwargs):
    return ds.lex.integrate(**{**GOOD, "progress": False, **kwargs})


def fails(ds, error, *names, **kwargs):
    """Integrate, expect ``error`` quickly, with every one of ``names`` in the message."""
    started = time.perf_counter()
    with pytest.raises(error) as info:
        integrate(ds, **kwargs)
    elapsed = time.perf_counter() - started
    assert isinstance(info.value, XlexError)
    message = str(info.value)
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"
    assert elapsed < FAST_SECONDS, f"validation took {elapsed:.2f} s"
    return message


def test_a_good_dataset_reaches_compilation(ds):
    with pytest.raises(ReachedCompilation):
        integrate(ds)


# --------------------------------------------------------------------------- Dataset problems


@pytest.mark.parametrize("name", ["th", "w", "u", "qv", "th0"])
def test_missing_variable(ds, name):
    message = fails(ds.drop_vars(name), DatasetError, repr(name))
    assert "warm_bubble" in message or "open_cm1" in message  # how to get a good one


def test_not_a_dataset(ds):
    with pytest.raises(DatasetError, match="Dataset"):
        xlex.runner.integrate(ds["th"], progress=False, **GOOD)


@pytest.mark.parametrize("old, new", [("xh", "x"), ("zf", "z_stag"), ("yf", "y_face")])
def test_wrong_dimension_names(ds, old, new):
    fails(ds.rename({old: new}), DatasetError, repr(old))


def test_dims_in_the_wrong_order(ds):
    fails(ds.assign(th=ds["th"].transpose("time", "zh", "xh", "yh")), DatasetError, "'th'",
          "zh, yh, xh")


def test_variable_on_the_wrong_grid(ds):
    # w on the centres instead of the z faces
    w_centres = xr.zeros_like(ds["th"]).assign_attrs(ds["w"].attrs)
    fails(ds.assign(w=w_centres), DatasetError, "'w'", "zf")


def test_w_without_nz_plus_one_levels(ds):
    fails(ds.isel(zf=slice(0, -1)), DatasetError, "zf", "nz + 1")


def test_leading_dims_must_agree(ds):
    member_th = xr.concat([ds["th"], ds["th"]], dim="member")
    fails(ds.assign(th=member_th), DatasetError, "'th'", "member")


def _with_duplicate_face(ds):
    u = ds["u"]
    extra = u.isel(xf=[0]).assign_coords(xf=[24000.0])
    return ds.drop_vars(["u", "xf"]).assign(u=xr.concat([u, extra], dim="xf"))


def test_periodic_face_duplicated(ds):
    bad = _with_duplicate_face(ds)
    assert bad.sizes["xf"] == bad.sizes["xh"] + 1
    message = fails(bad, DatasetError, "xf", "drop")
    assert "isel(xf=slice(0, -1))" in message
    # the suggested fix works
    with pytest.raises(ReachedCompilation):
        integrate(bad.isel(xf=slice(0, -1)))


@pytest.mark.parametrize("coord", ["xh", "yh", "zh"])
def test_non_uniform_centres(ds, coord):
    values = ds[coord].values.copy()
    values[3] += 100.0
    message = fails(ds.assign_coords({coord: values}), DatasetError, repr(coord), "uniform")
    assert "interp" in message


@pytest.mark.parametrize("coord", ["xf", "zf"])
def test_faces_not_half_a_cell_below_centres(ds, coord):
    values = ds[coord].values.copy()
    values[2] += 300.0
    fails(ds.assign_coords({coord: values}), DatasetError, repr(coord))


def test_decreasing_coordinate(ds):
    fails(ds.isel(xh=slice(None, None, -1)), DatasetError, "'xh'")


def test_lowest_face_not_at_the_ground(ds):
    fails(ds.assign_coords(zf=ds["zf"] + 500.0, zh=ds["zh"] + 500.0), DatasetError, "zf",
          "ground")


def test_coordinates_in_km(ds):
    km = ds.assign_coords({
        name: (ds[name] / 1000.0).assign_attrs({**ds[name].attrs, "units": "km"})
        for name in ("zh", "zf", "yh", "yf", "xh", "xf")})
    message = fails(km, DatasetError, "km", "metres")
    assert "open_cm1" in message


@pytest.mark.parametrize("name, units", [("th", "degC"), ("u", "km/h"), ("qv", "g/kg")])
def test_wrong_variable_units(ds, name, units):
    bad = ds.assign({name: ds[name].assign_attrs(units=units)})
    fails(bad, DatasetError, repr(name), units)


@pytest.mark.parametrize("name", ["th", "u", "qv", "w", "pipert"])
def test_nan_in_a_field(ds, name):
    values = ds[name].values.copy()
    values[0, 2, 3, 4] = np.nan
    fails(ds.assign({name: (ds[name].dims, values, ds[name].attrs)}), DatasetError,
          repr(name), "NaN")


def test_inf_in_the_base_state(ds):
    values = ds["th0"].values.copy()
    values[1] = np.inf
    fails(ds.assign(th0=("zh", values, ds["th0"].attrs)), DatasetError, "'th0'")


def test_negative_qv(ds):
    values = ds["qv"].values.copy()
    values[0, 1, 5, 5] = -1e-5
    fails(ds.assign(qv=(ds["qv"].dims, values, ds["qv"].attrs)), DatasetError, "'qv'",
          ">= 0")


def test_non_positive_th(ds):
    fails(ds.assign(th=ds["th"] - 400.0), DatasetError, "'th'", "positive")


@pytest.mark.parametrize("level", [0, -1])
def test_w_nonzero_on_a_wall(ds, level):
    values = ds["w"].values.copy()
    values[0, level, 4, 4] = 0.5
    fails(ds.assign(w=(ds["w"].dims, values, ds["w"].attrs)), DatasetError, "w", "wall")


def test_empty_time_axis(ds):
    fails(ds.isel(time=slice(0, 0)), DatasetError, "time")


def test_nan_in_a_coordinate(ds):
    values = ds["xh"].values.copy()
    values[3] = np.nan
    fails(ds.assign_coords(xh=values), DatasetError, "'xh'")


# --------------------------------------------------------------------------- CFL


def suggested_dt(message):
    match = re.search(r"use dt <= ([0-9.eE+-]+) s", message)
    assert match, message
    return float(match.group(1))


@pytest.mark.parametrize("u, v", [
    (50.0, 0.0),
    (37.0, 11.0),
    pytest.param(2.592, 0.0),
])
def test_cfl_suggests_a_dt_that_passes(ds, u, v):
    fast = ds.assign(u=xr.full_like(ds["u"], u), v=xr.full_like(ds["v"], v))
    dt = 1000.0 * 2000.0 / (u + v)  # far above the limit
    message = fails(fast, CFLError, "dt", "CFL", dt=dt, output_every=dt, duration=dt)
    assert isinstance(CFLError("x"), OptionError)
    safe = suggested_dt(message)
    assert 0 < safe < dt
    inputs = dataset_to_inputs(fast)
    assert xlex.runner.courant_number(inputs.state["u"], inputs.state["v"], inputs.state["w"],
                                      inputs.grid, safe) <= xlex.runner.COURANT_LIMIT
    with pytest.raises(ReachedCompilation):
        integrate(fast, dt=safe, output_every=safe, duration=2 * safe)


def test_cfl_realistic_numbers(ds):
    fast = ds.assign(u=xr.full_like(ds["u"], 50.0))
    message = fails(fast, CFLError, "dt = 100 s", dt=100.0, output_every=100.0, duration=200)
    # 1.6 * 2000 m / 50 m/s = 64 s
    assert suggested_dt(message) == pytest.approx(64.0, abs=1e-3)


# --------------------------------------------------------------------------- option problems


@pytest.mark.parametrize("kwargs, names", [
    (dict(duration="150s", output_every="1min"), ("duration", "output_every")),
    (dict(duration="30s", output_every="1min"), ("duration", "output_every")),
    (dict(output_every=60.0, dt=25.0), ("output_every", "dt")),
    (dict(output_every=60.0, dt=120.0), ("output_every", "dt")),
])
def test_not_whole_multiples(ds, kwargs, names):
    fails(ds, OptionError, *names, **kwargs)


@pytest.mark.parametrize("option", ["dt", "duration", "output_every"])
@pytest.mark.parametrize("value", [0, -20.0, "-5min", "0s", float("nan")])
def test_non_positive_durations(ds, option, value):
    fails(ds, OptionError, option, **{option: value})


@pytest.mark.parametrize("option", ["dt", "duration", "output_every"])
@pytest.mark.parametrize("value", ["20 parsecs", "", "soon", "20ms"])
def test_unreadable_duration_strings(ds, option, value):
    fails(ds, OptionError, option, **{option: value})


@pytest.mark.parametrize("option", ["dt", "duration", "output_every"])
@pytest.mark.parametrize("value", [None, [20], True])
def test_duration_types(ds, option, value):
    fails(ds, OptionTypeError, option, **{option: value})


@pytest.mark.parametrize("kwargs, error, name", [
    (dict(solver="multigrid"), OptionError, "solver"),
    (dict(solver="PCG"), OptionError, "solver"),
    (dict(precision="float16"), OptionError, "precision"),
    (dict(precision="double"), OptionError, "precision"),
    (dict(solver=3), OptionTypeError, "solver"),
    (dict(precision=64), OptionTypeError, "precision"),
    (dict(tolerance="1e-5"), OptionTypeError, "tolerance"),
    (dict(tolerance=0.0), OptionError, "tolerance"),
    (dict(tolerance=2.0), OptionError, "tolerance"),
    (dict(max_iterations=2.5), OptionTypeError, "max_iterations"),
    (dict(max_iterations=0), OptionError, "max_iterations"),
    (dict(vertical_order=4), OptionError, "vertical_order"),
    (dict(momentum_advection="centred"), OptionError, "momentum_advection"),
    (dict(coriolis="1e-4"), OptionTypeError, "coriolis"),
    (dict(coriolis=float("inf")), OptionError, "coriolis"),
])
def test_bad_model_options(ds, kwargs, error, name):
    message = fails(ds, error, name, **kwargs)
    if error is OptionError and "solver" in kwargs:
        assert "pcg" in message and "bicgstab" in message  # the choices


@pytest.mark.parametrize("option", ["solvr", "time_step", "sgs_scheme"])
def test_unknown_option_is_an_xlex_error(ds, option):
    # a misspelt option must not surface as a bare TypeError of Python's keyword call
    started = time.perf_counter()
    with pytest.raises(XlexError) as info:
        integrate(ds, **{option: "pcg"})
    assert option in str(info.value)
    assert "solver" in str(info.value)  # lists the known options
    assert time.perf_counter() - started < FAST_SECONDS


def test_options_are_checked_before_the_dataset(ds):
    # both wrong: the cheap option check answers first, still before compilation
    fails(ds.drop_vars("th"), OptionError, "solver", solver="multigrid")


def test_input_untouched_by_a_failed_call(ds):
    before = ds.copy(deep=True)
    with pytest.raises(CFLError):
        integrate(ds.assign(u=xr.full_like(ds["u"], 50.0)), dt=100.0, output_every=100.0,
                  duration=100.0)
    xr.testing.assert_identical(ds, before)


# --------------------------------------------------------------------------- conversion


def _by_hand(ds, keep_pi0=False):
    """The case's numbers in a Dataset without attributes, time axis or derived fields."""
    s = ds.isel(time=0)
    names = ["u", "v", "w", "th", "qv", "th0", "qv0"] + (["pi0"] if keep_pi0 else [])
    return xr.Dataset({n: (s[n].dims, s[n].values) for n in names},
                      coords={c: s[c].values for c in ("zh", "zf", "yh", "yf", "xh", "xf")})


def test_dataset_to_inputs(ds):
    inputs = dataset_to_inputs(ds)
    assert (inputs.grid.nx, inputs.grid.ny, inputs.grid.nz) == (12, 12, 6)
    assert (inputs.grid.dx, inputs.grid.dy, inputs.grid.dz) == (2000.0, 2000.0, 2000.0)
    assert inputs.batch_dims == () and inputs.batch_shape == ()
    assert inputs.time == 0.0
    assert inputs.state["w"].shape == (7, 12, 12)
    np.testing.assert_array_equal(inputs.state["th"], ds["th"].values[0])
    np.testing.assert_array_equal(inputs.base["pi0"], ds["pi0"].values)


def test_hand_built_dataset_converts_the_same(ds):
    case = dataset_to_inputs(ds)
    hand = dataset_to_inputs(_by_hand(ds, keep_pi0=True))
    assert hand.grid == case.grid
    for name in case.state:
        np.testing.assert_array_equal(hand.state[name], case.state[name])
    for name in case.base:
        np.testing.assert_array_equal(hand.base[name], case.base[name])


def test_pi0_rebuilt_from_th0_qv0_when_absent(ds):
    hand = dataset_to_inputs(_by_hand(ds))
    # hydrostatic from 1000 hPa through linearly interpolated th0, qv0 on 2 km levels
    np.testing.assert_allclose(hand.base["pi0"], ds["pi0"].values, rtol=2e-5)
    fine = xlex.cases.warm_bubble(theta_c=5, dx=1000.0)
    rebuilt = dataset_to_inputs(_by_hand(fine)).base["pi0"]
    np.testing.assert_allclose(rebuilt, fine["pi0"].values, rtol=5e-6)


def test_last_time_record_is_the_initial_state(ds):
    later = ds.assign_coords(time=[60.0])
    two = xr.concat([ds, later.assign(th=later["th"] + 1.0)], dim="time",
                    data_vars=["u", "v", "w", "th", "qv", "pipert"], coords="minimal",
                    compat="override", join="exact")
    inputs = dataset_to_inputs(two)
    assert inputs.time == 60.0
    np.testing.assert_array_equal(inputs.state["th"], ds["th"].values[0] + 1.0)


def test_timedelta_time_axis(ds):
    inputs = dataset_to_inputs(ds.assign_coords(time=[np.timedelta64(90, "s")]))
    assert inputs.time == 90.0


def _ensemble(ds, names):
    ens = ds.copy()
    for name in names:
        ens[name] = xr.concat([ds[name], ds[name]], dim="member")
    return ens


def test_ensemble_dims(ds):
    inputs = dataset_to_inputs(_ensemble(ds, ("u", "v", "w", "th", "qv", "pipert")))
    assert inputs.batch_dims == ("member",)
    assert inputs.batch_shape == (2,)
    assert inputs.state["th"].shape == (2, 6, 12, 12)
    assert inputs.state["pi"].shape == (2, 6, 12, 12)


def test_ensemble_of_prognostic_fields_only(ds):
    inputs = dataset_to_inputs(_ensemble(ds, ("u", "v", "w", "th", "qv")))
    assert inputs.state["pi"].shape == (2, 6, 12, 12)


def test_km_coordinates_labelled_metres_ask_about_units(ds):
    km = ds.assign_coords({name: (ds[name] / 1000.0).assign_attrs(ds[name].attrs)
                           for name in ("zh", "zf", "yh", "yf", "xh", "xf")})
    message = fails(km, DatasetError, "km", "1000")
    assert "dt" not in message


@pytest.mark.parametrize("times", [np.array(["2026-01-01T00:00"], dtype="datetime64[ns]"),
                                   np.array(["start"])])
def test_time_of_dates_or_strings(ds, times):
    fails(ds.assign_coords(time=times), DatasetError, "time", "seconds")


@pytest.mark.parametrize("dtype", [complex, bool, str])
def test_fields_that_are_not_real_numbers(ds, dtype):
    bad = ds.assign(u=ds["u"].astype(dtype))
    fails(bad, DatasetError, "'u'", "dtype")


def test_qv_round_off_in_xlex_output_continues(ds):
    assert ds.attrs["model"] == "xlex"
    values = ds["qv"].values.copy()
    values[0, 1, 5, 5] = -1e-12
    tiny = ds.assign(qv=(ds["qv"].dims, values, ds["qv"].attrs))
    with pytest.raises(ReachedCompilation):
        integrate(tiny)
    user = tiny.copy()
    user.attrs = {k: v for k, v in tiny.attrs.items() if k != "model"}
    fails(user, DatasetError, "'qv'", ">= 0")
