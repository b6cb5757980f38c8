"""Benchmarks of the step and the pressure solve (``xlex bench``).

For each grid size, subgrid scheme and solver: compile seconds, seconds per step, seconds per
step spent in the pressure solve, grid-point updates per second, and Krylov
iterations per solve, on a warm bubble spun up for a few steps so the pressure
solve has real work.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from xlex.core.dynamics.numerics import PressureSolver
from xlex.core.dynamics.pressure import SOLVERS
from xlex.core.dynamics.tendencies import buoyancy
from xlex.core.errors import OptionError
from xlex.core.grid import Grid
from xlex.core.initial import moist_base_state, warm_bubble_state
from xlex.core.model import Physics, make_step, parameters
from xlex.core.stepping import advance
from xlex.options import scheme_from_name

DEFAULT_SIZES = ("48x48x24", "96x96x48", "192x192x96")


def parse_size(text: str) -> tuple[int, int, int]:
    """'96x96x48' -> (96, 96, 48) as (nx, ny, nz)."""
    try:
        nx, ny, nz = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise OptionError(f"size {text!r} is not of the form NXxNYxNZ, e.g. 96x96x48") from None
    return nx, ny, nz


def _block(tree):
    jax.block_until_ready(tree)
    return tree


#: Neural subgrid models ``xlex bench --sgs`` knows: name -> preset.
NEURAL = {"neural": "default", "neural-paper": "paper"}


def check_sgs(name: str):
    """Refuse an unknown ``--sgs`` name before anything compiles."""
    if name not in NEURAL:
        scheme_from_name("sgs", name, {})


def _neural_model(grid, state, base, preset):
    """A NeuralSGS of ``preset`` with random weights everywhere (its untrained head
    is zero) and statistics of ``state``: the cost of a trained model."""
    import dataclasses

    from xlex.core.state import State
    from xlex.ml.neural_sgs import NeuralSGS
    from xlex.ml.normalisation import normalisation_from_states
    host = State(**{k: np.asarray(v, np.float64) for k, v in vars(state).items()})
    stats = normalisation_from_states(host, jax.tree.map(lambda a: np.asarray(a, np.float64),
                                                         base))
    model = NeuralSGS.create(grid, stats, preset=preset)
    head = model.weights["head"]
    key = jax.random.PRNGKey(0)
    head = {"kernel": 1e-3 * jax.random.normal(key, head["kernel"].shape), "bias": head["bias"]}
    return dataclasses.replace(model, weights={**model.weights, "head": head})


def bench_case(size: str, solver: str, *, precision="float32", steps=5, spinup=5, dt=None,
               sgs="none"):
    """Time one grid size with one solver and subgrid scheme; returns a dict record
    (for a neural scheme also the seconds per step of the correction alone)."""
    nx, ny, nz = parse_size(size)
    grid = Grid(nx=nx, ny=ny, nz=nz, dx=24000.0 / nx, dy=24000.0 / ny, dz=12000.0 / nz)
    dtype = np.dtype(precision)
    dt = dt if dt is not None else 12.0 * min(grid.dx, grid.dz) / 400.0
    with jax.enable_x64(precision == "float64"):
        base = moist_base_state(grid).astype(dtype)
        state = warm_bubble_state(grid, base, 5.0).astype(dtype)
        scheme = (_neural_model(grid, state, base, NEURAL[sgs]) if sgs in NEURAL
                  else scheme_from_name("sgs", sgs, {}))
        physics = Physics(pressure=PressureSolver(method=solver), sgs=scheme)
        params = parameters(physics)
        step = make_step(grid, physics, dt)
        # spin-up with the default physics so both solvers start from the same state
        default = Physics()
        spin_step = make_step(grid, default, dt)
        spin = jax.jit(lambda s: advance(lambda x: spin_step(x, base, parameters(default)),
                                         s, spinup)[0])
        state = _block(spin(state))

        run = jax.jit(lambda s: advance(lambda x: step(x, base, params), s, steps))
        t0 = time.perf_counter()
        compiled = run.lower(state).compile()
        compile_seconds = time.perf_counter() - t0
        _block(compiled(state))  # warm
        t0 = time.perf_counter()
        _, info = _block(compiled(state))
        its = info["pressure_iterations"]
        per_step = (time.perf_counter() - t0) / steps

        # The four projections of one step, each on a stage velocity with the
        # explicit tendency added and the previous pi' as first guess, as in a step.
        weight = dt / 2.0
        tend = jax.tree.map(jnp.add, physics.advection.tendency(state, None, base, grid,
                                                                stage_dt=weight),
                            buoyancy(state, base))
        star = jax.tree.map(lambda a, t: a + weight * t, state, tend)

        def solves(s):
            out = jnp.zeros_like(s.pi)
            for _ in range(4):
                projected, _ = physics.pressure.project(s, state, base, grid, weight)
                out = out + projected.pi
            return out

        solves_c = jax.jit(solves).lower(star).compile()
        _block(solves_c(star))
        t0 = time.perf_counter()
        _block(solves_c(star))
        pressure_seconds = time.perf_counter() - t0
        extra = {}
        if sgs in NEURAL:
            correction = jax.jit(lambda p, s: p.sgs.correction(s, base)).lower(
                params, state).compile()
            _block(correction(params, state))
            t0 = time.perf_counter()
            for _ in range(steps):
                _block(correction(params, state))
            extra = {"network_seconds_per_step": (time.perf_counter() - t0) / steps,
                     "network_parameters": scheme.parameter_count}
    iterations = float(jnp.mean(its.astype(jnp.float32)))
    return extra | {"size": size, "solver": solver, "sgs": sgs, "precision": precision,
            "compile_seconds": round(compile_seconds, 3),
            "seconds_per_step": per_step,
            "pressure_seconds_per_step": pressure_seconds,
            "points_per_second": grid.points / per_step,
            "pressure_iterations": iterations}


def run(sizes=DEFAULT_SIZES, solvers=SOLVERS, *, precision="float32", steps=5,
        spinup=5, report=print, sgs=("none",)):
    """Benchmark every size with every solver and subgrid scheme; ``report`` gets
    each record as done."""
    records = []
    for size in sizes:
        for scheme in sgs:
            for solver in solvers:
                rec = bench_case(size, solver, precision=precision, steps=steps,
                                 spinup=spinup, sgs=scheme)
                records.append(rec)
                report(rec)
    return records
