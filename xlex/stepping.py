"""Time integration: SSPRK3 with four stages as a higher-order function, and
the scan that advances a state by many steps."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

#: Four-stage third-order SSP Runge-Kutta (SSP coefficient 2), written as
#: x_s = a x_0 + b (x_{s-1} + dt/2 L(x_{s-1})): pairs (a, b) per stage.
SSPRK3_4_STAGES = ((0.0, 1.0), (0.0, 1.0), (2.0 / 3.0, 1.0 / 3.0), (0.0, 1.0))


def ssprk3(tendency_fn: Callable, project_fn: Callable, dt: float,
           prepare_fn: Callable | None = None) -> Callable:
    """Build ``step(state) -> (state, info)`` for SSPRK3(4):

        u1 = u + dt/2 L(u);  u2 = u1 + dt/2 L(u1);
        u3 = 2/3 u + 1/3 (u2 + dt/2 L(u2));  u_new = u3 + dt/2 L(u3),

    with a projection after every stage.

    Parameters
    ----------
    tendency_fn : (state, frozen) -> tendency
        Explicit tendency (same pytree type as the state).
    project_fn : (star, current, weight) -> (state, iterations)
        Makes the stage state ``star`` satisfy the constraint, given the state
        ``current`` where the tendency was evaluated and the tendency's weight.
    dt : float
        Time step [s].
    prepare_fn : state -> frozen, optional
        Quantities computed once per step from the state at its start and held
        fixed over the stages (e.g. an eddy viscosity).
    """

    stage_a = jnp.asarray([a for a, _ in SSPRK3_4_STAGES])
    stage_b = jnp.asarray([b for _, b in SSPRK3_4_STAGES])

    def step(state):
        frozen = prepare_fn(state) if prepare_fn is not None else None

        # The stages share one body under lax.scan: compiled once, not four times.
        def stage(current, ab):
            a, b = ab
            dtype = state.th.dtype
            a, b = a.astype(dtype), b.astype(dtype)
            weight = b * (dt / 2.0)
            tend = tendency_fn(current, frozen)
            star = jax.tree.map(lambda x0, x, t: a * x0 + b * x + weight * t,
                                state, current, tend)
            return project_fn(star, current, weight)

        return jax.lax.scan(stage, state, (stage_a, stage_b))

    return step


def advance(step: Callable, state, n_steps: int):
    """Apply ``step`` ``n_steps`` times with ``lax.scan``.

    Returns the final state and the per-step ``info`` stacked along axis 0.
    """
    def body(s, _):
        return step(s)

    return jax.lax.scan(body, state, None, length=n_steps)
