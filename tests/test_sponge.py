"""The sponge under the lid (Rayleigh damping): its profile, its tendency, its
validation, and that it absorbs gravity waves that the rigid lid reflects."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xlex
from xlex.core.grid import Grid
from xlex.core.initial import moist_base_state, warm_bubble_state
from xlex.core.model import Physics, make_step, parameters
from xlex.core.physics.sponge import Sponge, damping_rate
from xlex.core.state import State
from xlex.core.stepping import advance

GRID = Grid(nx=8, ny=6, nz=20, dx=500.0, dy=500.0, dz=500.0)  # 10 km deep


def test_damping_rate_rises_smoothly_from_zero_to_the_lid():
    z = np.linspace(0.0, 10000.0, 201)
    r = np.asarray(damping_rate(jnp.asarray(z), 10000.0, 3000.0, 200.0))
    assert np.all(r[z <= 7000.0] == 0.0)
    assert r[-1] == pytest.approx(1 / 200.0, rel=1e-14)
    assert np.all(np.diff(r) >= 0)
    mid = np.argmin(np.abs(z - 8500.0))
    assert r[mid] == pytest.approx(0.5 / 200.0, rel=1e-12)  # sin^2(pi/4)
    # continuous with a zero slope at the bottom of the layer (no sudden start)
    assert r[np.argmin(np.abs(z - 7050.0))] < 2e-3 * r[-1]


def test_tendency_damps_w_in_the_layer_only():
    base = moist_base_state(GRID)
    rng = np.random.default_rng(0)
    shape_c, shape_w = (20, 6, 8), (21, 6, 8)
    state = State(u=jnp.asarray(rng.normal(size=shape_c)) + 5.0,
                  v=jnp.asarray(rng.normal(size=shape_c)),
                  w=jnp.asarray(rng.normal(size=shape_w)).at[0].set(0.0).at[-1].set(0.0),
                  th=base.th0[:, None, None] + jnp.asarray(rng.normal(size=shape_c)),
                  qv=jnp.broadcast_to(base.qv0[:, None, None], shape_c),
                  pi=jnp.zeros(shape_c))
    sponge = Sponge(depth=3000.0, timescale=200.0)
    t = sponge.tendency(state, None, base, GRID)
    z_faces = np.arange(21) * 500.0
    expected = -np.asarray(damping_rate(jnp.asarray(z_faces), 10000.0, 3000.0, 200.0))[:, None,
                                                                                       None] * state.w
    expected = expected.at[0].set(0.0).at[-1].set(0.0)
    np.testing.assert_allclose(t.w, expected, rtol=1e-14, atol=0)
    assert np.all(np.asarray(t.w[z_faces <= 7000.0]) == 0.0)
    for name in ("u", "v", "th", "qv", "pi"):
        assert float(jnp.max(jnp.abs(getattr(t, name)))) == 0.0
    full = Sponge(depth=3000.0, timescale=200.0, damp_horizontal_wind=True, damp_theta=True)
    t = full.tendency(state, None, base, GRID)
    # u relaxes towards its level mean (which it keeps), th towards th0
    np.testing.assert_allclose(jnp.sum(t.u, axis=(-2, -1)), 0.0, atol=1e-12)
    top = -1
    r_top = float(damping_rate(jnp.asarray(9750.0), 10000.0, 3000.0, 200.0))
    np.testing.assert_allclose(t.th[top], -r_top * (state.th[top] - base.th0[top]), rtol=1e-13)
    assert float(jnp.max(jnp.abs(t.th[:13]))) == 0.0


@pytest.mark.parametrize("kwargs, words", [
    (dict(depth=0.0), ["depth", "> 0"]),
    (dict(timescale=-5.0), ["timescale", "> 0"]),
    (dict(damp_theta=1), ["damp_theta", "True or False"]),
])
def test_bad_sponges_fail_when_built(kwargs, words):
    with pytest.raises(xlex.XlexError) as info:
        Sponge(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_a_sponge_deeper_than_the_domain_is_refused_before_compiling():
    with pytest.raises(xlex.OptionError, match="deeper than the domain"):
        make_step(GRID, Physics(sponge=Sponge(depth=20000.0)), 10.0)


def _wave_run(sponge, minutes=40):
    """A warm bubble in a stably stratified atmosphere (N ~ 0.018 s-1, 10 km deep)
    oscillates and launches gravity waves upward; returns, every 5 min, the mean
    w^2 below the sponge's layer (z < 7 km) and in it (z > 7 km)."""
    grid = Grid(nx=32, ny=6, nz=40, dx=500.0, dy=500.0, dz=250.0)  # 16 x 10 km
    base = moist_base_state(grid, theta=lambda z: 300.0 + 0.01 * z, relative_humidity=0.0)
    state = warm_bubble_state(grid, base, 2.0, x_centre=8000.0, y_centre=1500.0,
                              z_centre=2000.0, x_radius=1500.0, y_radius=1e9, z_radius=1000.0)
    physics = Physics(sponge=sponge)
    step = make_step(grid, physics, 5.0)
    params = parameters(physics)
    run = jax.jit(lambda s: advance(lambda x: step(x, base, params), s, 60))
    energy = []
    for _ in range(minutes // 5):
        state, _ = run(state)
        w2 = np.asarray((state.w ** 2).mean(axis=(-2, -1)))
        energy.append((w2[1:28].mean(), w2[28:-1].mean()))
    return np.array(energy)


@pytest.mark.slow
def test_sponge_absorbs_the_waves_the_lid_reflects():
    free = _wave_run(None)
    damped = _wave_run(Sponge(depth=3000.0, timescale=100.0))
    assert np.all(np.isfinite(damped))
    # the first 5 minutes (waves still below the layer) are the same flow
    assert damped[0, 0] == pytest.approx(free[0, 0], rel=0.02)
    late = slice(3, None)  # 20 to 40 min: waves have reached the lid and come back
    below = damped[late, 0].mean() / free[late, 0].mean()
    inside = damped[late, 1].mean() / free[late, 1].mean()
    print(f"mean w^2 with / without sponge, 20-40 min: below {below:.3f}, in the layer "
          f"{inside:.3f}")
    assert inside < 0.7  # the layer absorbs
    assert below < 0.95  # and what the lid reflected is missing below it


def test_sponge_parameters_are_differentiable():
    grid = Grid(nx=6, ny=6, nz=10, dx=1000.0, dy=1000.0, dz=1000.0)
    base = moist_base_state(grid)
    state = warm_bubble_state(grid, base, 5.0, x_centre=3000.0, y_centre=3000.0,
                              z_centre=6000.0, x_radius=2000.0, y_radius=2000.0,
                              z_radius=2000.0)
    physics = Physics(sponge=Sponge(depth=5000.0, timescale=200.0),
                      pressure=xlex.PressureSolver(tolerance=1e-13, max_iterations=200))
    step = make_step(grid, physics, 10.0)

    def loss(p):
        s, _ = advance(lambda x: step(x, base, p), state, 3)
        return jnp.sum(s.w ** 2)

    # one compiled program gives the gradient and both sides of the difference
    value_and_grad = jax.jit(jax.value_and_grad(loss))
    p = parameters(physics)
    g = value_and_grad(p)[1]
    assert float(g.sponge.timescale) > 0  # a slower sponge leaves more w
    h = 0.05  # the truncation error of the difference is ~ (h / timescale)^2
    up = value_and_grad(dataclasses.replace(
        p, sponge=dataclasses.replace(p.sponge, timescale=200.0 + h)))[0]
    down = value_and_grad(dataclasses.replace(
        p, sponge=dataclasses.replace(p.sponge, timescale=200.0 - h)))[0]
    assert float(g.sponge.timescale) == pytest.approx(float(up - down) / (2 * h), rel=1e-6)
