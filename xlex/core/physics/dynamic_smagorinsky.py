"""Dynamic Smagorinsky model (Germano et al. 1991, Lilly 1992).

The Smagorinsky constant is computed from the resolved flow instead of being
prescribed. With a test filter ``^`` of twice the grid size (alpha = 2) and the
model stress ``tau_ij = -2 C Delta^2 |S| S_ij`` (C = cs^2), Germano's identity
``L_ij = T_ij - ^tau_ij`` for the resolved (Leonard) stress::

    L_ij = ^(u_i u_j) - ^u_i ^u_j

gives ``L_ij = C M_ij`` with::

    M_ij = 2 Delta^2 ( ^(|S| S_ij) - alpha^2 |^S| ^S_ij ),

and Lilly's least-squares solution, averaged over horizontal planes (the
homogeneous directions of these periodic domains), is::

    C(z) = < L_ij M_ij > / < M_ij M_ij >.

Negative C (backscatter) would make the total viscosity negative and is
clipped to zero. The deviatoric parts of L and M are used (the isotropic part
goes into the pressure). With ``stability=True`` the strain magnitude is the
buoyancy-reduced one of :func:`~xlex.core.physics.smagorinsky.smagorinsky_viscosity`,
``|S|_N = sqrt(max(|S|^2 - N^2 / Pr, 0))``, in M and in the viscosity alike.

The fit works on cell-centred velocities with centred differences, which do
not see the 2 Delta wave; the viscosity it scales is that of the
Smagorinsky model, with the C-grid strain, which does (on the resolved
bubble flow the C-grid ``|S|`` is 5-20 % larger). There is no upper bound on C.

The test filter is the trapezoidal (1/4, 1/2, 1/4) filter in x, y and z, which
has width 2 Delta in each direction. At the walls u, v and the scalars are
mirrored (zero gradient, free slip) and w is mirrored with a sign change
(w = 0 on the wall).
"""

from __future__ import annotations

import jax.numpy as jnp

from xlex.core import operators as op
from xlex.core.grid import Grid
from xlex.core.physics import smagorinsky
from xlex.core.physics.scheme import PhysicsScheme, check_flag, check_number, parameter, scheme
from xlex.core.state import State

#: Ratio of the test-filter width to the grid-filter width.
FILTER_RATIO = 2.0

_EVEN, _ODD = 1.0, -1.0


def _mirror_z(a, parity):
    """``a`` with one ghost level below and above: the wall neighbour reflected,
    with its sign changed where ``parity`` is odd."""
    return jnp.concatenate([parity * a[..., :1, :, :], a, parity * a[..., -1:, :, :]], axis=-3)


def trapezoidal_filter(a, parity=_EVEN):
    """Trapezoidal (1/4, 1/2, 1/4) filter in x, y (periodic) and z (mirrored at
    the walls with ``parity`` +1 or -1) of a cell-centred field."""
    for axis in (op.X, op.Y):
        a = 0.25 * (jnp.roll(a, 1, axis) + 2.0 * a + jnp.roll(a, -1, axis))
    p = _mirror_z(a, parity)
    return 0.25 * (p[..., :-2, :, :] + 2.0 * p[..., 1:-1, :, :] + p[..., 2:, :, :])


#: u, v and w interpolated to the cell centres (:func:`xlex.core.operators.centred_winds`).
centred_velocity = op.centred_winds


def centred_strain(uc, vc, wc, grid: Grid):
    """Strain-rate tensor of cell-centred velocities by centred differences, as a
    dict ``{(i, j): S_ij}`` over the six pairs i <= j (axes 0 = x, 1 = y, 2 = z)."""
    def dx(a):
        return (jnp.roll(a, -1, op.X) - jnp.roll(a, 1, op.X)) / (2.0 * grid.dx)

    def dy(a):
        return (jnp.roll(a, -1, op.Y) - jnp.roll(a, 1, op.Y)) / (2.0 * grid.dy)

    def dz(a, parity):
        p = _mirror_z(a, parity)
        return (p[..., 2:, :, :] - p[..., :-2, :, :]) / (2.0 * grid.dz)

    grad = {  # grad[(i, j)] = d u_i / d x_j
        (0, 0): dx(uc), (0, 1): dy(uc), (0, 2): dz(uc, _EVEN),
        (1, 0): dx(vc), (1, 1): dy(vc), (1, 2): dz(vc, _EVEN),
        (2, 0): dx(wc), (2, 1): dy(wc), (2, 2): dz(wc, _ODD),
    }
    return {(i, j): 0.5 * (grad[(i, j)] + grad[(j, i)])
            for i in range(3) for j in range(i, 3)}


def _weight(i, j):
    """Multiplicity of the pair (i, j) in a full contraction of symmetric tensors."""
    return 1.0 if i == j else 2.0


def _deviatoric(t):
    trace = (t[(0, 0)] + t[(1, 1)] + t[(2, 2)]) / 3.0
    return {k: (v - trace if k[0] == k[1] else v) for k, v in t.items()}


def _strain_magnitude(s, n2, prandtl):
    """``|S| = sqrt(2 S_ij S_ij)``, reduced by N^2 / Pr where ``n2`` is given; a
    sqrt with a zero (not NaN) derivative where it vanishes."""
    s2 = 2.0 * sum(_weight(*k) * v ** 2 for k, v in s.items())
    if n2 is not None:
        s2 = s2 - n2 / prandtl
    positive = s2 > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, s2, 1.0)), 0.0)


def leonard_stress(uc, vc, wc):
    """Resolved stress between the grid and test filters, L_ij = ^(u_i u_j) - ^u_i ^u_j."""
    vel = (uc, vc, wc)
    parity = (_EVEN, _EVEN, _ODD)
    filtered = [trapezoidal_filter(a, p) for a, p in zip(vel, parity, strict=True)]
    return {(i, j): trapezoidal_filter(vel[i] * vel[j], parity[i] * parity[j])
            - filtered[i] * filtered[j] for i in range(3) for j in range(i, 3)}


def germano_tensors(state: State, grid: Grid, *, prandtl=1.0 / 3.0, stability=True,
                    filter_ratio=FILTER_RATIO):
    """The deviatoric tensors (L_ij, M_ij) of the Germano identity L = C M, each a
    dict over the six pairs i <= j, at cell centres [m2 s-2]. ``filter_ratio``:
    the test-to-grid filter width ratio alpha in M (2 for this test filter)."""
    delta2 = (grid.dx * grid.dy * grid.dz) ** (2.0 / 3.0)
    parity = (_EVEN, _EVEN, _ODD)
    uc, vc, wc = centred_velocity(state.u, state.v, state.w)
    s = centred_strain(uc, vc, wc, grid)
    n2 = n2_hat = None
    if stability:
        n2 = smagorinsky.brunt_vaisala_squared(state.th, state.qv, grid)
        n2_hat = smagorinsky.brunt_vaisala_squared(
            trapezoidal_filter(state.th), trapezoidal_filter(state.qv), grid)
    mag = _strain_magnitude(s, n2, prandtl)
    hats = [trapezoidal_filter(a, p) for a, p in zip((uc, vc, wc), parity, strict=True)]
    s_hat = centred_strain(*hats, grid)
    mag_hat = _strain_magnitude(s_hat, n2_hat, prandtl)
    m = {(i, j): 2.0 * delta2 * (trapezoidal_filter(mag * s[(i, j)], parity[i] * parity[j])
                                 - filter_ratio ** 2 * mag_hat * s_hat[(i, j)])
         for (i, j) in s}
    return _deviatoric(leonard_stress(uc, vc, wc)), _deviatoric(m)


def least_squares_coefficient(lij, mij):
    """Lilly's C(z) = <L_ij M_ij> / <M_ij M_ij> over each horizontal plane,
    clipped at zero; shape ``(..., nz, 1, 1)``. Zero on a plane where M vanishes
    (a flow at rest), with a finite derivative there."""
    lm = sum(_weight(*k) * lij[k] * mij[k] for k in lij)
    mm = sum(_weight(*k) * mij[k] ** 2 for k in mij)
    lm = jnp.mean(lm, axis=(op.Y, op.X), keepdims=True)
    mm = jnp.mean(mm, axis=(op.Y, op.X), keepdims=True)
    defined = mm > 0
    c = jnp.where(defined, lm / jnp.where(defined, mm, 1.0), 0.0)
    return jnp.maximum(c, 0.0)


def dynamic_coefficient(state: State, grid: Grid, *, prandtl=1.0 / 3.0, stability=True,
                        filter_ratio=FILTER_RATIO):
    """The dynamic Smagorinsky coefficient C(z) = cs(z)^2 [1], ``(..., nz, 1, 1)``."""
    lij, mij = germano_tensors(state, grid, prandtl=prandtl, stability=stability,
                               filter_ratio=filter_ratio)
    return least_squares_coefficient(lij, mij)


def dynamic_smagorinsky_viscosity(state: State, grid: Grid, *, prandtl=1.0 / 3.0,
                                  stability=True, coefficient=None, filter_ratio=FILTER_RATIO
                                  ) -> smagorinsky.EddyDiffusivity:
    """Eddy viscosity and diffusivity of the dynamic model [m2 s-1]:
    ``K_m = C(z) Delta^2 |S|_N`` with the C-grid strain of the Smagorinsky model,
    K_h = K_m / Pr. ``coefficient``: C(z) if already computed."""
    c = coefficient
    if c is None:
        c = dynamic_coefficient(state, grid, prandtl=prandtl, stability=stability,
                                filter_ratio=filter_ratio)
    unit = smagorinsky.smagorinsky_viscosity(state, grid, cs=1.0, prandtl=prandtl,
                                             stability=stability)
    km = c * unit.km
    return smagorinsky.EddyDiffusivity(km=km, kh=km / prandtl)


@scheme
class DynamicSmagorinsky(PhysicsScheme):
    """Dynamic Smagorinsky subgrid scheme (see the module docstring): the
    coefficient C(z) = cs(z)^2 from the Germano identity and Lilly's least
    squares over each horizontal plane, clipped at zero, computed once per step.

    Parameters
    ----------
    prandtl : float
        Turbulent Prandtl number [1] (1/3): K_h = K_m / prandtl.
    stability : bool
        Use the strain rate reduced by N^2 / prandtl (as Smagorinsky does) in
        M and in the viscosity.
    filter_ratio : float
        Test-to-grid filter width ratio alpha [1] (2, the width of the
        trapezoidal test filter); a parameter so that it can be calibrated.
    per_stage : bool
        Compute C(z) and the coefficients again at every Runge-Kutta stage
        (third order in time) instead of once per step (default False).
    """

    prandtl: float = parameter(1.0 / 3.0)
    stability: bool = True
    filter_ratio: float = parameter(FILTER_RATIO)
    per_stage: bool = False

    outputs = {**smagorinsky.EDDY_OUTPUTS,
               "cs2": (("zh",), {"units": "1", "long_name": "dynamic Smagorinsky coefficient "
                                 "cs^2, averaged over each level"})}

    def __post_init__(self):
        check_number("DynamicSmagorinsky", "prandtl", self.prandtl, low=0.0, low_open=True)
        check_flag("DynamicSmagorinsky", "stability", self.stability)
        check_flag("DynamicSmagorinsky", "per_stage", self.per_stage)
        check_number("DynamicSmagorinsky", "filter_ratio", self.filter_ratio, low=1.0,
                     low_open=True, high=10.0)

    def _options(self):
        return {"prandtl": self.prandtl, "stability": self.stability,
                "filter_ratio": self.filter_ratio}

    def prepare(self, state, base, grid):
        return dynamic_smagorinsky_viscosity(state, grid, **self._options())

    def tendency(self, state, prepared, base, grid):
        return smagorinsky.subgrid_tendency(state, prepared, base, grid)

    def diagnose(self, state, base, grid):
        # the coefficient once, for cs2 and the viscosity alike
        c = dynamic_coefficient(state, grid, **self._options())
        k = dynamic_smagorinsky_viscosity(state, grid, coefficient=c, **self._options())
        return {"km": k.km, "kh": k.kh, "cs2": c[..., 0, 0]}
