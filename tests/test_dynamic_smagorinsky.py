"""Tests of the dynamic Smagorinsky model (xlex.physics.dynamic_smagorinsky) and of its
coupling into the model (ModelConfig(sgs='dynamic')): agreement of the Germano tensors
and of Lilly's coefficient C(z) with an independent NumPy implementation (with and
without the N^2 / Pr stability reduction), the least-squares step on prescribed
coefficients, the invariances the procedure must have (Galilean, scale, mirror,
x <-> y exchange, time reversal), a flow at rest, the test filter's transfer function
and conservation, and a coupled warm-bubble run with its output diagnostics."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xlex
from xlex import constants
from xlex.config import ModelConfig
from xlex.dynamics import pressure
from xlex.grid import Grid
from xlex.initial import moist_base_state, warm_bubble_state
from xlex.io.convert import dataset_to_inputs
from xlex.model import make_step, output_diagnostics, sgs_coefficients
from xlex.physics import dynamic_smagorinsky as dyn
from xlex.physics import smagorinsky as sm
from xlex.state import State

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


def smooth_state(grid, seed=0, *, speed=3.0, lapse=0.001):
    """Smooth random u, v, w (w = 0 on the walls), stably stratified th with random
    perturbations, and moist qv."""
    rng = np.random.default_rng(seed)
    u = fourier_field(grid, rng, n_modes=8, amplitude=speed, x="face")
    v = fourier_field(grid, rng, n_modes=8, amplitude=speed, y="face")
    w = fourier_field(grid, rng, n_modes=8, amplitude=0.5 * speed, z="face", odd=True)
    w[0] = w[-1] = 0.0
    z = grid.centres("z")[:, None, None]
    th = 300.0 + lapse * z + fourier_field(grid, rng, n_modes=6, amplitude=0.05)
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
