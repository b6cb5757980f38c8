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

from xlex import thermo
from xlex.config import ModelConfig
from xlex.dynamics import pressure
from xlex.dynamics.tendencies import dynamics_tendency
from xlex.errors import OptionError
from xlex.grid import Grid
from xlex.initial import moist_base_state, warm_bubble_state
from xlex.model import make_step
from xlex.stepping import advance

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


def bench_case(size: str, solver: str, *, precision="float32", steps=5, spinup=5, dt=None,
               sgs="none"):
    """Time one grid size with one solver and subgrid scheme; returns a dict record."""
    nx, ny, nz = parse_size(size)
    grid = Grid(nx=nx, ny=ny, nz=nz, dx=24000.0 / nx, dy=24000.0 / ny, dz=12000.0 / nz)
    config = ModelConfig(solver=solver, precision=precision, sgs=sgs)
    dt = dt if dt is not None else 12.0 * min(grid.dx, grid.dz) / 400.0
    with jax.enable_x64(precision == "float64"):
        base = moist_base_state(grid).astype(config.dtype)
        state = warm_bubble_state(grid, base, 5.0).astype(config.dtype)
        step = make_step(grid, base, config, dt)
        # spin-up with the default solver so both solvers start from the same state
        spin = jax.jit(lambda s: advance(make_step(grid, base, ModelConfig(
            precision=precision), dt), s, spinup)[0])
        state = _block(spin(state))

        run = jax.jit(lambda s: advance(step, s, steps))
        t0 = time.perf_counter()
        compiled = run.lower(state).compile()
        compile_seconds = time.perf_counter() - t0
        _block(compiled(state))  # warm
        t0 = time.perf_counter()
        _, its = _block(compiled(state))
        per_step = (time.perf_counter() - t0) / steps

        # The four projections of one step, each on a stage velocity with the
        # explicit tendency added and the previous pi' as first guess, as in a step.
        thrho = thermo.density_potential_temperature(state.th, state.qv)
        weight = dt / 2.0
        tend = dynamics_tendency(state, base, grid, config)
        star = jax.tree.map(lambda a, t: a + weight * t, state, tend)

        def solves(s):
            out = jnp.zeros_like(s.pi)
            for _ in range(4):
                *_, pi, _ = pressure.project(
                    s.u, s.v, s.w, thrho, base.mass, base.mass_faces, grid, weight, s.pi,
                    solver=solver, tolerance=config.tolerance,
                    max_iterations=config.max_iterations)
                out = out + pi
            return out

        solves_c = jax.jit(solves).lower(star).compile()
        _block(solves_c(star))
        t0 = time.perf_counter()
        _block(solves_c(star))
        pressure_seconds = time.perf_counter() - t0
    iterations = float(jnp.mean(its.astype(jnp.float32)))
    return {"size": size, "solver": solver, "sgs": sgs, "precision": precision,
            "compile_seconds": round(compile_seconds, 3),
            "seconds_per_step": per_step,
            "pressure_seconds_per_step": pressure_seconds,
            "points_per_second": grid.points / per_step,
            "pressure_iterations": iterations}


def run(sizes=DEFAULT_SIZES, solvers=("pcg", "bicgstab"), *, precision="float32", steps=5,
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
