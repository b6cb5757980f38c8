"""Scale-aware WENO and positive-definite qv transport (issue 10): a top-hat
of qv-like amplitude is advected like one of amplitude 1, the scheme commutes
with a change of units, and the Skamarock (2006) renormalisation keeps qv
non-negative while conserving its integral."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xlex.core.dynamics import advection as adv

N = 64
D = 1.0 / N
VELOCITY = 1.0
DT = 0.4 * D / VELOCITY  # Courant number 0.4 per forward-Euler stage of SSPRK3


def top_hat(amplitude, background=0.0):
    """A top-hat along x over a quarter of the periodic domain, shape (2, 4, N)."""
    x = (np.arange(N) + 0.5) * D
    q = background + amplitude * ((x > 0.25) & (x < 0.5))
    return np.broadcast_to(q, (2, 4, N)).copy()


@functools.partial(jax.jit, static_argnames=("steps", "eps_mode", "positive"))
def advect_x(q, *, steps, eps_mode, positive):
    """q carried along x by a uniform velocity for ``steps`` SSPRK3 (four
    stage) steps of DT, with stages of DT / 2 as in xlex's stepping."""
    u = jnp.full(q.shape, VELOCITY)
    zeros_v = jnp.zeros(q.shape)
    w = jnp.zeros((q.shape[0] + 1,) + q.shape[1:])
    mass, mass_faces = jnp.ones(q.shape[0]), jnp.ones(q.shape[0] + 1)
    h = DT / 2

    def L(s):
        return adv.advection_tendencies(
            u, zeros_v, w, s, s, mass, mass_faces, D, D, 1.0, eps_mode=eps_mode,
            positive_dt=h if positive else None)[4]

    def step(s, _):
        s1 = s + h * L(s)
        s2 = s1 + h * L(s1)
        s3 = 2.0 / 3.0 * s + (s2 + h * L(s2)) / 3.0
        return s3 + h * L(s3), None

    return jax.lax.scan(step, q, None, length=steps)[0]


def relative_undershoot(amplitude, eps_mode, steps=40):
    q = advect_x(jnp.asarray(top_hat(amplitude)), steps=steps, eps_mode=eps_mode,
                 positive=False)
    return -float(jnp.min(q)) / amplitude


def test_top_hat_of_qv_amplitude_is_advected_like_amplitude_one():
    # with the absolute epsilon a 1e-4 top-hat sees the linear scheme (large
    # undershoot) while amplitude 1 sees WENO; the relative epsilon treats both alike
    small_abs = relative_undershoot(1e-4, "absolute")
    big_abs = relative_undershoot(1.0, "absolute")
    small_rel = relative_undershoot(1e-4, "relative")
    big_rel = relative_undershoot(1.0, "relative")
    assert small_abs > 10 * big_abs  # the defect being fixed
    assert small_rel == pytest.approx(big_rel, rel=1e-6)
    assert small_rel < 0.1 * small_abs


@pytest.mark.parametrize("positive", [False, True])
def test_units_change_scales_the_result(positive):
    # qv in kg/kg and in g/kg, on an offset background (th against th'): the
    # relative scheme commutes with q -> c q + b up to round-off
    q = top_hat(2e-4, background=1e-3)
    kg = advect_x(jnp.asarray(q), steps=20, eps_mode="relative", positive=positive)
    g = advect_x(jnp.asarray(1e3 * q), steps=20, eps_mode="relative", positive=positive)
    np.testing.assert_allclose(np.asarray(g), 1e3 * np.asarray(kg), rtol=1e-12, atol=0)
    if not positive:  # the limiter is not offset-invariant, and need not be
        shifted = advect_x(jnp.asarray(q + 300.0), steps=20, eps_mode="relative",
                           positive=False)
        np.testing.assert_allclose(np.asarray(shifted) - 300.0, np.asarray(kg),
                                   rtol=0, atol=1e-12 * 300.0)


def test_limiter_keeps_qv_non_negative_and_conserves():
    # a top-hat on zero background: without the limiter WENO undershoots below 0
    q0 = jnp.asarray(top_hat(1e-3))
    free = advect_x(q0, steps=40, eps_mode="relative", positive=False)
    limited = advect_x(q0, steps=40, eps_mode="relative", positive=True)
    assert float(jnp.min(free)) < -1e-9
    assert float(jnp.min(limited)) >= -1e-18  # round-off of 1e-3 in float64
    total = float(jnp.sum(q0))
    assert abs(float(jnp.sum(limited)) - total) <= 1e-10 * total
    # the limiter only acts where needed: the peak is not flattened
    assert float(jnp.max(limited)) == pytest.approx(float(jnp.max(free)), rel=1e-2)


def test_limiter_keeps_qv_non_negative_in_a_3d_divergence_free_flow():
    # a random sinusoidal, discretely divergence-free flow (streamfunction in
    # x-z with uniform mass) across the walls; one stage at Courant number ~0.5
    nz, ny, nx = 8, 6, 10
    rng = np.random.default_rng(3)
    psi = rng.normal(size=(nz + 1, ny, nx + 0))  # on the z faces, west faces
    psi[0] = psi[-1] = 0.0  # w = 0 on the walls
    u = -(psi[1:] - psi[:-1])  # dz = 1, on west faces
    w = np.roll(psi, -1, axis=2) - psi  # dx = 1, on bottom faces
    v = np.zeros((nz, ny, nx))
    q = np.where(rng.random((nz, ny, nx)) < 0.5, 0.0, rng.random((nz, ny, nx)) * 1e-3)
    dt = 0.5 / np.max(np.abs(np.concatenate([u.ravel(), w.ravel()])))
    args = [jnp.asarray(a) for a in (u, v, w, q, q, np.ones(nz), np.ones(nz + 1))]
    free = adv.advection_tendencies(*args, 1.0, 1.0, 1.0)[4]
    limited = adv.advection_tendencies(*args, 1.0, 1.0, 1.0, positive_dt=dt)[4]
    assert float(jnp.min(q + dt * free)) < -1e-6
    assert float(jnp.min(q + dt * limited)) >= -1e-18
    assert abs(float(jnp.sum(limited))) <= 1e-10 * float(jnp.sum(jnp.abs(free)))
