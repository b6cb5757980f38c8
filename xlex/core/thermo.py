"""Moist thermodynamics: density potential temperature, the base state's density
and mass weight, buoyancy, saturation, and the hydrostatic base state.

The formulas take arrays of any namespace (NumPy at the edges, JAX in the
core); :class:`~xlex.core.state.BaseState` computes its ``thrho0``, ``rho0``
and ``mass`` with them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax.numpy as jnp
import numpy as np

from xlex.core import constants as c

if TYPE_CHECKING:
    from xlex.core.state import BaseState


def density_potential_temperature(th, qv):
    """th_rho = th (1 + (1/eps - 1) qv), no condensate [K] (paper eq. 3, linearised)."""
    return th * (1.0 + c.VIRTUAL * qv)


def base_density(th0, qv0, pi0):
    """rho0 = p0 pi0^(cv/Rd) / (Rd thrho0), the base state's density [kg m-3] from
    its potential temperature th0 [K], mixing ratio qv0 [kg kg-1] and Exner function
    pi0 [1] (equation of state)."""
    return c.P0 * pi0 ** (c.CV / c.RD) / (c.RD * density_potential_temperature(th0, qv0))


def mass_weight(rho0, th0, qv0):
    """m = rho0 thrho0 [kg m-3 K], the pseudo-density of the constraint div(m u) = 0
    and of the advective mass flux, from the base state's density rho0 [kg m-3],
    potential temperature th0 [K] and mixing ratio qv0 [kg kg-1]."""
    return rho0 * density_potential_temperature(th0, qv0)


def buoyancy(th, qv, base: BaseState):
    """B = g [(th - th0)/th0 + (1/eps - 1)(qv - qv0)] at cell centres [m s-2] (paper eq. 8)."""
    th0 = base.th0[:, None, None]
    qv0 = base.qv0[:, None, None]
    return c.GRAVITY * ((th - th0) / th0 + c.VIRTUAL * (qv - qv0))


def saturation_vapour_pressure(temperature, xp=jnp):
    """Saturation vapour pressure over liquid water, Bolton (1980) [Pa].

    es = 611.2 exp(17.67 (T - 273.15) / (T - 29.65)), T in K.
    """
    return 611.2 * xp.exp(17.67 * (temperature - 273.15) / (temperature - 29.65))


def saturation_mixing_ratio(temperature, pressure, xp=jnp):
    """qs = eps es / (p - es) [kg kg-1] for temperature [K] and pressure [Pa]."""
    es = saturation_vapour_pressure(temperature, xp)
    return c.EPS * es / (pressure - es)


def pressure_from_exner(pi, xp=jnp):
    """p = p0 pi^(cp/Rd) [Pa]."""
    return c.P0 * pi ** (1.0 / c.KAPPA)


def mixing_ratio_from_relative_humidity(rh, th, pi, xp=jnp):
    """qv [kg kg-1] giving relative humidity ``rh`` (fraction, qv/qs) at potential
    temperature ``th`` [K] and Exner function ``pi`` [1]."""
    return rh * saturation_mixing_ratio(th * pi, pressure_from_exner(pi, xp), xp)


def hydrostatic_sounding(z, theta, *, relative_humidity=None, qv=None,
                         surface_pressure=1.0e5, step=10.0):
    """Integrate a hydrostatic sounding upward from the ground (numpy, set-up time).

    c_p th_rho d(pi)/dz = -g (paper eq. 10), with th_rho from th and qv; where
    ``relative_humidity`` is given, qv at each level is the value giving that
    relative humidity at the level's own temperature and pressure (Bolton 1980),
    so the sounding is built the way CM1 builds one from a 10 m sounding.

    Parameters
    ----------
    z : array
        Heights at which to return the profile [m], ascending, >= 0.
    theta : callable
        Potential temperature th(z) [K] for heights in m.
    relative_humidity : callable or float, optional
        RH(z) as a fraction (0.1 = 10 %).
    qv : callable or float, optional
        Mixing ratio qv(z) [kg kg-1] (instead of ``relative_humidity``).
    surface_pressure : float
        Pressure at z = 0 [Pa].
    step : float
        Integration step [m].

    Returns
    -------
    th, qv, pi : numpy arrays at ``z``.
    """
    z = np.asarray(z, dtype=np.float64)
    if (relative_humidity is None) == (qv is None):
        raise ValueError("give exactly one of relative_humidity and qv")

    def as_fn(value):
        return value if callable(value) else (lambda zz: np.full_like(zz, float(value)))

    th_fn = as_fn(theta)
    rh_fn = as_fn(relative_humidity) if relative_humidity is not None else None
    qv_fn = as_fn(qv) if qv is not None else None

    top = float(z.max()) if z.size else 0.0
    n = max(int(np.ceil(top / step)), 1)
    zs = np.linspace(0.0, n * step, n + 1)
    ths = th_fn(zs)
    pis = np.empty_like(zs)
    qvs = np.empty_like(zs)
    pis[0] = (surface_pressure / c.P0) ** c.KAPPA

    def qv_at(i, pi):
        if qv_fn is not None:
            return qv_fn(zs[i:i + 1])[0]
        return mixing_ratio_from_relative_humidity(rh_fn(zs[i:i + 1])[0], ths[i], pi, np)

    qvs[0] = qv_at(0, pis[0])
    for i in range(n):
        # trapezoidal step in th_rho, iterated because qv depends on pi
        pi_next = pis[i] - c.GRAVITY * step / (
            c.CP * density_potential_temperature(ths[i], qvs[i]))
        for _ in range(3):
            q_next = qv_at(i + 1, pi_next)
            thr = 0.5 * (density_potential_temperature(ths[i], qvs[i])
                         + density_potential_temperature(ths[i + 1], q_next))
            pi_next = pis[i] - c.GRAVITY * step / (c.CP * thr)
        pis[i + 1] = pi_next
        qvs[i + 1] = qv_at(i + 1, pi_next)
    return (np.interp(z, zs, ths), np.interp(z, zs, qvs), np.interp(z, zs, pis))


def base_state_from_profiles(th0, qv0, pi0, dtype=None) -> BaseState:
    """A :class:`BaseState` from 1-D profiles on cell centres (``dtype`` default:
    JAX's default float, float64 only where x64 is enabled)."""
    from xlex.core.state import BaseState  # state computes its mass with this module

    dtype = dtype or jnp.result_type(float)
    return BaseState(th0=jnp.asarray(th0, dtype), qv0=jnp.asarray(qv0, dtype),
                     pi0=jnp.asarray(pi0, dtype))
