"""Tests of the dynamic Smagorinsky model (xlex.core.physics.dynamic_smagorinsky) and of its
coupling into the model (Physics(sgs=DynamicSmagorinsky())): agreement of the Germano tensors
and of Lilly's coefficient C(z) with an independent NumPy implementation (with and
without the N^2 / Pr stability reduction), the least-squares step on prescribed
coefficients, the invariances the procedure must have (Galilean, scale, mirror,
x <-> y exchange, time reversal), a flow at rest, the test filter's transfer function
and conservation, and a coupled warm-bubble run with its output diagnostics."""

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xlex
from xlex.core import constants
from xlex.core.dynamics import pressure
from xlex.core.dynamics.numerics import PressureSolver
from xlex.core.errors import OptionError
from xlex.core.grid import Grid
from xlex.core.initial import moist_base_state, warm_bubble_state
from xlex.core.model import Physics, make_diagnostics, make_step, parameters
from xlex.core.physics import dynamic_smagorinsky as dyn
from xlex.core.physics import smagorinsky as sm
from xlex.core.physics.dynamic_smagorinsky import DynamicSmagorinsky
from xlex.core.physics.smagorinsky import Smagorinsky
from xlex.core.state import BaseState, State
from xlex.io.convert import dataset_to_inputs
from xlex.options import recorded_physics, resolve_physics

PR = 1.0 / 3.0
# three different spacings and three different sizes, so that no axis can stand in for another
GRID = Grid(nx=12, ny=10, nz=8, dx=100.0, dy=80.0, dz=50.0)
PAIRS = [(i, j) for i in range(3) for j in range(i, 3)]
#: mirror parity of u, v, w at the walls (w changes sign)
PARITY = np.array([1.0, 1.0, -1.0])


# --------------------------------------------------------------------------- fields


def fourier_field(grid, rng, *, n_modes, amplitude, x="centre", y="centre", z="centre",
                  odd=False):
    """A few random Fourier modes with a k^-5/3-like fall-off, sampled on the given
    staggered locations: periodic in x and y, cos(pi m z / Lz) in z, or sin(...) where
    ``odd`` (zero on the walls, as w)."""
    lz, ly, lx = grid.lengths
    xs = grid.faces("x") if x == "face" else grid.centres("x")
    ys = grid.faces("y") if y == "face" else grid.centres("y")
    zs = grid.faces("z") if z == "face" else grid.centres("z")
    out = np.zeros((zs.size, ys.size, xs.size))
    for _ in range(n_modes):
        kx, ky = rng.integers(0, 4, size=2)
        m = rng.integers(1 if odd else 0, 4)
        amp = amplitude * rng.choice([-1.0, 1.0]) * (1.0 + kx * kx + ky * ky + m * m) ** (-5 / 6)
        phase = rng.uniform(0.0, 2.0 * np.pi)
        profile = np.sin(np.pi * m * zs / lz) if odd else np.cos(np.pi * m * zs / lz)
        out += amp * profile[:, None, None] * np.cos(
            2.0 * np.pi * (kx * xs[None, None, :] / lx + ky * ys[None, :, None] / ly) + phase)
    return out


def smooth_state(grid, seed=0, *, speed=10.0, lapse=0.011):
    """Smooth random u, v, w (w = 0 on the walls), stably stratified th with random
    perturbations, and moist qv. The velocity scale and the lapse rate are strong enough
    that |S|^2 and N^2 / Pr are comparable (the stability term matters) and that N^2, a
    difference of th ~ 300 K between levels, keeps ~1e-13 relative round-off: with
    0.05 K between levels it would be ~1e-12, amplified further by sqrt near 0."""
    rng = np.random.default_rng(seed)
    u = fourier_field(grid, rng, n_modes=8, amplitude=speed, x="face")
    v = fourier_field(grid, rng, n_modes=8, amplitude=speed, y="face")
    w = fourier_field(grid, rng, n_modes=8, amplitude=0.5 * speed, z="face", odd=True)
    w[0] = w[-1] = 0.0
    z = grid.centres("z")[:, None, None]
    th = 300.0 + lapse * z + fourier_field(grid, rng, n_modes=6, amplitude=50.0 * lapse)
    qv = 6e-3 + fourier_field(grid, rng, n_modes=6, amplitude=1e-3)
    return State(u=jnp.asarray(u), v=jnp.asarray(v), w=jnp.asarray(w), th=jnp.asarray(th),
                 qv=jnp.asarray(qv), pi=jnp.zeros(grid.shape))


def replace(state, **fields):
    return dataclasses.replace(state, **{k: jnp.asarray(v) for k, v in fields.items()})


# --------------------------------------------------------------------------- NumPy reference
#
# Every stencil is an explicit matrix acting along one axis: periodic (circulant) in x
# and y; in z the ghost level beyond each wall is the mirror image of the first level,
# times the parity (+1 for u, v, scalars; -1 for w; the product's for u_i u_j).


def along(matrix, a, axis):
    """``matrix`` applied to ``a`` along ``axis``."""
    return np.moveaxis(np.tensordot(matrix, a, axes=(1, axis)), 0, axis)


def periodic_matrix(n, stencil):
    """out[i] = sum_o stencil[o] a[(i + o) mod n]."""
    m = np.zeros((n, n))
    for offset, weight in stencil.items():
        for i in range(n):
            m[i, (i + offset) % n] += weight
    return m


def wall_matrix(n, stencil, parity):
    """out[k] = sum_o stencil[o] a[k + o], with a[-1] = parity a[0], a[n] = parity a[n-1]."""
    m = np.zeros((n, n))
    for offset, weight in stencil.items():
        for k in range(n):
            j = k + offset
            if j < 0:
                m[k, -1 - j] += parity * weight
            elif j >= n:
                m[k, 2 * n - 1 - j] += parity * weight
            else:
                m[k, j] += weight
    return m


TRAPEZOID = {-1: 0.25, 0: 0.5, 1: 0.25}


def ref_filter(a, parity=1.0):
    nz, ny, nx = a.shape
    a = along(periodic_matrix(nx, TRAPEZOID), a, 2)
    a = along(periodic_matrix(ny, TRAPEZOID), a, 1)
    return along(wall_matrix(nz, TRAPEZOID, parity), a, 0)


def ref_centred_velocity(u, v, w):
    nz, ny, nx = u.shape
    uc = along(periodic_matrix(nx, {0: 0.5, 1: 0.5}), u, 2)
    vc = along(periodic_matrix(ny, {0: 0.5, 1: 0.5}), v, 1)
    iz = np.zeros((nz, nz + 1))
    iz[np.arange(nz), np.arange(nz)] = 0.5
    iz[np.arange(nz), np.arange(nz) + 1] = 0.5
    return np.stack([uc, vc, along(iz, w, 0)])


def ref_strain(vel, grid):
    """S[i, j] (3, 3, nz, ny, nx) of centred velocities ``vel`` (3, nz, ny, nx)."""
    nz, ny, nx = vel.shape[1:]
    dx = periodic_matrix(nx, {-1: -0.5 / grid.dx, 1: 0.5 / grid.dx})
    dy = periodic_matrix(ny, {-1: -0.5 / grid.dy, 1: 0.5 / grid.dy})
    grad = np.empty((3, 3) + vel.shape[1:])  # grad[i, j] = d u_i / d x_j
    for i in range(3):
        dz = wall_matrix(nz, {-1: -0.5 / grid.dz, 1: 0.5 / grid.dz}, PARITY[i])
        grad[i, 0] = along(dx, vel[i], 2)
        grad[i, 1] = along(dy, vel[i], 1)
        grad[i, 2] = along(dz, vel[i], 0)
    return 0.5 * (grad + grad.transpose(1, 0, 2, 3, 4))


def ref_n2(th, qv, grid):
    thrho = th * (1.0 + constants.VIRTUAL * qv)
    return constants.GRAVITY * np.gradient(thrho, grid.dz, axis=0, edge_order=1) / thrho


def ref_magnitude(s, n2=None, prandtl=PR):
    s2 = 2.0 * np.sum(s * s, axis=(0, 1))
    if n2 is not None:
        s2 = s2 - n2 / prandtl
    return np.sqrt(np.maximum(s2, 0.0))


def deviatoric(t):
    return t - np.eye(3)[:, :, None, None, None] * np.trace(t)[None, None] / 3.0


def ref_dynamic(state, grid, *, stability, prandtl=PR):
    """L_ij, M_ij (deviatoric, (3, 3, nz, ny, nx)), <L:M>, <M:M> and C(z) (nz,)."""
    u, v, w, th, qv = (np.asarray(getattr(state, n)) for n in ("u", "v", "w", "th", "qv"))
    vel = ref_centred_velocity(u, v, w)
    hat = np.stack([ref_filter(vel[i], PARITY[i]) for i in range(3)])
    pp = PARITY[:, None] * PARITY[None, :]
    leonard = np.empty((3, 3) + vel.shape[1:])
    for i in range(3):
        for j in range(3):
            leonard[i, j] = ref_filter(vel[i] * vel[j], pp[i, j]) - hat[i] * hat[j]
    s, s_hat = ref_strain(vel, grid), ref_strain(hat, grid)
    n2 = ref_n2(th, qv, grid) if stability else None
    n2_hat = ref_n2(ref_filter(th), ref_filter(qv), grid) if stability else None
    mag, mag_hat = ref_magnitude(s, n2, prandtl), ref_magnitude(s_hat, n2_hat, prandtl)
    delta2 = (grid.dx * grid.dy * grid.dz) ** (2.0 / 3.0)
    m = np.empty_like(leonard)
    for i in range(3):
        for j in range(3):
            m[i, j] = 2.0 * delta2 * (ref_filter(mag * s[i, j], pp[i, j])
                                      - 4.0 * mag_hat * s_hat[i, j])
    leonard, m = deviatoric(leonard), deviatoric(m)
    lm = np.mean(np.sum(leonard * m, axis=(0, 1)), axis=(1, 2))
    mm = np.mean(np.sum(m * m, axis=(0, 1)), axis=(1, 2))
    return {"L": leonard, "M": m, "lm": lm, "mm": mm, "C": np.maximum(lm / mm, 0.0),
            "mag": mag}


def coefficient(state, grid=GRID, **options):
    """xlex's C(z) as a (nz,) numpy array."""
    c = np.asarray(dyn.dynamic_coefficient(state, grid, **options))
    assert c.shape == (grid.nz, 1, 1)
    return c[:, 0, 0]


def plane_ratio(state, grid=GRID, **options):
    """<L:M> / <M:M> per level from xlex's Germano tensors, before the clipping."""
    lij, mij = dyn.germano_tensors(state, grid, **options)
    w = {(i, j): 1.0 if i == j else 2.0 for (i, j) in PAIRS}
    lm = sum(w[k] * np.asarray(lij[k]) * np.asarray(mij[k]) for k in PAIRS)
    mm = sum(w[k] * np.asarray(mij[k]) ** 2 for k in PAIRS)
    return lm.mean(axis=(1, 2)) / mm.mean(axis=(1, 2))


def cascade_state(grid=GRID):
    """A smooth field whose plane-averaged Germano contraction <L:M> is positive on every
    level without the stability term (the resolved scales hand energy down), so that
    C(z) > 0 there and the invariance tests compare non-zero coefficients."""
    s = smooth_state(grid, seed=7)
    return replace(s, u=-s.u, v=-s.v, w=-s.w)


# --------------------------------------------------------------------------- 1. reference

REFERENCE_SEED = 5  # C(z) > 0 on some levels and clipped to 0 on others, with and without N^2


@pytest.mark.parametrize("stability", [False, True])
def test_germano_tensors_and_coefficient_match_numpy_reference(stability):
    state = smooth_state(GRID, REFERENCE_SEED)
    ref = ref_dynamic(state, GRID, stability=stability)
    lij, mij = dyn.germano_tensors(state, GRID, prandtl=PR, stability=stability)
    assert sorted(lij) == sorted(mij) == PAIRS
    for k in PAIRS:
        for name, got, want in (("L", lij[k], ref["L"][k]), ("M", mij[k], ref["M"][k])):
            got = np.asarray(got)
            assert got.shape == GRID.shape, (name, k)
            scale = np.max(np.abs(ref[name]))
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * scale,
                                       err_msg=f"{name}{k}")
    # both deviatoric
    for name, t in (("L", lij), ("M", mij)):
        np.testing.assert_allclose(np.asarray(t[(0, 0)] + t[(1, 1)] + t[(2, 2)]), 0.0,
                                   atol=1e-13 * np.max(np.abs(ref[name])))

    c = coefficient(state, prandtl=PR, stability=stability)
    ratio = ref["lm"] / ref["mm"]
    # the field exercises both branches of the clipping
    assert np.sum(ratio > 1e-3) >= 2 and np.sum(ratio < -1e-3) >= 2, ratio
    np.testing.assert_allclose(c, ref["C"], rtol=1e-12, atol=0)
    assert np.all(c[ratio < 0] == 0.0)
    np.testing.assert_allclose(plane_ratio(state, prandtl=PR, stability=stability), ratio,
                               rtol=1e-12)


def test_stability_term_acts_on_the_reference_field():
    """The stable stratification of the reference field switches |S|_N off at some
    points, not everywhere, and changes C(z): the stability=True comparison above is not
    a repeat of the neutral one."""
    state = smooth_state(GRID, REFERENCE_SEED)
    ref = ref_dynamic(state, GRID, stability=True)
    off = ref_dynamic(state, GRID, stability=False)
    clipped = np.mean(ref["mag"] == 0.0)
    assert 0.05 < clipped < 0.5, clipped
    assert np.max(np.abs(ref["C"] - off["C"])) > 0.1 * np.max(off["C"])
    n2 = np.asarray(sm.brunt_vaisala_squared(state.th, state.qv, GRID))
    np.testing.assert_allclose(n2, ref_n2(np.asarray(state.th), np.asarray(state.qv), GRID),
                               rtol=0, atol=1e-13 * np.max(np.abs(n2)))
    # a different Prandtl number moves the coefficient, as the reference says
    c = coefficient(state, prandtl=0.7, stability=True)
    np.testing.assert_allclose(c, ref_dynamic(state, GRID, stability=True, prandtl=0.7)["C"],
                               rtol=1e-12, atol=0)
    assert np.max(np.abs(c - ref["C"])) > 1e-3 * np.max(ref["C"])


def test_centred_velocity_and_strain_match_reference():
    state = smooth_state(GRID, 1)
    vel = ref_centred_velocity(*(np.asarray(getattr(state, n)) for n in ("u", "v", "w")))
    got = dyn.centred_velocity(state.u, state.v, state.w)
    for i in range(3):
        np.testing.assert_allclose(np.asarray(got[i]), vel[i], rtol=0,
                                   atol=1e-15 * np.max(np.abs(vel)))
    s = dyn.centred_strain(*got, GRID)
    ref = ref_strain(vel, GRID)
    for (i, j) in PAIRS:
        np.testing.assert_allclose(np.asarray(s[(i, j)]), ref[i, j], rtol=0,
                                   atol=1e-13 * np.max(np.abs(ref)))


def test_batched_state_matches_single_states():
    """A leading ensemble axis is carried through (the driver vmaps, a user may not)."""
    states = [smooth_state(GRID, seed) for seed in (2, REFERENCE_SEED)]
    batch = jax.tree.map(lambda *a: jnp.stack(a), *states)
    c = np.asarray(dyn.dynamic_coefficient(batch, GRID))
    assert c.shape == (2, GRID.nz, 1, 1)
    for b, s in enumerate(states):
        np.testing.assert_allclose(c[b, :, 0, 0], coefficient(s), rtol=1e-13, atol=0)
    k = dyn.dynamic_smagorinsky_viscosity(batch, GRID)
    np.testing.assert_allclose(np.asarray(k.km[1]),
                               np.asarray(dyn.dynamic_smagorinsky_viscosity(states[1], GRID).km),
                               rtol=1e-13, atol=0)


# --------------------------------------------------------------------------- 2. least squares


def random_symmetric(rng, shape):
    a = rng.normal(size=(3, 3) + shape)
    return 0.5 * (a + a.transpose(1, 0, 2, 3, 4))


def as_pairs(t):
    return {(i, j): jnp.asarray(t[i, j]) for (i, j) in PAIRS}


def orthogonal_part(r, m):
    """r minus its projection on m, plane by plane, in the full contraction <r:m>."""
    rm = np.mean(np.sum(r * m, axis=(0, 1)), axis=(1, 2), keepdims=True)
    mm = np.mean(np.sum(m * m, axis=(0, 1)), axis=(1, 2), keepdims=True)
    return r - (rm / mm)[None, None] * m


@pytest.mark.parametrize("cs", [0.17, 0.1])
def test_least_squares_recovers_a_prescribed_coefficient(cs):
    """L = cs^2 M + R with R orthogonal to M on every plane: C(z) = cs^2 per level, although
    R is as large as cs^2 M and varies from level to level."""
    rng = np.random.default_rng(11)
    shape = GRID.shape
    m = random_symmetric(rng, shape) * rng.uniform(0.5, 2.0, size=(GRID.nz, 1, 1))
    r = orthogonal_part(random_symmetric(rng, shape), m)
    assert np.max(np.abs(np.mean(np.sum(r * m, axis=(0, 1)), axis=(1, 2)))) < 1e-14
    lij = cs ** 2 * m + 5.0 * cs ** 2 * r
    c = np.asarray(dyn.least_squares_coefficient(as_pairs(lij), as_pairs(m)))
    assert c.shape == (GRID.nz, 1, 1)
    np.testing.assert_allclose(c[:, 0, 0], cs ** 2, rtol=1e-12, atol=0)
    # and a level-dependent coefficient, level by level
    profile = cs ** 2 * (1.0 + np.arange(GRID.nz))[:, None, None]
    c = np.asarray(dyn.least_squares_coefficient(as_pairs(profile * m + r), as_pairs(m)))
    np.testing.assert_allclose(c, profile, rtol=1e-12, atol=0)


def test_least_squares_clips_negative_coefficients_and_empty_planes():
    rng = np.random.default_rng(12)
    m = random_symmetric(rng, GRID.shape)
    r = orthogonal_part(random_symmetric(rng, GRID.shape), m)
    sign = np.where(np.arange(GRID.nz) % 2 == 0, 1.0, -1.0)[:, None, None]
    c = np.asarray(dyn.least_squares_coefficient(as_pairs(sign * 0.03 * m + r), as_pairs(m)))
    np.testing.assert_allclose(c[0::2, 0, 0], 0.03, rtol=1e-12, atol=0)
    assert np.all(c[1::2] == 0.0)
    # where M vanishes on a whole plane (a flow at rest there) C is 0, not NaN
    m[:, :, 2] = 0.0
    c = np.asarray(dyn.least_squares_coefficient(as_pairs(0.03 * m + r), as_pairs(m)))
    assert np.all(np.isfinite(c)) and c[2, 0, 0] == 0.0
    np.testing.assert_allclose(np.delete(c[:, 0, 0], 2), 0.03, rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- 3. invariances


def mirror_x(s):
    """x -> Lx - x: u[i] (at x = i dx) comes from face nx - i and changes sign; the centred
    fields' column i comes from column nx - 1 - i."""
    def flip(a):
        return a[..., ::-1]
    return replace(s, u=-jnp.roll(flip(s.u), 1, axis=-1), v=flip(s.v), w=flip(s.w),
                   th=flip(s.th), qv=flip(s.qv))


def mirror_y(s):
    def flip(a):
        return a[..., ::-1, :]
    return replace(s, u=flip(s.u), v=-jnp.roll(flip(s.v), 1, axis=-2), w=flip(s.w),
                   th=flip(s.th), qv=flip(s.qv))


def test_cascade_field_has_positive_coefficients():
    """The premise of the invariance tests below: C(z) > 0 on every level without the
    stability term, on most with it."""
    for stability in (False, True):
        ratio = ref_dynamic(cascade_state(), GRID, stability=stability)["lm"]
        if not stability:
            assert np.all(ratio > 0), ratio
        else:
            assert np.sum(ratio > 0) >= GRID.nz // 2, ratio
    c = coefficient(cascade_state(), stability=False)
    assert np.all(c > 1e-4), c


@pytest.mark.parametrize("stability", [False, True])
def test_galilean_invariance(stability):
    """A uniform (u0, v0) added to the flow changes neither L (the Leonard stress of a
    sum with a constant) nor M (strains): C(z) to round-off."""
    s = cascade_state()
    moved = replace(s, u=s.u + 5.3, v=s.v - 2.1)
    c = coefficient(s, stability=stability)
    assert np.max(c) > 1e-3
    np.testing.assert_allclose(coefficient(moved, stability=stability), c, rtol=1e-12, atol=0)


def test_scale_invariance():
    """L and M are both quadratic in the velocity: C(lambda u) = C(u) (without the
    stability term, which has its own velocity scale)."""
    s = cascade_state()
    lam = 3.7
    scaled = replace(s, u=lam * s.u, v=lam * s.v, w=lam * s.w)
    c = coefficient(s, stability=False)
    np.testing.assert_allclose(coefficient(scaled, stability=False), c, rtol=1e-12, atol=0)
    # and the viscosity then scales as the strain, lambda^1
    km = np.asarray(dyn.dynamic_smagorinsky_viscosity(s, GRID, stability=False).km)
    km_scaled = np.asarray(dyn.dynamic_smagorinsky_viscosity(scaled, GRID, stability=False).km)
    np.testing.assert_allclose(km_scaled, lam * km, rtol=1e-12, atol=1e-14 * np.max(km))


@pytest.mark.parametrize("stability", [False, True])
@pytest.mark.parametrize("mirror", [mirror_x, mirror_y], ids=["x", "y"])
def test_mirror_symmetry(mirror, stability):
    """Reflecting the flow in a horizontal direction flips the sign of L_xy, L_xz and of
    M_xy, M_xz alike: C(z) unchanged."""
    s = cascade_state()
    flipped = mirror(s)
    # the reflection is right: the mirrored flow's centred velocity is the reflected one,
    # with its normal component negated
    axis, normal = (-1, 0) if mirror is mirror_x else (-2, 1)
    before = dyn.centred_velocity(s.u, s.v, s.w)
    after = dyn.centred_velocity(flipped.u, flipped.v, flipped.w)
    for i in range(3):
        sign = -1.0 if i == normal else 1.0
        np.testing.assert_array_equal(np.asarray(after[i]),
                                      sign * np.flip(np.asarray(before[i]), axis))
    c = coefficient(s, stability=stability)
    assert np.max(c) > 1e-3
    np.testing.assert_allclose(coefficient(flipped, stability=stability), c, rtol=1e-12, atol=0)
    assert np.max(np.abs(np.asarray(flipped.u - s.u))) > 0.1


def test_vertical_mirror_reverses_the_profile():
    """z -> Lz - z with w -> -w (the walls map onto each other): C(z) read upside down
    (stability off: turning th upside down would make the stratification unstable)."""
    s = cascade_state()
    flipped = replace(s, u=s.u[::-1], v=s.v[::-1], w=-s.w[::-1], th=s.th[::-1], qv=s.qv[::-1])
    c = coefficient(s, stability=False)
    assert np.ptp(c) > 1e-3
    np.testing.assert_allclose(coefficient(flipped, stability=False), c[::-1], rtol=1e-12,
                               atol=0)


@pytest.mark.parametrize("stability", [False, True])
def test_exchange_of_x_and_y(stability):
    """Transposing x and y (with u <-> v, on a grid with nx <-> ny and dx <-> dy): the
    contraction over all tensor components makes C(z) the same."""
    s = cascade_state()
    swapped_grid = Grid(nx=GRID.ny, ny=GRID.nx, nz=GRID.nz, dx=GRID.dy, dy=GRID.dx,
                        dz=GRID.dz)

    def t(a):
        return jnp.swapaxes(a, -1, -2)
    swapped = replace(s, u=t(s.v), v=t(s.u), w=t(s.w), th=t(s.th), qv=t(s.qv))
    c = coefficient(s, stability=stability)
    np.testing.assert_allclose(coefficient(swapped, swapped_grid, stability=stability), c,
                               rtol=1e-12, atol=0)


@pytest.mark.parametrize("stability", [False, True])
def test_time_reversal_flips_the_sign_of_the_fit(stability):
    """u -> -u leaves L (quadratic) and |S|_N unchanged but flips M = 2 Delta^2 (^(|S|S) -
    4 |^S| ^S): the fitted coefficient changes sign, so backscatter and forward scatter
    are told apart, and at most one of C(u), C(-u) is non-zero on each level."""
    s = cascade_state()
    back = replace(s, u=-s.u, v=-s.v, w=-s.w)
    l1, m1 = dyn.germano_tensors(s, GRID, stability=stability)
    l2, m2 = dyn.germano_tensors(back, GRID, stability=stability)
    for k in PAIRS:
        scale = float(jnp.max(jnp.abs(m1[k]))) + float(jnp.max(jnp.abs(l1[k])))
        np.testing.assert_allclose(np.asarray(l2[k]), np.asarray(l1[k]), atol=1e-14 * scale)
        np.testing.assert_allclose(np.asarray(m2[k]), -np.asarray(m1[k]), atol=1e-14 * scale)
    np.testing.assert_allclose(plane_ratio(back, stability=stability),
                               -plane_ratio(s, stability=stability), rtol=1e-12)
    c1, c2 = coefficient(s, stability=stability), coefficient(back, stability=stability)
    assert np.all(c1 * c2 == 0.0) and np.max(c1) > 1e-3


# --------------------------------------------------------------------------- 4. rest


def bubble_at_rest(grid=GRID):
    """The warm bubble at rest: no motion, but th and qv vary in all three directions.
    The base state (constant th and relative humidity) is slightly unstable, N^2 < 0, and
    the bubble's upper half more so: with the stability term |S|_N > 0 at rest."""
    base = moist_base_state(grid)
    lz, ly, lx = grid.lengths
    return warm_bubble_state(grid, base, 3.0, x_centre=0.4 * lx, y_centre=0.5 * ly,
                             z_centre=0.3 * lz, x_radius=0.3 * lx, y_radius=0.3 * ly,
                             z_radius=0.3 * lz)


def compile_fast(f, *args):
    """``jax.jit(f)`` compiled without XLA's fusion pass: on XLA:CPU (2 cores) the two
    gradients below take ~25 s to compile with it, whatever the grid size, and ~3.5 s
    without. Fusion changes the speed, not which values are NaN."""
    lowered = jax.jit(f).lower(*args)
    try:
        return lowered.compile(compiler_options={"xla_disable_hlo_passes": "fusion"})
    except Exception:  # an XLA without the option: the ordinary, slower compile
        return lowered.compile()


@pytest.mark.parametrize("stability", [False, True])
def test_flow_at_rest_has_zero_coefficient(stability):
    state = bubble_at_rest()
    # the stability term alone would give a viscosity here: the dynamic one must not
    unit = sm.smagorinsky_viscosity(state, GRID, cs=1.0, stability=stability)
    assert (float(jnp.max(unit.km)) > 0) == stability
    c = coefficient(state, stability=stability)
    assert np.all(np.isfinite(c)) and np.all(c == 0.0)
    k = dyn.dynamic_smagorinsky_viscosity(state, GRID, stability=stability)
    assert np.all(np.asarray(k.km) == 0.0) and np.all(np.asarray(k.kh) == 0.0)


def test_gradient_at_rest_is_finite():
    """jax.grad of sum(K_m) at rest, where M = 0 on every plane and |S| = 0 everywhere
    (without the stability term) or |S|_N = 0 in the stable part (with it): finite, with
    and without the stability term."""
    state = bubble_at_rest()

    def total(stability):
        return lambda s: jnp.sum(dyn.dynamic_smagorinsky_viscosity(s, GRID,
                                                                   stability=stability).km)

    def grads(s):
        return jax.grad(total(False))(s), jax.grad(total(True))(s)

    for stability, grad in zip((False, True), compile_fast(grads, state)(state), strict=True):
        for name in ("u", "v", "w", "th", "qv", "pi"):
            g = np.asarray(getattr(grad, name))
            assert g.shape == getattr(state, name).shape
            assert np.all(np.isfinite(g)), (stability, name)


def test_uniform_flow_has_zero_coefficient():
    """A uniform wind has no strain, so M = 0 on every plane: C = 0 (not NaN)."""
    state = replace(bubble_at_rest(), u=jnp.full(GRID.shape, 7.3),
                    v=jnp.full(GRID.shape, -2.9))
    for stability in (False, True):
        c = coefficient(state, stability=stability)
        assert np.all(c == 0.0)
        km = np.asarray(dyn.dynamic_smagorinsky_viscosity(state, GRID, stability=stability).km)
        assert np.all(km == 0.0)


def test_gradient_of_a_moving_flow_matches_finite_differences():
    """d/d eps sum(km(u + eps du)) by jvp agrees with a centred difference: the
    procedure is differentiable where C > 0 (for learning through the model)."""
    s = cascade_state()
    rng = np.random.default_rng(3)
    direction = replace(jax.tree.map(jnp.zeros_like, s),
                        u=rng.normal(size=GRID.shape), v=rng.normal(size=GRID.shape))

    def total(state):
        return jnp.sum(dyn.dynamic_smagorinsky_viscosity(state, GRID, stability=False).km)

    _, slope = jax.jvp(total, (s,), (direction,))
    eps = 1e-5
    plus = total(jax.tree.map(lambda a, d: a + eps * d, s, direction))
    minus = total(jax.tree.map(lambda a, d: a - eps * d, s, direction))
    fd = float(plus - minus) / (2 * eps)
    assert abs(float(slope)) > 0
    np.testing.assert_allclose(float(slope), fd, rtol=1e-8)  # measured 4e-11


# --------------------------------------------------------------------------- 5. test filter


def test_filter_preserves_constants_and_linear_profiles():
    const = jnp.full(GRID.shape, 301.25)
    np.testing.assert_allclose(np.asarray(dyn.trapezoidal_filter(const)), 301.25, rtol=1e-15)
    z = GRID.centres("z")[:, None, None] + np.zeros(GRID.shape)
    lin = jnp.asarray(2.0 + 0.03 * z)
    got = np.asarray(dyn.trapezoidal_filter(lin))
    np.testing.assert_allclose(got[1:-1], np.asarray(lin)[1:-1], rtol=1e-14)
    # at the walls the mirror (zero gradient) pulls the level towards its neighbour
    np.testing.assert_allclose(got[0], np.asarray(lin)[0] + 0.25 * 0.03 * GRID.dz, rtol=1e-14)
    np.testing.assert_allclose(got[-1], np.asarray(lin)[-1] - 0.25 * 0.03 * GRID.dz,
                               rtol=1e-14)
    # an odd (w-like) constant is pulled towards zero at the walls only
    odd = np.asarray(dyn.trapezoidal_filter(const, -1.0))
    np.testing.assert_allclose(odd[1:-1], 301.25, rtol=1e-15)
    np.testing.assert_allclose(odd[[0, -1]], 0.5 * 301.25, rtol=1e-15)


def test_filter_conserves_horizontal_means():
    """The periodic horizontal part conserves each plane's mean; the plane means are then
    filtered in z only (and their even-mirrored sum, the domain mean, is conserved)."""
    rng = np.random.default_rng(4)
    a = rng.normal(size=GRID.shape) + 3.0
    for parity in (1.0, -1.0):
        got = np.asarray(dyn.trapezoidal_filter(jnp.asarray(a), parity))
        means = a.mean(axis=(1, 2))
        expected = wall_matrix(GRID.nz, TRAPEZOID, parity) @ means
        np.testing.assert_allclose(got.mean(axis=(1, 2)), expected, rtol=1e-14)
        np.testing.assert_allclose(got, ref_filter(a, parity), rtol=1e-14)
    got = np.asarray(dyn.trapezoidal_filter(jnp.asarray(a)))
    np.testing.assert_allclose(got.mean(), a.mean(), rtol=1e-14)
    # a field with no plane mean keeps none
    b = a - a.mean(axis=(1, 2), keepdims=True)
    means = np.asarray(dyn.trapezoidal_filter(jnp.asarray(b))).mean(axis=(1, 2))
    assert np.max(np.abs(means)) < 1e-15


# (6, 0, 0) and (2, 5, 7) include the grid-scale waves of x and y (gain 0)
@pytest.mark.parametrize("kx, ky, m", [(1, 0, 0), (0, 2, 1), (3, 1, 2), (6, 0, 0), (2, 5, 7)])
def test_filter_transfer_function(kx, ky, m):
    """Fourier modes are eigenfunctions with eigenvalue cos^2(k d / 2) per direction,
    including next to the walls (cos modes for the even mirror, sin modes for the odd
    one): a filter of width 2 Delta that removes the grid-scale (2 dx) wave."""
    lz, ly, lx = GRID.lengths
    x = GRID.centres("x")[None, None, :]
    y = GRID.centres("y")[None, :, None]
    z = GRID.centres("z")[:, None, None]
    horizontal = np.cos(2 * np.pi * (kx * x / lx + ky * y / ly) + 0.3)
    gain = (np.cos(np.pi * kx / GRID.nx) ** 2 * np.cos(np.pi * ky / GRID.ny) ** 2
            * np.cos(np.pi * m / (2 * GRID.nz)) ** 2)
    for parity, profile in ((1.0, np.cos(np.pi * m * z / lz)), (-1.0, np.sin(np.pi * m * z / lz))):
        a = horizontal * profile + np.zeros(GRID.shape)
        got = np.asarray(dyn.trapezoidal_filter(jnp.asarray(a), parity))
        np.testing.assert_allclose(got, gain * a, rtol=0, atol=1e-14)


# --------------------------------------------------------------------------- viscosity, options


@pytest.mark.parametrize("stability", [False, True])
def test_viscosity_is_coefficient_times_smagorinsky_strain(stability):
    """K_m = C(z) Delta^2 |S|_N with the C-grid |S|_N of the Smagorinsky model, i.e. the
    Smagorinsky viscosity with cs = sqrt(C(z)) level by level; K_h = K_m / Pr."""
    s = smooth_state(GRID, REFERENCE_SEED)
    k = dyn.dynamic_smagorinsky_viscosity(s, GRID, prandtl=0.5, stability=stability)
    c = coefficient(s, prandtl=0.5, stability=stability)
    km = np.asarray(k.km)
    assert km.shape == GRID.shape and np.all(km >= 0.0)
    assert np.any(c > 0) and np.any(c == 0)
    for level in range(GRID.nz):
        smag = sm.smagorinsky_viscosity(s, GRID, cs=float(np.sqrt(c[level])), prandtl=0.5,
                                        stability=stability)
        np.testing.assert_allclose(km[level], np.asarray(smag.km)[level], rtol=1e-12,
                                   atol=1e-300)
    np.testing.assert_allclose(np.asarray(k.kh), km / 0.5, rtol=1e-15)
    assert np.all(km[c == 0.0] == 0.0) and np.max(km) > 0


def test_model_dispatch_and_diagnostics_use_the_configured_options():
    """DynamicSmagorinsky in the model (the eddy coefficients its prepare gives the step
    and the output diagnostics) is the dynamic viscosity with the scheme's prandtl and
    stability."""
    s = smooth_state(GRID, REFERENCE_SEED)
    base = moist_base_state(GRID)
    physics = Physics(sgs=DynamicSmagorinsky(prandtl=0.5, stability=False))
    params = parameters(physics)
    k = params.sgs.prepare(s, base, GRID)
    want = dyn.dynamic_smagorinsky_viscosity(s, GRID, prandtl=0.5, stability=False)
    np.testing.assert_array_equal(np.asarray(k.km), np.asarray(want.km))
    np.testing.assert_array_equal(np.asarray(k.kh), np.asarray(want.kh))
    assert sorted(physics.outputs) == ["cs2", "kh", "km"]
    out = make_diagnostics(GRID, physics)(s, base, params)
    assert sorted(out) == ["cs2", "kh", "km"]
    assert out["cs2"].shape == (GRID.nz,)
    np.testing.assert_allclose(np.asarray(out["cs2"]), coefficient(s, prandtl=0.5,
                                                                    stability=False),
                               rtol=1e-15, atol=0)
    # cs is not a parameter of the dynamic model: it has no such field, and the
    # shorthand refuses it
    assert "cs" not in {f.name for f in dataclasses.fields(DynamicSmagorinsky)}
    with pytest.raises(OptionError, match="cs is not an option of DynamicSmagorinsky"):
        resolve_physics(sgs="dynamic", shorthand=dict(cs=0.05))
    # the prescribed-constant scheme has no cs2 diagnostic
    smag = Physics(sgs=Smagorinsky(prandtl=0.5, stability=False))
    plain = make_diagnostics(GRID, smag)(s, base, parameters(smag))
    assert sorted(plain) == ["kh", "km"] and sorted(smag.outputs) == ["kh", "km"]


# --------------------------------------------------------------------------- 6. coupled run

BUBBLE_TOL = 1e-10
BUBBLE_ITERATIONS = 500
BUBBLE_STEPS = 20
BUBBLE_DT = 10.0


def bubble_case():
    """A 20 x 20 x 10 warm bubble (600 m x 600 m x 500 m cells), slightly off-centre."""
    return xlex.cases.warm_bubble(theta_c=5.0, dx=600.0, dz=500.0, x_length=12000.0,
                                  y_length=12000.0, z_length=5000.0, x_centre=5700.0,
                                  y_centre=6300.0)


@pytest.fixture(scope="module")
def dynamic_step_run():
    """20 steps of make_step with Physics(sgs=DynamicSmagorinsky()) in float64, with the
    scalar integrals, the mass divergence and the pressure iterations after every step
    and the coefficient C(z) and the extremes of K_m of the state each step starts from."""
    inputs = dataset_to_inputs(bubble_case())
    grid = inputs.grid
    assert grid.shape == (10, 20, 20)
    base = BaseState(**{k: jnp.asarray(v) for k, v in inputs.base.items()})
    start = State(**{k: jnp.asarray(v) for k, v in inputs.state.items()})
    physics = Physics(sgs=DynamicSmagorinsky(),
                      pressure=PressureSolver(tolerance=BUBBLE_TOL,
                                              max_iterations=BUBBLE_ITERATIONS))
    sgs = physics.sgs
    step = make_step(grid, physics, BUBBLE_DT)
    params = parameters(physics)
    mass, mass_faces = base.mass, base.mass_faces
    mc, mf = mass[:, None, None], mass_faces[:, None, None]

    def body(before, _):
        c = dyn.dynamic_coefficient(before, grid, prandtl=sgs.prandtl, stability=sgs.stability)
        km = dyn.dynamic_smagorinsky_viscosity(before, grid, prandtl=sgs.prandtl,
                                               stability=sgs.stability).km
        state, info = step(before, base, params)
        its = info["pressure_iterations"]
        div = pressure.mass_divergence(state.u, state.v, state.w, mass, mass_faces, grid)
        flux = jnp.max(jnp.stack([jnp.max(jnp.abs(mc * state.u)) / grid.dx,
                                  jnp.max(jnp.abs(mc * state.v)) / grid.dy,
                                  jnp.max(jnp.abs(mf * state.w)) / grid.dz]))
        return state, {"th": jnp.sum(mc * state.th), "qv": jnp.sum(mc * state.qv),
                       "div": jnp.max(jnp.abs(div)), "flux": flux, "its": its,
                       "c": c[:, 0, 0], "km_min": jnp.min(km), "km_max": jnp.max(km)}

    final, history = jax.jit(lambda s: jax.lax.scan(body, s, None, length=BUBBLE_STEPS))(start)
    history = {k: np.asarray(v) for k, v in history.items()}
    initial = {"th": float(jnp.sum(mc * start.th)), "qv": float(jnp.sum(mc * start.qv))}
    return grid, base, physics, start, final, initial, history


def test_dynamic_run_is_finite_and_conserves_scalars(dynamic_step_run):
    grid, base, physics, start, final, initial, history = dynamic_step_run
    for name in ("u", "v", "w", "th", "qv", "pi"):
        assert np.all(np.isfinite(np.asarray(getattr(final, name)))), name
    assert float(jnp.max(final.w)) > 1.0  # the bubble rises
    # the subgrid mixing is really active on this flow
    k = dyn.dynamic_smagorinsky_viscosity(final, grid, prandtl=physics.sgs.prandtl,
                                          stability=physics.sgs.stability)
    tend = sm.subgrid_tendency(final, k, base, grid)
    assert float(jnp.max(k.km)) > 10.0
    assert float(jnp.max(jnp.abs(tend.th))) > 1e-4
    np.testing.assert_allclose(history["th"], initial["th"], rtol=1e-10, atol=0)
    np.testing.assert_allclose(history["qv"], initial["qv"], rtol=1e-10, atol=0)
    # and far tighter than that: against the size of the perturbation
    mc = np.asarray(base.mass)[:, None, None]
    th_pert = float(np.sum(mc * np.abs(np.asarray(start.th) - np.asarray(base.th0)[:, None,
                                                                                     None])))
    assert np.max(np.abs(history["th"] - initial["th"])) <= 1e-9 * th_pert


def test_dynamic_run_divergence_at_solver_tolerance(dynamic_step_run):
    *_, history = dynamic_step_run
    assert np.all(history["flux"] > 0)
    assert np.all(history["div"] <= 10 * BUBBLE_TOL * history["flux"]), (
        history["div"] / history["flux"])
    assert np.all(history["its"] > 0) and np.all(history["its"] < BUBBLE_ITERATIONS)


def test_dynamic_run_coefficient_and_viscosity_are_non_negative(dynamic_step_run):
    """C(z) >= 0 and K_m >= 0 at every step; 0 at the start (at rest); C > 0 and K_m > 0
    once the bubble moves."""
    *_, history = dynamic_step_run
    c = history["c"]
    assert c.shape == (BUBBLE_STEPS, 10)
    assert np.all(np.isfinite(c)) and np.all(c >= 0.0)
    assert np.all(history["km_min"] >= 0.0)
    assert np.all(c[0] == 0.0) and history["km_max"][0] == 0.0
    assert np.all(np.max(c[1:], axis=1) > 1e-3)
    assert np.all(history["km_max"][1:] > 1.0)


@pytest.fixture(scope="module")
def dynamic_integrate_run():
    """The same case through integrate(sgs='dynamic'), an output after every step."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = bubble_case().lex.integrate(
            BUBBLE_DT * BUBBLE_STEPS, dt=BUBBLE_DT, output_every=BUBBLE_DT,
            precision="float64", progress=False, sgs="dynamic", tolerance=BUBBLE_TOL,
            max_iterations=BUBBLE_ITERATIONS)
    assert not [w for w in caught if "max_iterations" in str(w.message)]
    return out


def output_state(out, index):
    """The State and base state of output record ``index``, read back through the
    Dataset contract (dataset_to_inputs takes the last record)."""
    inputs = dataset_to_inputs(out.isel(time=[index]))
    state = State(**{k: jnp.asarray(v) for k, v in inputs.state.items()})
    return state, BaseState(**{k: jnp.asarray(v) for k, v in inputs.base.items()}), inputs.grid


def test_integrate_outputs_the_dynamic_diagnostics(dynamic_integrate_run):
    out = dynamic_integrate_run
    assert out.sizes["time"] == BUBBLE_STEPS + 1 and out.attrs["xlex_status"] == "complete"
    assert recorded_physics(out.attrs).sgs == DynamicSmagorinsky()
    for name in ("km", "kh"):
        assert out[name].dims == ("time", "zh", "yh", "xh")
        assert out[name].attrs["units"] == "m2 s-1"
    assert out["cs2"].dims == ("time", "zh")
    assert out["cs2"].attrs["units"] == "1"
    assert "dynamic" in out["cs2"].attrs["long_name"]
    cs2, km, kh = out["cs2"].values, out["km"].values, out["kh"].values
    for name, values in (("cs2", cs2), ("km", km), ("kh", kh)):
        assert np.all(np.isfinite(values)) and np.all(values >= 0.0), name
    assert np.all(cs2[0] == 0.0) and np.all(km[0] == 0.0)
    assert np.max(cs2[-1]) > 1e-3 and np.max(km[-1]) > 10.0
    np.testing.assert_allclose(kh, km / PR, rtol=1e-14)


def test_integrate_diagnostics_are_those_of_the_output_state(dynamic_integrate_run):
    """cs2, km of each record are the dynamic coefficient and viscosity of that record's
    state. Recomputed here (eagerly, not in the run's jitted code) they agree to round-off
    as conditioned by N^2: in this near-neutral atmosphere |S|_N is dominated by
    -N^2 / Pr, and N^2 is a difference of thrho ~ 300 K between levels only ~0.01-0.1 K
    apart, so the two evaluations differ by up to ~2e-12 relative (measured)."""
    out = dynamic_integrate_run
    for index in (1, -1):
        state, _, grid = output_state(out, index)
        c = coefficient(state, grid)
        cs2 = out["cs2"].values[index]
        assert np.all((c == 0.0) == (cs2 == 0.0))
        np.testing.assert_allclose(cs2, c, rtol=1e-10, atol=0)
        np.testing.assert_allclose(out["km"].values[index],
                                   np.asarray(dyn.dynamic_smagorinsky_viscosity(state, grid).km),
                                   rtol=1e-10, atol=0)


def test_integrate_agrees_with_make_step(dynamic_integrate_run, dynamic_step_run):
    """The driver's run is the make_step run: same coefficients and the same flow."""
    out = dynamic_integrate_run
    *_, final, _, history = dynamic_step_run
    # bit-identical here; the tolerance leaves room for the two compiled programs to round
    # differently, within the pressure solve's tolerance (1e-10)
    np.testing.assert_allclose(out["cs2"].values[:-1], history["c"], rtol=1e-9, atol=1e-15)
    for name in ("u", "v", "w", "th", "qv"):
        want = np.asarray(getattr(final, name))
        np.testing.assert_allclose(out[name].values[-1], want, rtol=0,
                                   atol=1e-9 * np.max(np.abs(want)), err_msg=name)
