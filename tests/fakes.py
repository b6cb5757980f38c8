"""Stand-ins the tests share: what a step reports of its pressure solves."""

import jax.numpy as jnp


def solve_info(dtype, *, iterations=1, residual=0.0, breakdown=False) -> dict:
    """The ``info`` of one step of :func:`xlex.core.model.make_step` (four stages),
    for stand-in steps that make no pressure solve."""
    return {"pressure_iterations": jnp.full(4, iterations, jnp.int32),
            "pressure_residual": jnp.full(4, residual, dtype),
            "pressure_breakdown": jnp.full(4, breakdown)}
