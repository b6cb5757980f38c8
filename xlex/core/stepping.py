"""Time integration: SSPRK3 with four stages as a higher-order function, the
scan that advances a state by many steps, and differentiable trajectories
whose reverse-mode memory grows far slower than their length (nested
checkpointed scans)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

#: Four-stage third-order SSP Runge-Kutta (SSP coefficient 2), written as
#: x_s = a x_0 + b (x_{s-1} + dt/2 L(x_{s-1})): pairs (a, b) per stage, a + b = 1.
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
    project_fn : (star, current, weight) -> (state, info)
        Makes the stage state ``star`` satisfy the constraint, given the state
        ``current`` where the tendency was evaluated and the tendency's weight;
        ``info`` (any pytree, e.g. the solve's iterations) is stacked over the
        stages as the step's second output.
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
            # a x0 + (1 - a) x written as x + a (x0 - x): in float32 the weights 2/3
            # and 1/3 both round up, and a x0 + b x warmed a 300 K field by one ulp
            # (3e-5 K) a step wherever it moved
            star = jax.tree.map(lambda x0, x, t: x + a * (x0 - x) + weight * t,
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


def nested_checkpoint_scan(f: Callable, init, xs=None, length: int | None = None, *,
                           nested_lengths: Sequence[int], checkpoint: Callable = jax.checkpoint):
    """``jax.lax.scan(f, init, xs, length)`` as nested scans whose bodies are
    rematerialised in reverse mode.

    With ``nested_lengths = (n1, n2, ..., nk)`` (product = the scan's length),
    the outer scan of n1 iterations runs a checkpointed scan of n2, and so on:
    the gradient keeps the carry at n1 + n2 + ... points (plus one innermost
    body's residuals) instead of the residuals of every iteration, for about k
    times the forward work.
    """
    if xs is not None:
        length = jax.tree.leaves(xs)[0].shape[0]
    if length is None:
        raise ValueError("give xs or length")
    if math.prod(nested_lengths) != length:
        raise ValueError(f"nested_lengths {tuple(nested_lengths)} must multiply to the scan "
                         f"length {length}")
    if len(nested_lengths) == 1:
        return jax.lax.scan(f, init, xs, length=length)
    outer, *inner = nested_lengths
    if xs is not None:
        xs = jax.tree.map(lambda x: x.reshape((outer, -1) + x.shape[1:]), xs)
    body = checkpoint(functools.partial(nested_checkpoint_scan, f,
                                        length=math.prod(inner), nested_lengths=inner,
                                        checkpoint=checkpoint))
    carry, ys = jax.lax.scan(lambda c, x: body(c, x), init, xs, length=outer)
    return carry, jax.tree.map(lambda y: y.reshape((-1,) + y.shape[2:]), ys)


def checkpoint_lengths(n: int) -> tuple[int, ...]:
    """Two nested lengths near sqrt(n) whose product is ``n`` (the classic
    O(sqrt n) memory schedule); ``(n,)`` when ``n`` is prime or small."""
    best = (n,)
    for a in range(2, math.isqrt(n) + 1):
        if n % a == 0:
            best = (n // a, a)
    return best


def trajectory(step: Callable, state, base, params, *, steps: int, save_every: int | None = None,
               checkpoint: bool | Sequence[int] = True):
    """Run ``steps`` steps of ``step(state, base, params) -> (state, info)`` and
    return the states every ``save_every`` steps, differentiably.

    Parameters
    ----------
    step : callable
        A step of :func:`xlex.core.model.make_step`.
    state, base, params
        Initial state, base state and parameters (``xlex.parameters(physics)``).
    steps : int
        Number of steps.
    save_every : int, optional
        Steps between saved states (default: ``steps``, only the last); must
        divide ``steps``.
    checkpoint : bool or sequence of int
        Rematerialise in reverse mode (default True): each interval between saved
        states is a nested checkpointed scan (:func:`nested_checkpoint_scan`,
        lengths from :func:`checkpoint_lengths` or as given), and every step is
        recomputed rather than stored. False stores every intermediate of every
        step (fastest, memory grows as ``steps``).

    Returns
    -------
    states : State
        Stacked along a new leading axis: the state after ``save_every``,
        ``2 save_every``, ..., ``steps`` steps.
    info : dict
        The step's ``info`` (``pressure_iterations``, ``pressure_residual``,
        ``pressure_breakdown``) of every step, shape ``(steps, 4)``.
    """
    save_every = steps if save_every is None else save_every
    if steps < 1 or save_every < 1 or steps % save_every:
        raise ValueError(f"save_every={save_every} must divide steps={steps} (both >= 1)")

    def one(s, _):
        s, info = step(s, base, params)
        return s, info

    if checkpoint is False:
        inner = functools.partial(jax.lax.scan, one, length=save_every)
    else:
        lengths = checkpoint_lengths(save_every) if checkpoint is True else tuple(checkpoint)
        remat_one = jax.checkpoint(one)
        inner = functools.partial(nested_checkpoint_scan, remat_one, length=save_every,
                                  nested_lengths=lengths)

    def interval(s, _):
        s, info = inner(s)
        return s, (s, info)

    if checkpoint is not False:
        interval = jax.checkpoint(interval)
    _, (states, info) = jax.lax.scan(interval, state, None, length=steps // save_every)
    info = jax.tree.map(lambda x: x.reshape((steps,) + x.shape[2:]), info)
    return states, info
