"""The density current of Straka et al. (1993): the case builder and the
benchmark at 900 s against the paper's converged solution (issue 10).

Straka, J. M., R. B. Wilhelmson, L. J. Wicker, J. R. Anderson and
K. K. Droegemeier, 1993: Numerical solutions of a non-linear density current:
a benchmark solution and comparisons. Int. J. Numer. Methods Fluids, 17, 1-22.

The paper's converged reference (from its finest grids) has, at 900 s, the
right-moving front (the -1 K contour of theta' at the ground) at 15.54 km
from the bubble centre and a minimum theta' of -9.77 K. The 100 m solutions
of the models compared in the paper spread about these by roughly +-0.3 km in
the front position and +-1 K in the minimum theta'; the slow test below holds
xlex's 100 m run to those bounds. (These published numbers are quoted from
the paper as remembered by the author of this test and as used by the many
later papers that rerun the case; the paper's text was not at hand.)
docs/validation.md has the 200, 100 and 50 m runs: min theta' converges to
the published value (-9.71 K at 50 m, about -9.79 K extrapolated), the front
to about 15.42 km, 0.8 % behind the published one, which is the size of the
O(Mach^2) difference between xlex's pseudo-incompressible equations and the
compressible models of the paper.
"""

from __future__ import annotations

import numpy as np
import pytest

import xlex
from xlex.core import constants
from xlex.core.errors import OptionError, OptionTypeError
from xlex.options import recorded_physics

#: Straka et al. (1993), converged solution at 900 s.
REFERENCE_FRONT = 15540.0  # m
REFERENCE_MIN_THPERT = -9.77  # K
#: The spread of the paper's 100 m solutions among models.
FRONT_SPREAD = 300.0  # m
MIN_THPERT_SPREAD = 1.0  # K


def front_position(ds, contour=-1.0):
    """x [m] of the right-moving front: where theta' at the lowest level, going
    outward from the centre (x > 0), last crosses ``contour`` (linear
    interpolation between the two cell centres that bracket it). A 2-D case,
    so theta' is averaged over y (its cells are identical)."""
    low = ds.thpert.isel(zh=0).mean("yh")
    x = low.xh.values
    th = low.values
    right = x > 0
    x, th = x[right], th[right]
    cold = np.nonzero(th <= contour)[0]
    if cold.size == 0 or cold[-1] + 1 >= x.size:
        raise AssertionError(f"no {contour} K front inside the right half of the domain")
    i = cold[-1]
    return float(x[i] + (contour - th[i]) * (x[i + 1] - x[i]) / (th[i + 1] - th[i]))


def left_front_position(ds, contour=-1.0):
    """x [m] of the left-moving front (negative), measured like :func:`front_position`."""
    mirrored = ds.isel(xh=slice(None, None, -1)).assign_coords(xh=-ds.xh.values[::-1])
    return -front_position(mirrored, contour)


# --------------------------------------------------------------------------- the builder


def test_density_current_initial_state():
    """The cold bubble of the paper: dT = -15 K (cos(pi L) + 1)/2 at the base
    pressure, i.e. theta' = dT / pi0(z), centred at (0, 3 km) with radii 4 and
    2 km, in a dry, neutral, hydrostatic 300 K atmosphere at rest on a 51.2 x
    6.4 km domain centred on x = 0, with ny identical cells in y."""
    ds = xlex.cases.density_current(dx=400.0)
    assert (ds.sizes["xh"], ds.sizes["yh"], ds.sizes["zh"]) == (128, 6, 16)
    assert ds.xh.values[0] == -25400.0 and ds.xh.values[-1] == 25400.0
    assert ds.xf.values[0] == -25600.0 and ds.zf.values[-1] == 6400.0
    z = ds.zh.values
    # dry neutral hydrostatic base: c_p th0 d(pi0)/dz = -g exactly, pi0(0) = 1 at 1000 hPa
    np.testing.assert_allclose(ds.pi0.values, 1.0 - constants.GRAVITY * z / (constants.CP * 300.0),
                               rtol=0, atol=1e-9)
    assert float(abs(ds.th0 - 300.0).max()) == 0.0
    assert float(abs(ds.qv).max()) == 0.0 and float(abs(ds.qv0).max()) == 0.0
    for name in ("u", "v", "w", "pipert"):
        assert float(abs(ds[name]).max()) == 0.0
    x = ds.xh.values[None, :]
    dist = np.sqrt((x / 4000.0) ** 2 + ((z[:, None] - 3000.0) / 2000.0) ** 2)
    d_temperature = np.where(dist <= 1.0, -15.0 * (np.cos(np.pi * dist) + 1.0) / 2.0, 0.0)
    expected = d_temperature / ds.pi0.values[:, None]
    for j in range(ds.sizes["yh"]):
        np.testing.assert_allclose(ds.thpert.isel(time=0, yh=j).values, expected, rtol=0,
                                   atol=1e-12)
    # symmetric about x = 0; the coldest cell is -15 K / pi0(3 km) ~ -16.6 K
    np.testing.assert_array_equal(ds.thpert.values, ds.thpert.values[..., ::-1])
    assert -16.7 < float(ds.thpert.min()) < -16.4


def test_density_current_records_its_case_and_physics():
    """The global attributes say how the state was made, and the recorded
    physics is the paper's constant viscosity and diffusivity (75 m2/s), which
    integrate uses when the call names no sgs scheme."""
    ds = xlex.cases.density_current(dx=800.0, viscosity=50.0, diffusivity=20.0)
    assert ds.attrs["case"] == "density_current"
    assert ds.attrs["case_temperature_perturbation"] == -15.0
    assert ds.attrs["case_x_radius"] == 4000.0 and ds.attrs["case_z_radius"] == 2000.0
    assert ds.attrs["case_ny"] == 6 and ds.attrs["surface_pressure"] == 1.0e5
    physics = recorded_physics(ds.attrs)
    assert physics.sgs == xlex.ConstantViscosity(nu=50.0, kappa=20.0)
    assert physics.rotation is None and physics.surface is None
    default = recorded_physics(xlex.cases.density_current(dx=800.0).attrs)
    assert default.sgs == xlex.ConstantViscosity(nu=75.0, kappa=75.0)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(ny=5), OptionError, ["ny", "6"]),
    (dict(ny=6.0), OptionTypeError, ["ny", "integer"]),
    (dict(dx=300.0), OptionError, ["dx", "divide"]),
    (dict(dx=-100.0), OptionError, ["dx", "positive"]),
    (dict(viscosity=-1.0), OptionError, ["viscosity", ">= 0"]),
    (dict(diffusivity=float("nan")), OptionError, ["diffusivity", "finite"]),
    (dict(x_radius=0.0), OptionError, ["x_radius"]),
    (dict(temperature_perturbation="cold"), OptionTypeError, ["temperature_perturbation"]),
    (dict(theta_c=-15.0), OptionTypeError, ["theta_c", "unknown"]),
])
def test_density_current_refuses_bad_options(kwargs, error, words):
    with pytest.raises(error) as info:
        xlex.cases.density_current(**{"dx": 400.0, **kwargs})
    assert all(w in str(info.value) for w in words), str(info.value)


def test_density_current_takes_keywords_only():
    with pytest.raises(OptionTypeError, match="keyword"):
        xlex.cases.density_current(100.0)


# --------------------------------------------------------------------------- the benchmark


@pytest.mark.slow
def test_density_current_matches_straka_at_100_m():
    """At 900 s on the 100 m grid (512 x 6 x 64 cells), the right-moving front
    and the minimum theta' lie within the spread of the paper's 100 m
    solutions about its converged values (15.54 km +- 0.3 km, -9.77 K +- 1 K);
    the run stays 2-D (identical y cells) and symmetric about x = 0.

    dt = 3 s: the largest Courant number of the run, dt (|u|/dx + |w|/dz), is
    about 1.3 (u up to 38 m/s, w to 23 m/s), under the runner's limit 1.6.
    float32, integrate's default (79 s on the 2-core development CPU).
    Measured: front 15.397 km, min theta' -9.474 K (float64 at dt = 2 s:
    15.400 km, -9.483 K)."""
    ds0 = xlex.cases.density_current(dx=100.0)
    out = ds0.lex.integrate(900.0, dt=3.0, output_every=900.0, progress=False)
    final = out.isel(time=-1)
    front = front_position(final)
    min_thpert = float(final.thpert.min())
    assert abs(front - REFERENCE_FRONT) <= FRONT_SPREAD, front
    assert abs(min_thpert - REFERENCE_MIN_THPERT) <= MIN_THPERT_SPREAD, min_thpert
    assert abs(left_front_position(final) + front) < 1.0  # m
    spread_y = float(abs(final.thpert - final.thpert.mean("yh")).max())
    assert spread_y < 1e-4, spread_y
