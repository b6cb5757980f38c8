"""``ds.lex``: integrate (new Datasets, records, attrs, ensembles, restarts, blow-ups,
Ctrl-C) and the diagnostics it delegates to.

Runs are 12 x 12 x 6 cells of 2 km, 2 min with dt = 20 s: each ``integrate`` call
compiles its loop once (a few seconds), so the runs are module fixtures shared by
the tests.
"""

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from fakes import solve_info

import xlex
import xlex.runner
from xlex.core.errors import BlowUpError
from xlex.options import PHYSICS_ATTR, recorded_physics

RUN = dict(dt=20.0, output_every="1min", progress=False, precision="float64")
PROGNOSTIC = ("u", "v", "w", "th", "qv", "pipert")
ALL_FIELDS = PROGNOSTIC + ("thpert", "qvpert", "thrho")


def integrate(ds, duration="2min", **kwargs):
    return ds.lex.integrate(duration, **{**RUN, **kwargs})


def assert_fields_close(a, b, atol, names=ALL_FIELDS):
    for name in names:
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=0, atol=atol,
                                   err_msg=name)


@pytest.fixture(scope="module")
def ds5():
    return xlex.cases.warm_bubble(theta_c=5, dx=2000.0)


@pytest.fixture(scope="module")
def run64(ds5):
    """(input, deep copy of the input taken before, output) of the reference run."""
    before = ds5.copy(deep=True)
    out = integrate(ds5)
    return ds5, before, out


@pytest.fixture(scope="module")
def out64(run64):
    return run64[2]


# --------------------------------------------------------------------------- the output


def test_returns_a_new_dataset_and_leaves_the_input_alone(run64):
    ds, before, out = run64
    assert isinstance(out, xr.Dataset)
    assert out is not ds
    xr.testing.assert_identical(ds, before)
    assert ds.sizes["time"] == 1


def test_time_axis_and_records(out64):
    np.testing.assert_array_equal(out64["time"].values, [0.0, 60.0, 120.0])
    assert out64["time"].attrs["units"] in ("s", "seconds")
    assert out64["time"].attrs["axis"] == "T"
    for name in ALL_FIELDS:
        assert out64[name].dims[0] == "time", name
        assert out64[name].sizes["time"] == 3, name
    assert out64["pressure_iterations"].dims == ("time",)
    assert (out64["pressure_iterations"].values[1:] >= 1).all()


def test_first_record_is_the_initial_state(run64):
    ds, _, out = run64
    for name in ALL_FIELDS:
        np.testing.assert_array_equal(out[name].isel(time=0).values,
                                      ds[name].isel(time=0).values, err_msg=name)


def test_attrs_record_the_run(run64):
    ds, _, out = run64
    attrs = out.attrs
    assert attrs["xlex_dt"] == 20.0
    assert attrs["xlex_duration"] == 120.0
    assert attrs["xlex_output_every"] == 60.0
    assert recorded_physics(attrs).pressure.method == "pcg"
    assert recorded_physics(attrs) == xlex.Physics()  # the defaults, as one attribute
    assert not [k for k in attrs if k.startswith("xlex_") and k[5:] in
                xlex.options.LEGACY_OPTIONS]  # no flat options of xlex 0.1
    assert attrs["xlex_precision"] == "float64"
    assert attrs["xlex_status"] == "complete"
    assert attrs["Conventions"] == "CF-1.11"
    assert attrs["model"] == "xlex" and attrs["model_version"] == xlex.__version__
    assert "periodic" in attrs["boundary_conditions"]
    assert attrs["coriolis_parameter"] == 0.0
    for key, value in ds.attrs.items():
        if key.startswith("case") or key == "surface_pressure":
            assert attrs[key] == value, key


def test_units_and_standard_names(out64):
    for name in out64.data_vars:
        assert "units" in out64[name].attrs, name
        assert out64[name].attrs.get("long_name"), name
    for name, standard_name in (("u", "x_wind"), ("v", "y_wind"), ("w", "upward_air_velocity"),
                                ("th", "air_potential_temperature"),
                                ("qv", "humidity_mixing_ratio"), ("rho0", "air_density"),
                                ("pi0", "dimensionless_exner_function")):
        assert out64[name].attrs["standard_name"] == standard_name, name
    for name in ("xf", "yf", "zf"):
        assert out64[name].attrs["c_grid_axis_shift"] == -0.5
        assert out64[name].attrs["units"] == "m"


def test_derived_fields(out64):
    np.testing.assert_allclose(out64["thpert"], out64["th"] - out64["th0"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(out64["qvpert"], out64["qv"] - out64["qv0"], rtol=0, atol=1e-15)
    eps = 287.04 / 461.5
    np.testing.assert_allclose(out64["thrho"],
                               out64["th"] * (1.0 + (1.0 / eps - 1.0) * out64["qv"]),
                               rtol=1e-12)


def test_float64_output(out64):
    for name in out64.data_vars:
        assert out64[name].dtype == np.float64, name


def test_the_bubble_rises(out64):
    w = out64["w"].isel(time=-1)
    assert np.isfinite(out64["w"]).all()
    assert float(w.max()) > 0.1
    top = w.where(w == w.max(), drop=True)
    assert abs(float(top.xh[0]) - 12000.0) <= 2000.0
    np.testing.assert_array_equal(out64["w"].isel(zf=[0, -1]), 0.0)  # rigid walls


def test_float32_with_bicgstab(ds5, out64):
    out = integrate(ds5, precision="float32", solver="bicgstab")
    assert out.attrs["xlex_precision"] == "float32"
    assert recorded_physics(out.attrs).pressure.method == "bicgstab"
    assert PHYSICS_ATTR in out.attrs
    assert out.attrs["xlex_status"] == "complete"
    for name in PROGNOSTIC:
        assert out[name].dtype == np.float32, name
    assert out["time"].size == 3
    np.testing.assert_allclose(out["thpert"], out64["thpert"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(out["w"], out64["w"], rtol=0, atol=1e-3)


def test_hand_built_dataset_integrates_the_same(ds5, out64):
    s = ds5.isel(time=0)
    hand = xr.Dataset({n: (s[n].dims, s[n].values)
                       for n in ("u", "v", "w", "th", "qv", "th0", "qv0")},
                      coords={c: s[c].values for c in ("zh", "zf", "yh", "yf", "xh", "xf")})
    out = integrate(hand)
    np.testing.assert_array_equal(out["time"].values, out64["time"].values)
    assert out["th"].dims == ("time", "zh", "yh", "xh")
    # pi0 is rebuilt hydrostatically from th0 and qv0 interpolated between the 2 km levels
    # (relative difference ~1e-5 from the case's own sounding): close, not identical
    np.testing.assert_allclose(out["pi0"], out64["pi0"], rtol=2e-5)
    assert_fields_close(out, out64, atol=1e-8, names=("th", "thpert", "qv"))
    assert_fields_close(out, out64, atol=1e-5, names=("u", "v", "w"))
    assert_fields_close(out, out64, atol=1e-9, names=("pipert",))


# --------------------------------------------------------------------------- ensembles


def test_ensemble_in_one_call(ds5, out64):
    ds1 = xlex.cases.warm_bubble(theta_c=1, dx=2000.0)
    ens = xr.concat([ds1, ds5], dim="member", data_vars=list(ALL_FIELDS), coords="minimal",
                    compat="override", join="exact")
    ens = ens.assign_coords(member=[1.0, 5.0])
    assert ens["th0"].dims == ("zh",)  # base state shared
    calls = []
    real_vmap = xlex.runner.jax.vmap

    class Spy:
        def __getattr__(self, name):
            return getattr(jax, name)

        def vmap(self, fn, *args, **kwargs):
            calls.append(fn)
            return real_vmap(fn, *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(xlex.runner, "jax", Spy())
    try:
        out = integrate(ens)
    finally:
        mp.undo()
    assert len(calls) == 1  # vmapped, not a Python loop over members
    assert out["th"].dims == ("time", "member", "zh", "yh", "xh")
    np.testing.assert_array_equal(out["member"].values, [1.0, 5.0])
    assert out["pressure_iterations"].dims == ("time", "member")
    assert out["th0"].dims == ("zh",)
    single1 = integrate(ds1)
    assert_fields_close(out.sel(member=1.0), single1, atol=1e-10)
    assert_fields_close(out.sel(member=5.0), out64, atol=1e-10)


# --------------------------------------------------------------------------- restarts


def test_continuing_from_the_last_record(ds5, out64):
    first = integrate(ds5, "1min")
    np.testing.assert_array_equal(first["time"].values, [0.0, 60.0])
    second = integrate(first, "1min", progress=True)
    np.testing.assert_array_equal(second["time"].values, [60.0, 120.0])
    assert_fields_close(second.isel(time=0), first.isel(time=-1), atol=0.0)
    assert_fields_close(second.isel(time=-1), out64.isel(time=-1), atol=1e-10)
    assert second.attrs["xlex_duration"] == 60.0


def test_continuing_from_a_netcdf_file(out64, tmp_path):
    path = tmp_path / "out.nc"
    out64.to_netcdf(path)
    with xr.open_dataset(path) as reopened:
        restart = reopened.load()
    # no compilation needed to check that the file converts back to the same state
    from xlex.io.convert import dataset_to_inputs
    a, b = dataset_to_inputs(restart), dataset_to_inputs(out64)
    assert a.time == b.time == 120.0
    for name in b.state:
        np.testing.assert_array_equal(a.state[name], b.state[name])


# --------------------------------------------------------------------------- failures


def test_real_blow_up(monkeypatch):
    # at rest, so the initial CFL check passes; a 600 s step with a 50 K bubble explodes
    ds = xlex.cases.warm_bubble(theta_c=50, dx=2000.0)
    with pytest.raises(BlowUpError) as info:
        integrate(ds, "20min", dt=600.0, output_every="10min")
    err = info.value
    assert err.time == 600.0
    assert err.variable in ("u", "v", "w", "th", "qv", "pipert")
    message = str(err)
    assert "600" in message and err.variable in message and "dt" in message
    assert isinstance(err.outputs, xr.Dataset)
    np.testing.assert_array_equal(err.outputs["time"].values, [0.0])
    assert err.outputs.attrs["xlex_status"] == "blew up"
    assert set(err.location) <= {"zh", "zf", "yh", "yf", "xh", "xf"}


def fake_make_step(update):
    """A make_step whose step applies ``update(state) -> state`` (cheap to compile)."""
    def make_step(grid, physics, dt):
        def step(s, base, params):
            return update(s), solve_info(s.th.dtype)
        return step
    return make_step


def test_blow_up_keeps_the_records_before_it(ds5, monkeypatch):
    # th warms by 1 K a step and turns NaN once its minimum would pass 302.5 K: the
    # outputs at 20 s and 40 s are fine, the chunk ending at 60 s is not
    def update(s):
        th = s.th + 1.0
        return dataclasses.replace(s, th=jnp.where(jnp.min(th) > 302.5, jnp.nan, th))

    monkeypatch.setattr(xlex.runner, "make_step", fake_make_step(update))
    with pytest.raises(BlowUpError) as info:
        integrate(ds5, "100s", output_every="20s")
    err = info.value
    assert err.variable == "th"
    assert err.time == 60.0
    assert "th" in str(err) and "60 s" in str(err)
    out = err.outputs
    np.testing.assert_array_equal(out["time"].values, [0.0, 20.0, 40.0])
    np.testing.assert_allclose(out["th"].isel(time=2), ds5["th"].isel(time=0) + 2.0)
    assert np.isfinite(out["th"]).all()
    assert out.attrs["xlex_status"] == "blew up"


def test_blow_up_in_an_ensemble_member(ds5, monkeypatch):
    # th warms by 1 K a step; qv turns NaN where th passes 301.5 K everywhere: member 1
    # (0.7 K warmer) after the first step, member 0 only after the second
    def update(s):
        th = s.th + 1.0
        return dataclasses.replace(s, th=th, qv=jnp.where(jnp.min(th) > 301.5, jnp.nan, s.qv))

    monkeypatch.setattr(xlex.runner, "make_step", fake_make_step(update))
    warm = ds5.assign(th=ds5["th"] + 0.7)
    ens = xr.concat([ds5, warm], dim="member", data_vars=list(ALL_FIELDS), coords="minimal",
                    compat="override", join="exact")
    with pytest.raises(BlowUpError) as info:
        integrate(ens, "60s", output_every="20s")
    err = info.value
    assert err.variable == "qv"
    assert err.time == 20.0
    assert "qv" in str(err)
    assert err.outputs["th"].dims == ("time", "member", "zh", "yh", "xh")
    np.testing.assert_array_equal(err.outputs["time"].values, [0.0])


def test_cfl_blow_up_names_the_fast_variable(ds5, monkeypatch):
    # u grows by 100 m/s a step: Courant 1.0 after one 20 s step on 2 km cells, 2.0 after two
    def update(s):
        return dataclasses.replace(s, u=s.u + 100.0)

    monkeypatch.setattr(xlex.runner, "make_step", fake_make_step(update))
    with pytest.raises(BlowUpError) as info:
        integrate(ds5, "100s", output_every="20s")
    err = info.value
    assert err.time == 40.0
    assert "Courant" in str(err)
    np.testing.assert_array_equal(err.outputs["time"].values, [0.0, 20.0])
    assert err.variable == "u"


class _InterruptSecondCall:
    """Stands in for the ``jax`` module in xlex.runner: the second call of the jitted
    output-interval function raises KeyboardInterrupt (a Ctrl-C during the second chunk)."""

    def __getattr__(self, name):
        return getattr(jax, name)

    def jit(self, fn, *args, **kwargs):
        compiled = jax.jit(fn, *args, **kwargs)
        calls = []

        def wrapper(*a, **k):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return compiled(*a, **k)
        return wrapper


def test_keyboard_interrupt_returns_what_is_done(ds5, monkeypatch):
    def update(s):
        return dataclasses.replace(s, th=s.th + 0.5)

    monkeypatch.setattr(xlex.runner, "make_step", fake_make_step(update))
    monkeypatch.setattr(xlex.runner, "jax", _InterruptSecondCall())
    before = ds5.copy(deep=True)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        out = integrate(ds5, "100s", output_every="20s")
    assert isinstance(out, xr.Dataset)
    assert out.attrs["xlex_status"] == "interrupted"
    np.testing.assert_array_equal(out["time"].values, [0.0, 20.0])
    np.testing.assert_allclose(out["th"].isel(time=1), ds5["th"].isel(time=0) + 0.5)
    assert out.attrs["xlex_duration"] == 100.0  # what was asked for
    xr.testing.assert_identical(ds5, before)


def test_no_warnings_from_a_clean_run(ds5, monkeypatch):
    monkeypatch.setattr(xlex.runner, "make_step", fake_make_step(lambda s: s))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = integrate(ds5, "40s", output_every="20s")
    assert out.attrs["xlex_status"] == "complete"


# --------------------------------------------------------------------------- diagnostics


def test_correlation_with_itself(out64):
    r = out64.lex.correlation(out64, "thpert")
    assert isinstance(r, xr.DataArray)
    assert r.dims == ("time",)
    np.testing.assert_allclose(r.values, 1.0, rtol=0, atol=1e-12)
    mse = out64.lex.mse(out64, "thpert")
    np.testing.assert_array_equal(mse.values, 0.0)


def test_coarsen(out64):
    coarse = out64.lex.coarsen(x=2, y=2, z=2)
    assert isinstance(coarse, xr.Dataset)
    assert coarse is not out64
    assert (coarse.sizes["xh"], coarse.sizes["xf"], coarse.sizes["yh"]) == (6, 6, 6)
    assert (coarse.sizes["zh"], coarse.sizes["zf"]) == (3, 4)
    assert coarse.sizes["time"] == 3
    np.testing.assert_allclose(coarse["xh"], np.arange(6) * 4000.0 + 2000.0)
    np.testing.assert_allclose(coarse["xf"], np.arange(6) * 4000.0)
    # cell averages of centred fields keep the domain mean
    np.testing.assert_allclose(coarse["th"].mean(("zh", "yh", "xh")),
                               out64["th"].mean(("zh", "yh", "xh")), rtol=1e-12)
    np.testing.assert_array_equal(coarse["w"].isel(zf=[0, -1]), 0.0)
    assert out64.sizes["xh"] == 12  # the input is untouched


def test_coarsen_every(out64):
    coarse = out64.lex.coarsen(x=2, y=2, z=2, every=2)
    np.testing.assert_array_equal(coarse["time"].values, [0.0, 120.0])


def test_ke_profile(out64):
    ke = out64.lex.ke_profile()
    assert isinstance(ke, xr.DataArray)
    assert ke.dims == ("zh",)
    assert ke.sizes["zh"] == 6
    assert (ke.values >= 0).all() and float(ke.max()) > 0
