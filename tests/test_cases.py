"""``xlex.cases.warm_bubble``: a contract Dataset with the paper's initial state."""

import inspect
import warnings

import jax
import numpy as np
import pytest

import xlex
from xlex.core.errors import OptionError, OptionTypeError, XlexError
from xlex.options import PHYSICS_ATTR, recorded_physics

# Independent of xlex.constants on purpose: the values CM1 uses.
RD, RV, CP, G = 287.04, 461.5, 1005.7, 9.81
EPS = RD / RV


@pytest.fixture(scope="module")
def coarse():
    """12 x 12 x 6 cells of 2 km."""
    return xlex.cases.warm_bubble(theta_c=5, dx=2000.0)


@pytest.fixture(scope="module")
def fine():
    """60 x 60 x 30 cells of 400 m: the grid of the CM1 reference run."""
    return xlex.cases.warm_bubble(theta_c=5, dx=400.0)


def bolton_rh(th, qv, pi0):
    """Relative humidity qv / qs, Bolton (1980), computed here independently."""
    temperature = th * pi0
    p = 1e5 * pi0 ** (CP / RD)
    es = 611.2 * np.exp(17.67 * (temperature - 273.15) / (temperature - 29.65))
    qs = EPS * es / (p - es)
    return qv / qs


# --------------------------------------------------------------------------- structure


def test_dims_and_sizes(coarse):
    ds = coarse
    assert dict(ds.sizes) == {"time": 1, "zh": 6, "zf": 7, "yh": 12, "yf": 12, "xh": 12,
                              "xf": 12}
    assert ds["u"].dims == ("time", "zh", "yh", "xf")
    assert ds["v"].dims == ("time", "zh", "yf", "xh")
    assert ds["w"].dims == ("time", "zf", "yh", "xh")
    for name in ("th", "qv", "pipert", "thpert", "qvpert", "thrho"):
        assert ds[name].dims == ("time", "zh", "yh", "xh"), name
    for name in ("th0", "qv0", "pi0", "rho0"):
        assert ds[name].dims == ("zh",), name
    assert float(ds["time"][0]) == 0.0


def test_sizes_follow_spacing():
    ds = xlex.cases.warm_bubble(theta_c=1, dx=1500.0, dz=1000.0)
    assert (ds.sizes["xh"], ds.sizes["xf"], ds.sizes["yh"]) == (16, 16, 16)
    assert (ds.sizes["zh"], ds.sizes["zf"]) == (12, 13)


def test_coordinates_in_metres_with_staggering(coarse):
    ds = coarse
    np.testing.assert_allclose(ds["xh"], np.arange(12) * 2000.0 + 1000.0)
    np.testing.assert_allclose(ds["xf"], np.arange(12) * 2000.0)
    np.testing.assert_allclose(ds["zf"], np.arange(7) * 2000.0)
    np.testing.assert_allclose(ds["zh"], np.arange(6) * 2000.0 + 1000.0)
    for name, axis in (("xh", "X"), ("xf", "X"), ("yh", "Y"), ("yf", "Y"), ("zh", "Z"),
                       ("zf", "Z")):
        attrs = ds[name].attrs
        assert attrs["axis"] == axis, name
        assert attrs["units"] == "m", name
        assert attrs.get("long_name"), name
        if name.endswith("f"):
            assert attrs["c_grid_axis_shift"] == -0.5, name
        else:
            assert attrs.get("c_grid_axis_shift", 0.0) == 0.0, name
    assert ds["zh"].attrs.get("positive") == "up"


@pytest.mark.parametrize("name, standard_name", [
    ("u", "x_wind"), ("v", "y_wind"), ("w", "upward_air_velocity"),
    ("th", "air_potential_temperature"), ("qv", "humidity_mixing_ratio"),
    ("rho0", "air_density"), ("pi0", "dimensionless_exner_function"),
])
def test_standard_names(coarse, name, standard_name):
    assert coarse[name].attrs["standard_name"] == standard_name


def test_every_variable_has_units_and_long_name(coarse):
    for name in coarse.data_vars:
        assert "units" in coarse[name].attrs, name
        assert coarse[name].attrs.get("long_name"), name
    assert coarse["u"].attrs["units"] == "m s-1"
    assert coarse["th"].attrs["units"] == "K"
    assert coarse["qv"].attrs["units"] == "kg kg-1"


def test_global_attributes(coarse):
    assert coarse.attrs["Conventions"] == "CF-1.11"
    assert coarse.attrs["model"] == "xlex"
    assert coarse.attrs["model_version"] == xlex.__version__
    assert coarse.attrs["case"] == "warm_bubble"


NON_DEFAULT = dict(theta_c=3.0, dx=2000.0, dy=1500.0, dz=1000.0, x_length=30000.0,
                   y_length=21000.0, z_length=10000.0, x_centre=13000.0, y_centre=11000.0,
                   z_centre=2500.0, x_radius=2500.0, y_radius=1800.0, z_radius=1500.0,
                   theta0=295.0, relative_humidity=0.2, surface_pressure=9.9e4,
                   keep_relative_humidity=False)
NOT_RECORDED = ("x_length", "y_length", "z_length")


@pytest.fixture(scope="module")
def non_default():
    return xlex.cases.warm_bubble(**NON_DEFAULT)


def test_non_default_covers_the_signature():
    assert set(NON_DEFAULT) == set(inspect.signature(xlex.cases.warm_bubble).parameters)


@pytest.mark.parametrize("name", [
    pytest.param(n)
    if n in NOT_RECORDED else n
    for n in NON_DEFAULT
])
def test_every_parameter_recorded_in_attrs(non_default, name):
    # surface_pressure is recorded unprefixed: dataset_to_inputs reads it back from there
    key = name if name == "surface_pressure" else f"case_{name}"
    assert key in non_default.attrs, f"{key} missing from {sorted(non_default.attrs)}"
    assert non_default.attrs[key] == pytest.approx(float(NON_DEFAULT[name]))


def test_non_default_geometry(non_default):
    ds = non_default
    assert (ds.sizes["xh"], ds.sizes["yh"], ds.sizes["zh"]) == (15, 14, 10)
    tp = ds["thpert"].isel(time=0)
    assert float(tp.max()) <= 3.0 + 1e-12
    peak = tp.where(tp == tp.max(), drop=True)
    assert abs(float(peak.xh.mean()) - 13000.0) <= 1000.0
    assert abs(float(peak.yh.mean()) - 11000.0) <= 750.0
    assert abs(float(peak.zh.mean()) - 2500.0) <= 500.0
    np.testing.assert_allclose(ds["th0"], 295.0)
    # keep_relative_humidity=False: qv is the base-state qv, also inside the bubble
    np.testing.assert_array_equal(ds["qvpert"], 0.0)


# --------------------------------------------------------------------------- values


def test_at_rest_without_pressure_perturbation(coarse):
    for name in ("u", "v", "w", "pipert"):
        np.testing.assert_array_equal(coarse[name], 0.0)


@pytest.mark.parametrize("case", ["coarse", "fine"])
def test_relative_humidity_ten_percent_everywhere(case, request):
    ds = request.getfixturevalue(case).isel(time=0)
    pi0 = ds["pi0"].values[:, None, None]
    rh = bolton_rh(ds["th"].values, ds["qv"].values, pi0)
    np.testing.assert_allclose(rh, 0.1, rtol=1e-9)
    # including the bubble, where qv was raised
    inside = ds["thpert"].values > 0
    assert inside.any()
    assert (ds["qvpert"].values[inside] > 0).all()
    np.testing.assert_allclose(rh[inside], 0.1, rtol=1e-9)
    rh0 = bolton_rh(ds["th0"].values, ds["qv0"].values, ds["pi0"].values)
    np.testing.assert_allclose(rh0, 0.1, rtol=1e-9)


def test_relative_humidity_option():
    ds = xlex.cases.warm_bubble(theta_c=2, dx=2000.0, relative_humidity=0.5).isel(time=0)
    rh = bolton_rh(ds["th"].values, ds["qv"].values, ds["pi0"].values[:, None, None])
    np.testing.assert_allclose(rh, 0.5, rtol=1e-9)
    dry = xlex.cases.warm_bubble(theta_c=2, dx=2000.0, relative_humidity=0)
    np.testing.assert_array_equal(dry["qv"], 0.0)


def test_bubble_amplitude_and_location_on_the_cm1_grid(fine):
    tp = fine["thpert"].isel(time=0)
    # the centre (12, 12, 2) km falls on a face: L = sqrt(3) * 200 m / 2 km at the
    # nearest centres, so the maximum is cos^2(pi L / 2) theta_c = 0.928 theta_c = 4.639 K
    # (as in the CM1 reference run's README)
    expected = 5.0 * np.cos(np.pi * np.sqrt(3.0) * 0.1 / 2.0) ** 2
    assert float(tp.max()) == pytest.approx(expected, rel=1e-12)
    assert float(tp.max()) == pytest.approx(4.639, abs=5e-4)
    peak = tp.where(tp == tp.max(), drop=True)
    assert sorted(peak.xh.values) == [11800.0, 12200.0]
    assert sorted(peak.yh.values) == [11800.0, 12200.0]
    assert sorted(peak.zh.values) == [1800.0, 2200.0]
    assert int(peak.notnull().sum()) == 8
    assert float(tp.min()) == 0.0
    # zero outside the 2 km radius
    dist = np.sqrt(((tp.xh - 12000.0) / 2000.0) ** 2 + ((tp.yh - 12000.0) / 2000.0) ** 2
                   + ((tp.zh - 2000.0) / 2000.0) ** 2)
    assert float(abs(tp.where(dist > 1.0, 0.0)).max()) == 0.0


@pytest.mark.parametrize("theta_c", [0.0, 0.5, 1.0, 3.0])
def test_bubble_amplitude_scales(theta_c):
    ds = xlex.cases.warm_bubble(theta_c=theta_c, dx=2000.0)
    ref = xlex.cases.warm_bubble(theta_c=1.0, dx=2000.0)
    np.testing.assert_allclose(ds["thpert"], theta_c * ref["thpert"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ds["th"] - ds["th0"], ds["thpert"], atol=1e-12)


@pytest.mark.parametrize("case", ["coarse", "fine"])
def test_hydrostatic_base_state(case, request):
    ds = request.getfixturevalue(case)
    pi0 = ds["pi0"].values
    z = ds["zh"].values
    th0, qv0 = ds["th0"].values, ds["qv0"].values
    np.testing.assert_allclose(th0, 300.0)
    assert (np.diff(pi0) < 0).all()
    assert (np.diff(qv0) < 0).all()
    assert 0 < pi0[-1] < pi0[0] < 1.0
    thv = th0 * (1.0 + (1.0 / EPS - 1.0) * qv0)
    dpidz = np.diff(pi0) / np.diff(z)
    expected = -G / (CP * 0.5 * (thv[1:] + thv[:-1]))
    np.testing.assert_allclose(dpidz, expected, rtol=1e-4)
    # from 1000 hPa at the ground: pi(zh[0]) ~ 1 - g zh[0] / (cp thv)
    assert pi0[0] == pytest.approx(1.0 - G * z[0] / (CP * thv[0]), rel=1e-5)
    rho0 = 1e5 * pi0 ** ((CP - RD) / RD) / (RD * thv)
    np.testing.assert_allclose(ds["rho0"].values, rho0, rtol=1e-10)


def test_base_state_independent_of_bubble(coarse):
    other = xlex.cases.warm_bubble(theta_c=1, dx=2000.0)
    for name in ("th0", "qv0", "pi0", "rho0"):
        np.testing.assert_array_equal(other[name], coarse[name])


# --------------------------------------------------------------------------- precision, warnings


@pytest.mark.parametrize("x64", [True, False])
def test_float64_and_no_warnings_whatever_jax_precision(x64):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with jax.enable_x64(x64):
            ds = xlex.cases.warm_bubble(theta_c=5, dx=2000.0)
    for name in ds.variables:
        assert ds[name].dtype == np.float64, name
    for name in ds.data_vars:
        assert isinstance(ds[name].data, np.ndarray), name


def test_deterministic(coarse):
    import xarray as xr
    xr.testing.assert_identical(xlex.cases.warm_bubble(theta_c=5, dx=2000.0), coarse)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, error, name", [
    (dict(dx=-100.0), OptionError, "dx"),
    (dict(dx=0.0), OptionError, "dx"),
    (dict(dx=float("nan")), OptionError, "dx"),
    (dict(dx="400"), OptionTypeError, "dx"),
    (dict(dx=2000.0, dz=-5.0), OptionError, "dz"),
    (dict(dx=2000.0, dy=None, dz=True), OptionTypeError, "dz"),
    (dict(theta_c="5"), OptionTypeError, "theta_c"),
    (dict(theta_c=None), OptionTypeError, "theta_c"),
    (dict(theta_c=-1.0), OptionError, "theta_c"),
    (dict(relative_humidity=10), OptionError, "relative_humidity"),
    (dict(relative_humidity=-0.1), OptionError, "relative_humidity"),
    (dict(theta0=0.0), OptionError, "theta0"),
    (dict(x_radius=-1.0), OptionError, "x_radius"),
    (dict(surface_pressure="1000 hPa"), OptionTypeError, "surface_pressure"),
    (dict(z_length=0.0), OptionError, "z_length"),
])
def test_bad_options(kwargs, error, name):
    kwargs = {"dx": 2000.0, **kwargs}
    with pytest.raises(error) as info:
        xlex.cases.warm_bubble(**kwargs)
    assert isinstance(info.value, XlexError)
    assert name in str(info.value)


def test_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError):
        xlex.cases.warm_bubble(dx=2000.0, theta=5.0)


def test_spacing_that_does_not_divide_the_domain():
    with pytest.raises(OptionError) as info:
        xlex.cases.warm_bubble(dx=700.0)
    message = str(info.value)
    assert "700" in message and "24000" in message


def test_spacing_that_does_not_divide_the_domain_names_the_option():
    with pytest.raises(OptionError, match="dx"):
        xlex.cases.warm_bubble(dx=700.0)


def test_too_coarse_grid_is_an_option_error():
    # 24 km / 6 km = 4 cells is below the WENO5 stencil
    with pytest.raises(OptionError):
        xlex.cases.warm_bubble(dx=6000.0)


# --- convective boundary layer ------------------------------------------------

CBL_SMALL = dict(dx=400.0, dz=100.0, x_length=2400.0, y_length=2800.0, z_length=1500.0)


@pytest.fixture(scope="module")
def cbl():
    return xlex.cases.convective_boundary_layer(**CBL_SMALL)


def test_cbl_profile_mixed_layer_then_stable(cbl):
    z = cbl.zh.values
    th0 = cbl.th0.values
    below = z < 500.0
    np.testing.assert_allclose(th0[below], 300.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(th0[~below], 300.0 + 0.003 * (z[~below] - 500.0), atol=1e-12)
    # the free atmosphere is stable: N^2 > 0 above the mixed layer
    assert np.all(np.diff(th0[~below]) > 0)


def test_cbl_hydrostatic_and_relative_humidity(cbl):
    pi0 = cbl.pi0.values
    thrho0 = cbl.th0.values * (1 + xlex.core.constants.VIRTUAL * cbl.qv0.values)
    dz = 100.0
    # c_p th_rho d(pi)/dz = -g, centred between levels
    lhs = xlex.core.constants.CP * 0.5 * (thrho0[1:] + thrho0[:-1]) * np.diff(pi0) / dz
    np.testing.assert_allclose(lhs, -xlex.core.constants.GRAVITY, rtol=2e-4)
    rh = bolton_rh(cbl.th0.values, cbl.qv0.values, pi0)
    np.testing.assert_allclose(rh, 0.2, rtol=1e-6)


def test_cbl_perturbations_seeded_zero_mean_and_shallow(cbl):
    pert = (cbl.th - cbl.th0).isel(time=0)
    inside = pert.where(cbl.zh < 500.0, drop=True)
    above = pert.where(cbl.zh >= 500.0, drop=True)
    assert float(abs(inside).max()) <= 0.2 + 1e-12  # +-0.1 K, minus a level mean
    assert float(inside.std()) > 0.03
    np.testing.assert_allclose(inside.mean(("xh", "yh")), 0.0, atol=1e-14)
    assert float(abs(above).max()) == 0.0
    again = xlex.cases.convective_boundary_layer(**CBL_SMALL)
    other = xlex.cases.convective_boundary_layer(**CBL_SMALL, seed=1)
    assert (again.th == cbl.th).all()
    assert not (other.th == cbl.th).all()
    for name in ("u", "v", "w", "pipert"):
        assert float(abs(cbl[name]).max()) == 0.0


def physics_of(ds):
    return recorded_physics(ds.attrs)


def test_cbl_records_its_physics(cbl):
    physics = physics_of(cbl)
    assert physics.surface == xlex.BulkSurface(surface_potential_temperature=305.0,
                                               roughness_length=0.1, moisture_availability=0.0)
    assert physics.sgs == xlex.Smagorinsky()
    assert physics.advection == xlex.Advection() and physics.pressure == xlex.PressureSolver()
    assert cbl.attrs["case"] == "convective_boundary_layer"
    assert not any(k in cbl.attrs for k in ("xlex_surface", "xlex_sgs", "xlex_solver"))


def test_cbl_options_inherited_by_group(cbl):
    run = dict(duration="40s", dt=20.0, output_every="20s", progress=False,
               precision="float64")
    out = cbl.lex.integrate(**run)
    assert physics_of(out) == physics_of(cbl) and "hfx" in out and "km" in out
    assert float(out.hfx.isel(time=0).mean()) > 0  # the heated ground warms the air
    # naming a scheme replaces its whole group
    plain = cbl.lex.integrate(**run, surface="none", sgs=None)
    assert physics_of(plain).surface is None and physics_of(plain).sgs is None
    assert "hfx" not in plain and "km" not in plain
    wet = cbl.lex.integrate(**run, surface="bulk", surface_temperature=290.0)
    assert physics_of(wet).surface == xlex.BulkSurface(surface_temperature=290.0)
    assert float(wet.hfx.isel(time=0).mean()) < 0  # a cold ground
    assert physics_of(wet).sgs == xlex.Smagorinsky()


@pytest.mark.parametrize("kwargs, error, name", [
    (dict(lapse_rate=-0.001), OptionError, "lapse_rate"),
    (dict(mixed_layer_height=3000.0), OptionError, "mixed_layer_height"),
    (dict(sgs="bogus"), OptionError, "sgs"),
    (dict(seed=1.5), OptionTypeError, "seed"),
    (dict(perturbation=-1.0), OptionError, "perturbation"),
    (dict(moisture_availability=2.0), OptionError, "moisture_availability"),
    (dict(roughness_length=0.0), OptionError, "roughness_length"),
    (dict(dz=70.0), OptionError, "dz"),
    (dict(heat_flux=0.1), OptionTypeError, "heat_flux"),
])
def test_cbl_bad_options(kwargs, error, name):
    with pytest.raises(error, match=name):
        xlex.cases.convective_boundary_layer(**kwargs)


def mixed_layer_depth(th_mean, z, excess=0.25):
    """Lowest height where the level-mean th exceeds its minimum by ``excess`` K,
    above that minimum (the base of the capping stable layer)."""
    k_min = int(np.argmin(th_mean))
    above = np.nonzero(th_mean[k_min:] > th_mean[k_min] + excess)[0]
    return z[k_min + above[0]]


def test_cbl_deepens_and_mixes_over_an_hour():
    ds0 = xlex.cases.convective_boundary_layer(dx=200.0)
    out = ds0.lex.integrate("1h", dt=10.0, output_every="20min", progress=False,
                            precision="float64")
    z = out.zh.values
    th = out.th.mean(("xh", "yh")).values
    depths = [mixed_layer_depth(t, z) for t in th]
    # deepens by entrainment: several levels in an hour, never shallower
    assert depths[-1] >= depths[0] + 200.0, depths
    assert all(b >= a for a, b in zip(depths, depths[1:], strict=False)), depths
    # the air warms: the heated ground feeds the layer
    assert float(out.hfx.isel(time=-1).mean()) > 50.0
    assert th[-1][5] > th[0][5] + 0.5
    # the mixed layer (0.2 - 0.8 of its depth) is near uniform, against the
    # 3 K/km of the free atmosphere over the same depth
    zi = depths[-1]
    layer = (z > 0.2 * zi) & (z < 0.8 * zi)
    spread = th[-1][layer].max() - th[-1][layer].min()
    assert spread < 0.1 * (0.003 * 0.6 * zi), (spread, zi)
    # and convecting: resolved updraughts of order 1 m/s
    assert 0.5 < float(out.w.isel(time=-1).max()) < 10.0


def test_cbl_bad_recorded_option_names_the_attribute(cbl):
    bad = cbl.copy()
    bad.attrs[PHYSICS_ATTR] = bad.attrs[PHYSICS_ATTR].replace('"Smagorinsky"', '"Smag"')
    with pytest.raises(OptionError, match=f"{PHYSICS_ATTR} attribute"):
        bad.lex.integrate("20s", dt=10.0, output_every="10s", progress=False)
    # the whole physics named in the call overrides the bad record (the configuration
    # of the plain run of test_cbl_options_inherited_by_group: nothing new to compile)
    out = bad.lex.integrate("20s", dt=20.0, output_every="20s", progress=False,
                            precision="float64", physics=xlex.Physics())
    assert physics_of(out) == xlex.Physics()


def test_cbl_single_option_overrides_keep_the_rest(cbl):
    # float64 and one step an output, as in test_cbl_options_inherited_by_group: the
    # runs reuse its two compiled programs
    run = dict(duration="20s", dt=20.0, output_every="20s", progress=False,
               precision="float64")
    rough = cbl.lex.integrate(**run, roughness_length=0.5)
    assert physics_of(rough).surface == xlex.BulkSurface(
        surface_potential_temperature=305.0, roughness_length=0.5, moisture_availability=0.0)
    cold = cbl.lex.integrate(**run, surface_temperature=290.0)
    assert physics_of(cold).surface == xlex.BulkSurface(
        surface_temperature=290.0, roughness_length=0.1, moisture_availability=0.0)
    assert float(cold.hfx.isel(time=0).mean()) < 0
    # the rougher ground drags harder on the same wind
    windy = cbl.assign(u=cbl.u + 5.0)
    smooth = windy.lex.integrate(**run)
    rough = windy.lex.integrate(**run, roughness_length=0.5)
    assert float(rough.ustar.isel(time=0).mean()) > 1.2 * float(smooth.ustar.isel(time=0).mean())


def test_default_spacing_is_the_readme_run():
    import inspect
    assert inspect.signature(xlex.cases.warm_bubble).parameters["dx"].default == 400.0


def test_a_grid_that_cannot_fit_is_refused_before_allocating():
    import time
    start = time.perf_counter()
    with pytest.raises(OptionError, match=r"GiB.*coarser spacing") as info:
        xlex.cases.warm_bubble(dx=20.0)
    assert "1200 x 1200 x 600" in str(info.value)
    assert time.perf_counter() - start < 5.0  # refused, not built


def test_grid_size_check_uses_the_memory_given():
    from xlex.core.grid import Grid
    from xlex.io.cases import check_grid_size
    small = Grid(nx=60, ny=60, nz=30, dx=400.0, dy=400.0, dz=400.0)
    check_grid_size(small, memory=2**30)  # 108 000 cells, about 20 MB: fine
    with pytest.raises(OptionError, match="GiB"):
        check_grid_size(small, memory=2**20)
    big = Grid(nx=240, ny=240, nz=120, dx=100.0, dy=100.0, dz=100.0)
    with pytest.warns(UserWarning, match="6,912,000 cells"):
        check_grid_size(big, memory=2**40)


# --------------------------------------------------------------------------- implausible units


@pytest.mark.parametrize("builder, kwargs, words", [
    ("warm_bubble", dict(dx=0.4, x_length=24.0, y_length=24.0, z_length=12.0),
     ["dx = dy = dz = 0.4 m", "24 x 24 x 12 m domain", "implausible for an LES",
      "did you give kilometres?", "e.g. dx=400.0, x_length=24000.0"]),
    ("warm_bubble", dict(dx=2.0, x_length=24.0),
     ["a 24 m wide domain (x_length)", "kilometres", "x_length=24000.0"]),
    ("warm_bubble", dict(dx=0.5, dz=0.25, x_length=240.0, y_length=240.0, z_length=240.0),
     ["dx = dy = 0.5 m and dz = 0.25 m", "kilometres", "dx=500.0, dz=250.0"]),
    ("convective_boundary_layer", dict(dx=0.1, dz=0.05, x_length=4.0, y_length=4.0,
                                       z_length=2.0),
     ["dx = dy = 0.1 m and dz = 0.05 m", "4 x 4 x 2 m domain", "kilometres",
      "dx=100.0, dz=50.0, x_length=4000.0"]),
    ("density_current", dict(dx=0.1, x_length=51.2, z_length=6.4),
     ["dx = dy = dz = 0.1 m", "51.2 x 6.4 m domain", "kilometres", "x_length=51200.0"]),
    ("density_current", dict(dx=10.0, x_length=5120.0, z_length=640.0),
     ["ny * dy = 6 x 10 m = 60 m wide in y", "ny=10"]),
], ids=["bubble-km", "bubble-length", "bubble-dz", "cbl-km", "dc-km", "dc-narrow"])
def test_implausible_lengths_ask_about_units(builder, kwargs, words):
    """km given as metres is refused by every builder (one shared check) before
    anything is built, with a message that asks about units and shows the fix."""
    with pytest.raises(OptionError) as info:
        getattr(xlex.cases, builder)(**kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_plausible_small_grids_pass():
    from xlex.io.cases import check_plausible_lengths
    check_plausible_lengths({"dx": 1.0, "dz": 1.0}, {"x_length": 100.0, "z_length": 100.0})
    with pytest.raises(OptionError, match="dz = 0.99 m is implausible"):
        check_plausible_lengths({"dx": 1.0, "dz": 0.99}, {"x_length": 100.0})


def test_a_dataset_in_km_is_refused_before_compiling(coarse, monkeypatch):
    """A Dataset whose coordinates are km labelled metres: refused by
    dataset_to_inputs with a units hint, before anything compiles."""
    import xlex.runner
    from xlex.core.errors import DatasetError
    km = coarse.assign_coords({n: coarse[n] / 1000.0 for n in ("xh", "xf", "yh", "yf",
                                                                "zh", "zf")})
    monkeypatch.setattr(xlex.runner, "compiled_chunk", None)  # compiling fails the test
    with pytest.raises(DatasetError) as info:
        km.lex.integrate("2min", dt=20.0, output_every="1min", progress=False)
    message = str(info.value)
    assert "too small for an LES" in message and "in km but labelled metres" in message
    assert "* 1000" in message


# --------------------------------------------------------------------------- dt for the flow


def _dt_warnings(record):
    return [str(w.message) for w in record if issubclass(w.category, RuntimeWarning)
            and "suits the initial state" in str(w.message)]


@pytest.mark.parametrize("dx, dt", [(400.0, 12.0), (2000.0, 20.0), (1000.0, 10.0)],
                         ids=["readme", "2km-dt20", "1km-dt10"])
def test_usual_time_steps_are_not_flagged(dx, dt):
    """The README's run (its Courant number peaks at 1.51 near 17 min, measured)
    and the test suite's usual runs: no warning about the flow to come."""
    from xlex.io.convert import dataset_to_inputs
    from xlex.runner import _warn_dt_for_flow
    inputs = dataset_to_inputs(xlex.cases.warm_bubble(dx=dx))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_dt_for_flow(inputs, dt)


def test_a_dt_too_large_for_the_flow_warns_once_and_the_advice_runs():
    """5 K bubble at 1 km: dt = 60 s passes the check at rest, is flagged once
    before the run, and blows up (Courant 1.65 near 7 min, measured); the dt the
    warning names (36 s) runs past the peak updraft (about 31 m/s near 15 min)."""
    ds = xlex.cases.warm_bubble(dx=1000.0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with pytest.raises(xlex.BlowUpError, match="Courant number"):
            ds.lex.integrate("8min", dt=60.0, output_every="2min", progress=False)
    flagged = _dt_warnings(record)
    assert len(flagged) == 1, flagged
    assert "dt = 60 s" in flagged[0] and "blow up" in flagged[0]
    safe = float(flagged[0].split("Use dt <= ")[1].split(" s")[0])
    assert 30.0 <= safe < 42.0  # under 1.6 / the measured peak Courant rate 0.0378 s-1
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = ds.lex.integrate(35 * safe, dt=safe, output_every=5 * safe, progress=False)
    assert not _dt_warnings(record)
    assert out.attrs["xlex_status"] == "complete"
    assert float(out["w"].max()) > 25.0  # the flow the estimate was for did come


def test_a_run_too_short_for_the_flow_is_not_flagged():
    """The 5 K bubble at 1 km with dt = 60 s is flagged for 8 minutes (it blows up
    near 7), not for 1 minute: from rest, no air gains more than the largest
    buoyancy (0.10 m s-2 at the cell centres) times 60 s, 6.0 m/s, a Courant
    number of 0.36."""
    from xlex.io.convert import dataset_to_inputs
    from xlex.runner import _warn_dt_for_flow
    inputs = dataset_to_inputs(xlex.cases.warm_bubble(dx=1000.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_dt_for_flow(inputs, 60.0, 60.0)
    with pytest.warns(RuntimeWarning, match=r"dt = 60 s suits the initial state"):
        _warn_dt_for_flow(inputs, 60.0, 480.0)
    # between the two, the speed the run can reach sets the advice: 5 min, 30 m/s
    with pytest.warns(RuntimeWarning, match=r"speeds near 30 m/s.*Use dt <= 53 s"):
        _warn_dt_for_flow(inputs, 60.0, 300.0)


def test_a_cold_pool_uses_its_own_factor():
    """Sinking air outruns its estimate less (density current: ratio 0.78):
    the docs' run (100 m, dt 3 s) is not flagged, twice its dt is."""
    from xlex.io.convert import dataset_to_inputs
    from xlex.io.plausible import buoyant_speed
    from xlex.runner import _warn_dt_for_flow
    inputs = dataset_to_inputs(xlex.cases.density_current(dx=800.0))
    flow = buoyant_speed(inputs)
    assert flow.rising == 0.0 and 45.0 < flow.sinking < 48.0  # sqrt(2 b r), b = 0.54, r = 2 km
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_dt_for_flow(inputs, 3.0 * 8)  # the docs' 100 m, dt 3 s, scaled to 800 m
    with pytest.warns(RuntimeWarning, match=r"dt = 48 s.*Use dt <= 2\d s"):
        _warn_dt_for_flow(inputs, 6.0 * 8)
