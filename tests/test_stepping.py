"""SSPRK3 (four stages) as a higher-order function, and the scan driver."""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xlex.core.stepping import SSPRK3_4_STAGES, advance, ssprk3


class Pair(NamedTuple):
    """A minimal state pytree: ``ssprk3`` reads the dtype from ``th``."""

    th: jax.Array
    qv: jax.Array


def nonlinear(state, frozen):
    """th' = -th^2 (th = 1 / (1 + t)), qv' = qv (1 - qv) (logistic)."""
    return Pair(th=-state.th ** 2, qv=state.qv * (1.0 - state.qv))


def exact(t, th0=1.0, qv0=0.2):
    return th0 / (1.0 + th0 * t), qv0 * np.exp(t) / (1.0 - qv0 + qv0 * np.exp(t))


def no_projection(star, current, weight):
    return star, jnp.zeros((), jnp.int32)


def test_float32_steps_have_no_warm_bias():
    """In float32 the third stage's weights 2/3 and 1/3 both round up; written as
    2/3 x0 + 1/3 x, they warmed 300 K fields by about 1e-5 K a step wherever the
    flow moved (measured: +5.0e-4 K after 100 steps here, and 2e-3 K an hour in
    a boundary layer). Written as x + 2/3 (x0 - x), the mean error of 100 steps
    against float64 is round-off of either sign."""
    rng = np.random.default_rng(0)
    th = rng.uniform(299.0, 301.0, 100_000).astype(np.float32)
    rate = rng.uniform(-1e-3, 1e-3, th.size).astype(np.float32)  # K s-1, per point

    def run(dtype):
        start = Pair(th=jnp.asarray(th, dtype), qv=jnp.zeros(th.size, dtype))
        r = jnp.asarray(rate, dtype)
        step = ssprk3(lambda s, f: Pair(th=r * jnp.cos(s.th - start.th), qv=s.qv),
                      no_projection, 12.0)
        return np.asarray(jax.jit(lambda s: advance(step, s, 100)[0])(start).th, np.float64)

    error = run(jnp.float32) - run(jnp.float64)
    assert np.sqrt(np.mean(error ** 2)) < 3e-3  # float32's round-off over 100 steps
    assert abs(np.mean(error)) < 1e-4, np.mean(error)  # no bias (it was +5.0e-4)


def integrate(dt, t_end, tendency=nonlinear, start=None):
    start = start or Pair(th=jnp.ones(3), qv=jnp.full(3, 0.2))
    step = ssprk3(tendency, no_projection, dt)
    n = int(round(t_end / dt))
    final, info = jax.jit(lambda s: advance(step, s, n))(start)
    assert info.shape == (n, 4)
    return final


def test_ssprk3_is_third_order_on_a_nonlinear_ode():
    t_end = 2.0
    dts = np.array([0.2, 0.1, 0.05, 0.025, 0.0125])
    errors = []
    for dt in dts:
        final = integrate(dt, t_end)
        th, qv = exact(t_end)
        errors.append(max(abs(float(final.th[0]) - th), abs(float(final.qv[0]) - qv)))
    slope = np.polyfit(np.log(dts), np.log(errors), 1)[0]
    assert 2.8 <= slope <= 3.3, (slope, errors)
    assert errors[-1] < 1e-6


def test_ssprk3_is_third_order_on_a_rotation():
    """y'' = -y as a first-order system (the linear stability polynomial of
    SSPRK3(4) is 1 + z + z^2/2 + z^3/6 + z^4/48)."""
    def rotation(state, frozen):
        return Pair(th=-state.qv, qv=state.th)

    t_end = 3.0
    dts = np.array([0.3, 0.15, 0.075, 0.0375])
    errors = []
    for dt in dts:
        final = integrate(dt, t_end, rotation, Pair(th=jnp.ones(()), qv=jnp.zeros(())))
        errors.append(np.hypot(float(final.th) - np.cos(t_end), float(final.qv) - np.sin(t_end)))
    slope = np.polyfit(np.log(dts), np.log(errors), 1)[0]
    assert 2.8 <= slope <= 3.3, (slope, errors)
    # one step on the linear test equation y' = lambda y is the stability polynomial
    lam, dt = -1.7, 0.9
    step = ssprk3(lambda s, f: Pair(th=lam * s.th, qv=lam * s.qv), no_projection, dt)
    out, _ = step(Pair(th=jnp.ones(()), qv=jnp.ones(())))
    z = lam * dt
    assert abs(float(out.th) - (1 + z + z ** 2 / 2 + z ** 3 / 6 + z ** 4 / 48)) < 1e-14


def test_ssprk3_is_ssp_with_coefficient_two():
    """Forward Euler with dt/2 is monotone for th' = -k th when k dt/2 <= 1; then
    SSPRK3(4) with dt (CFL coefficient 2) is too: no sign change, no growth."""
    k = 1.0
    dt = 2.0 / k  # the SSP limit
    step = ssprk3(lambda s, f: Pair(th=-k * s.th, qv=-k * s.qv), no_projection, dt)
    out, _ = step(Pair(th=jnp.ones(()), qv=jnp.ones(())))
    assert 0.0 <= float(out.th) <= 1.0


def test_stages_pass_their_weights_and_the_frozen_state_to_the_callbacks():
    dt = 0.6
    seen = []

    def tendency(state, frozen):
        seen.append(frozen)
        return Pair(th=frozen * jnp.ones_like(state.th), qv=jnp.zeros_like(state.qv))

    def project(star, current, weight):
        return star, weight

    step = ssprk3(tendency, project, dt, prepare_fn=lambda s: 2.0 * s.th)
    out, weights = jax.jit(step)(Pair(th=jnp.asarray(1.5), qv=jnp.asarray(0.0)))
    expected = [b * dt / 2 for _, b in SSPRK3_4_STAGES]
    np.testing.assert_allclose(np.asarray(weights), expected, rtol=1e-15)
    np.testing.assert_allclose(np.asarray(weights), [dt / 2, dt / 2, dt / 6, dt / 2],
                               rtol=1e-15)
    # th' = 3 (frozen at the start of the step, constant over the stages)
    assert abs(float(out.th) - (1.5 + 3.0 * dt)) < 1e-14
    assert len(seen) == 1  # one traced stage body, scanned four times


def test_projection_is_applied_after_every_stage():
    """A projection that enforces th + qv = 1 (removing the mean of the
    violation) keeps the constraint exactly whatever the tendency does."""
    def tendency(state, frozen):
        return Pair(th=jnp.sin(state.qv) + 1.0, qv=state.th ** 2)

    calls = []

    def project(star, current, weight):
        excess = 0.5 * (star.th + star.qv - 1.0)
        calls.append(weight)
        return Pair(th=star.th - excess, qv=star.qv - excess), jnp.sum(jnp.abs(excess) > 0)

    step = ssprk3(tendency, project, 0.1)
    final, info = jax.jit(lambda s: advance(step, s, 7))(Pair(th=jnp.full(4, 0.3),
                                                             qv=jnp.full(4, 0.7)))
    np.testing.assert_allclose(np.asarray(final.th + final.qv), 1.0, rtol=0, atol=1e-14)
    assert info.shape == (7, 4) and int(jnp.min(info)) == 4  # every stage had work to do


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_step_keeps_the_state_dtype(dtype):
    step = ssprk3(nonlinear, no_projection, 0.1)
    out, _ = jax.jit(step)(Pair(th=jnp.ones(2, dtype), qv=jnp.full(2, 0.2, dtype)))
    assert out.th.dtype == dtype and out.qv.dtype == dtype


def test_advance_matches_repeated_steps():
    step = ssprk3(nonlinear, no_projection, 0.05)
    start = Pair(th=jnp.ones(2), qv=jnp.full(2, 0.2))
    scanned, _ = jax.jit(lambda s: advance(step, s, 5))(start)
    state = start
    for _ in range(5):
        state, _ = step(state)
    np.testing.assert_allclose(np.asarray(scanned.th), np.asarray(state.th), rtol=1e-14)
    np.testing.assert_allclose(np.asarray(scanned.qv), np.asarray(state.qv), rtol=1e-14)


# ---- differentiable trajectories: nested checkpointed scans ------------------------------

from xlex.core.stepping import checkpoint_lengths, nested_checkpoint_scan, trajectory  # noqa: E402


def _toy_step(state, base, params):
    """A step with enough intermediates that storing them costs memory."""
    x = state
    for _ in range(4):
        x = x + 0.01 * jnp.tanh(params * jnp.roll(x, 1) - base * x)
    return x, {"pressure_iterations": jnp.zeros(4, jnp.int32)}


def test_nested_checkpoint_scan_equals_scan_values_and_gradients():
    def f(c, x):
        c = jnp.sin(c) * x + c
        return c, c ** 2

    xs = jnp.linspace(0.1, 1.0, 24)
    plain = jax.lax.scan(f, 0.3, xs)
    nested = nested_checkpoint_scan(f, 0.3, xs, nested_lengths=(2, 3, 4))
    np.testing.assert_allclose(nested[0], plain[0], rtol=1e-14)
    np.testing.assert_allclose(nested[1], plain[1], rtol=1e-14)
    g_plain = jax.grad(lambda c: jax.lax.scan(f, c, xs)[1].sum())(0.3)
    g_nested = jax.grad(lambda c: nested_checkpoint_scan(
        f, c, xs, nested_lengths=(4, 6))[1].sum())(0.3)
    np.testing.assert_allclose(g_nested, g_plain, rtol=1e-13)
    with pytest.raises(ValueError, match="multiply"):
        nested_checkpoint_scan(f, 0.3, xs, nested_lengths=(5, 5))


@pytest.mark.parametrize("n, expected", [(24, (6, 4)), (7, (7,)), (100, (10, 10)), (1, (1,))])
def test_checkpoint_lengths_multiply_to_n(n, expected):
    assert checkpoint_lengths(n) == expected


def test_trajectory_saves_the_states_of_advance():
    state, base, params = jnp.linspace(0.0, 1.0, 50), jnp.asarray(0.3), jnp.asarray(1.7)
    step = functools.partial(_toy_step)
    for checkpoint in (False, True, (2, 2)):
        states, info = trajectory(step, state, base, params, steps=12, save_every=4,
                                  checkpoint=checkpoint)
        assert states.shape == (3, 50) and info["pressure_iterations"].shape == (12, 4)
        s = state
        for k in range(12):
            s, _ = step(s, base, params)
            if (k + 1) % 4 == 0:
                np.testing.assert_allclose(states[(k + 1) // 4 - 1], s, rtol=1e-14)
    with pytest.raises(ValueError, match="divide"):
        trajectory(step, state, base, params, steps=10, save_every=4)


def _gradient_memory(step, state, base, params, checkpoint, steps=24):
    def loss(p):
        states, _ = trajectory(step, state, base, p, steps=steps, checkpoint=checkpoint)
        return jnp.mean(states[-1] ** 2) if not hasattr(states, "w") else jnp.mean(
            states.w[-1] ** 2)
    compiled = jax.jit(jax.grad(loss)).lower(params).compile()
    return compiled.memory_analysis().temp_size_in_bytes, compiled(params)


def test_checkpointed_gradient_memory_grows_slower_than_the_length():
    state, base, params = jnp.linspace(0.0, 1.0, 4096), jnp.asarray(0.3), jnp.asarray(1.7)
    mem = {}
    for steps in (24, 96):
        for cp in (False, True):
            mem[steps, cp], grad = _gradient_memory(_toy_step, state, base, params, cp, steps)
            mem[steps, cp, "grad"] = float(grad)
        assert mem[steps, True, "grad"] == pytest.approx(mem[steps, False, "grad"], rel=1e-12)
    # without checkpoints memory is proportional to the length; with them ~ sqrt(length)
    assert mem[96, False] / mem[24, False] > 3.0
    assert mem[96, True] / mem[24, True] < 2.5
    assert mem[24, True] <= mem[24, False] / 4


@pytest.mark.slow
def test_model_gradient_over_24_steps_fits_in_a_quarter_of_the_memory():
    """The issue's criterion, on the model itself (Smagorinsky, through 96 pressure
    solves): compiled temporary memory of d mean(w^2) / d params after 24 steps."""
    import xlex
    from xlex.core.grid import Grid
    from xlex.core.initial import moist_base_state, warm_bubble_state
    from xlex.core.model import Physics, make_step, parameters

    grid = Grid(nx=8, ny=8, nz=8, dx=1000.0, dy=1000.0, dz=1000.0)
    base = moist_base_state(grid)
    # the bubble inside the 8 km domain (the default centre, 12 km, is outside it and
    # left a gradient of ~1e-38 to compare)
    state = warm_bubble_state(grid, base, 5.0, x_centre=4000.0, y_centre=4000.0,
                              z_centre=3000.0)
    physics = Physics(sgs=xlex.Smagorinsky(cs=0.2))
    step = make_step(grid, physics, 10.0)
    params = parameters(physics)
    plain, g_plain = _gradient_memory(step, state, base, params, False)
    saved, g_saved = _gradient_memory(step, state, base, params, (24,))
    assert saved <= plain / 4, (saved, plain)
    assert abs(float(g_plain.sgs.cs)) > 1e-3, float(g_plain.sgs.cs)
    assert float(g_saved.sgs.cs) == pytest.approx(float(g_plain.sgs.cs), rel=1e-9)
