"""Benchmarks of the step and the pressure solve (``xlex bench``).

For each grid size, subgrid scheme and solver, on a warm bubble spun up for a
few steps so the pressure solve has real work: the seconds spent compiling
and the seconds spent running, kept apart; seconds per step; seconds per step
spent in the pressure solve; grid-point updates per second; Krylov iterations
per solve; and how many programs came from the persistent compilation cache
(:mod:`xlex.compilation_cache`), which makes a second ``xlex bench`` compile
little.

The cases are a table (:func:`cases`) of :class:`Case` rows, each timed by
the function :data:`KINDS` names for its ``kind``: another kind of
benchmark (a training step, say) is one more function there, its records
printed by the same header and progress lines.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
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

#: ``xlex bench`` with no options times these sizes with both solvers in
#: about a minute on a 2-core laptop CPU (docs/performance.md).
DEFAULT_SIZES = ("48x48x24", "96x96x48")
DEFAULT_STEPS = 3
DEFAULT_SPINUP = 5

#: Neural subgrid models ``xlex bench --sgs`` knows: name -> preset.
NEURAL = {"neural": "default", "neural-paper": "paper"}


def parse_size(text: str) -> tuple[int, int, int]:
    """'96x96x48' -> (96, 96, 48) as (nx, ny, nz)."""
    try:
        nx, ny, nz = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise OptionError(f"size {text!r} is not of the form NXxNYxNZ, e.g. 96x96x48") from None
    return nx, ny, nz


def check_sgs(name: str):
    """Refuse an unknown ``--sgs`` name before anything compiles."""
    if name not in NEURAL:
        scheme_from_name("sgs", name, {})


# --------------------------------------------------------------------------- timing


class _CacheHits:
    """Counts programs loaded from JAX's persistent compilation cache."""

    count = 0
    _listening = False

    @classmethod
    def listen(cls):
        if not cls._listening:  # JAX keeps listeners for the process: register once
            jax.monitoring.register_event_listener(cls._event)
            cls._listening = True

    @classmethod
    def _event(cls, event, **_):
        if event == "/jax/compilation_cache/cache_hits":
            cls.count += 1


class Clock:
    """Seconds spent compiling and seconds spent running, kept apart."""

    def __init__(self):
        self.compile_seconds = 0.0
        self.run_seconds = 0.0
        _CacheHits.listen()
        self._hits = _CacheHits.count

    @property
    def cache_hits(self) -> int:
        return _CacheHits.count - self._hits

    def compile(self, fn, *args):
        """``jax.jit(fn)`` compiled for ``args``, and the seconds it took."""
        t0 = time.perf_counter()
        compiled = jax.jit(fn).lower(*args).compile()
        seconds = time.perf_counter() - t0
        self.compile_seconds += seconds
        return compiled, seconds

    def run(self, compiled, *args, repeat=1):
        """The result of ``compiled(*args)`` and its seconds per call."""
        t0 = time.perf_counter()
        for _ in range(repeat):
            out = compiled(*args)
            jax.block_until_ready(out)
        seconds = time.perf_counter() - t0
        self.run_seconds += seconds
        return out, seconds / repeat


# --------------------------------------------------------------------------- the step


def _neural_model(grid, state, base, preset):
    """A NeuralSGS of ``preset`` with random weights everywhere (its untrained head
    is zero) and statistics of ``state``: the cost of a trained model."""
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


def _grid(size: str) -> Grid:
    nx, ny, nz = parse_size(size)
    return Grid(nx=nx, ny=ny, nz=nz, dx=24000.0 / nx, dy=24000.0 / ny, dz=12000.0 / nz)


def _spun_up(clock, grid, dtype, dt, spinup, shared=None):
    """(state, base): the 5 K bubble after ``spinup`` steps of the default
    physics, so every solver and scheme starts from the same state. With a
    ``shared`` dict, a state spun up for an earlier case of the same grid is
    reused (its cost counted in that case)."""
    key = (grid, np.dtype(dtype).name, dt, spinup)
    if shared is not None and key in shared:
        return shared[key]
    base = moist_base_state(grid).astype(dtype)
    state = warm_bubble_state(grid, base, 5.0).astype(dtype)
    default = Physics()
    step = make_step(grid, default, dt)
    spin, _ = clock.compile(lambda s, p: advance(lambda x: step(x, base, p), s, spinup)[0],
                            state, parameters(default))
    state, _ = clock.run(spin, state, parameters(default))
    if shared is not None:
        shared[key] = (state, base)
    return state, base


def _stage_velocity(clock, physics, grid, state, base, dt, shared=None):
    """A stage velocity of the first step: the explicit tendency added to ``state``
    (the same for every solver of a grid: shared like the spin-up)."""
    weight = dt / 2.0
    key = (grid, state.th.dtype.name, dt, physics.advection, "stage velocity")
    if shared is not None and key in shared:
        return shared[key]

    def stage_velocity(s):
        tend = jax.tree.map(jnp.add, physics.advection.tendency(s, None, base, grid,
                                                                stage_dt=weight),
                            buoyancy(s, base))
        return jax.tree.map(lambda a, t: a + weight * t, s, tend)

    # compiled, not run op by op: eager advection would compile each operation
    star, _ = clock.run(clock.compile(stage_velocity, state)[0], state)
    if shared is not None:
        shared[key] = star
    return star


def _time_pressure(clock, physics, grid, state, base, dt, shared=None):
    """Seconds per step of the four projections of one step, each on a stage
    velocity with the explicit tendency added and the previous pi' as first
    guess, as in a step."""
    weight = dt / 2.0
    star = _stage_velocity(clock, physics, grid, state, base, dt, shared)

    def solves(s):
        out = jnp.zeros_like(s.pi)
        for _ in range(4):
            projected, _ = physics.pressure.project(s, state, base, grid, weight)
            out = out + projected.pi
        return out

    compiled, _ = clock.compile(solves, star)
    clock.run(compiled, star)  # warm
    return clock.run(compiled, star)[1]


def _time_network(clock, params, state, base, steps):
    compiled, _ = clock.compile(lambda p, s: p.sgs.correction(s, base), params, state)
    clock.run(compiled, params, state)  # warm
    return clock.run(compiled, params, state, repeat=steps)[1]


def bench_case(size: str, solver: str, *, precision="float32", steps=DEFAULT_STEPS,
               spinup=DEFAULT_SPINUP, dt=None, sgs="none", shared=None):
    """Time one grid size with one solver and subgrid scheme; returns a dict record
    (for a neural scheme also the seconds per step of the correction alone).

    ``compile_seconds`` is the compilation of the timed step program;
    ``compile_seconds_total`` and ``run_seconds_total`` split the whole case
    (spin-up, step, pressure probe, network probe) into compiling and running;
    ``cache_hits`` counts the programs loaded from the persistent cache.
    :func:`run` passes one ``shared`` dict to all its cases, so the cases of
    one grid share one spin-up, counted in the first of them."""
    grid = _grid(size)
    dtype = np.dtype(precision)
    dt = dt if dt is not None else 12.0 * min(grid.dx, grid.dz) / 400.0
    clock = Clock()
    extra = {}
    with jax.enable_x64(precision == "float64"):
        state, base = _spun_up(clock, grid, dtype, dt, spinup, shared)
        scheme = (_neural_model(grid, state, base, NEURAL[sgs]) if sgs in NEURAL
                  else scheme_from_name("sgs", sgs, {}))
        physics = Physics(pressure=PressureSolver(method=solver), sgs=scheme)
        params = parameters(physics)
        step = make_step(grid, physics, dt)
        run, compile_seconds = clock.compile(
            lambda s, p: advance(lambda x: step(x, base, p), s, steps), state, params)
        clock.run(run, state, params)  # warm
        (_, info), seconds = clock.run(run, state, params)
        per_step = seconds / steps
        pressure_seconds = _time_pressure(clock, physics, grid, state, base, dt, shared)
        if sgs in NEURAL:
            extra = {"network_seconds_per_step": _time_network(clock, params, state, base,
                                                               steps),
                     "network_parameters": scheme.parameter_count}
    iterations = float(jnp.mean(info["pressure_iterations"].astype(jnp.float32)))
    return extra | {"kind": "step", "size": size, "solver": solver, "sgs": sgs,
                    "precision": precision, "steps": steps,
                    "compile_seconds": round(compile_seconds, 3),
                    "compile_seconds_total": round(clock.compile_seconds, 3),
                    "run_seconds_total": round(clock.run_seconds, 3),
                    "cache_hits": clock.cache_hits,
                    "seconds_per_step": per_step,
                    "pressure_seconds_per_step": pressure_seconds,
                    "points_per_second": grid.points / per_step,
                    "pressure_iterations": iterations}


# --------------------------------------------------------------------------- the table


@dataclasses.dataclass(frozen=True)
class Case:
    """One row of the bench: what to time (``kind``, a key of :data:`KINDS`) and
    the options its function takes."""

    kind: str
    size: str
    sgs: str = "none"
    solver: str = "pcg"

    def label(self) -> str:
        return f"{self.size} {self.sgs} {self.solver}"


def _time_step(case: Case, *, precision, steps, spinup, shared):
    return bench_case(case.size, case.solver, precision=precision, steps=steps,
                      spinup=spinup, sgs=case.sgs, shared=shared)


#: The timing function of each kind of case, called as ``fn(case,
#: precision=..., steps=..., spinup=..., shared=...)``; it returns the case's
#: record (a dict). ``shared`` is one dict for all the cases of a run (e.g.
#: spun-up states).
KINDS = {"step": _time_step}


def cases(sizes=DEFAULT_SIZES, solvers=SOLVERS, sgs=("none",)) -> list[Case]:
    """The table of cases, in the order they run: each size with each scheme
    and each solver."""
    return [Case("step", size, scheme, solver)
            for size in sizes for scheme in sgs for solver in solvers]


def run(sizes=DEFAULT_SIZES, solvers=SOLVERS, *, precision="float32", steps=DEFAULT_STEPS,
        spinup=DEFAULT_SPINUP, report=print, sgs=("none",), start=None):
    """Benchmark every size with every solver and subgrid scheme; ``start`` gets
    each :class:`Case` (and its number and the total) before it runs,
    ``report`` each record when it is done. Returns the records."""
    table = cases(sizes, solvers, sgs)
    records, shared = [], {}
    for number, case in enumerate(table, 1):
        if start is not None:
            start(case, number, len(table))
        rec = KINDS[case.kind](case, precision=precision, steps=steps, spinup=spinup,
                               shared=shared)
        records.append(rec)
        report(rec)
    return records


# --------------------------------------------------------------------------- the command

#: (title, record key, width, format) of the columns of a progress line.
COLUMNS = (
    ("compile s", "compile_seconds_total", 9, ".2f"),
    ("run s", "run_seconds_total", 7, ".2f"),
    ("cached", "cache_hits", 6, "d"),
    ("s/step", "seconds_per_step", 8, ".4f"),
    ("pressure s/step", "pressure_seconds_per_step", 15, ".4f"),
    ("points/s", "points_per_second", 9, ".3e"),
    ("it/solve", "pressure_iterations", 8, ".1f"),
)
LABEL_WIDTH = 34


def header(*, precision, steps, spinup, count) -> str:
    """What is timed, on what, and the column titles."""
    from xlex import compilation_cache
    device = jax.devices()[0]
    cache = compilation_cache.directory()
    titles = " ".join(f"{title:>{width}}" for title, _, width, _ in COLUMNS)
    return "\n".join([
        f"xlex bench: {count} case(s), warm bubble, {precision}, {steps} timed step(s) after "
        f"{spinup} spin-up step(s)",
        f"device: {device.platform} ({device.device_kind}), {os.cpu_count()} CPU core(s); "
        f"compilation cache: {cache if cache else 'off'}",
        "compile s: all compilation of the case; run s: all running of it (spin-up, "
        "warm-up, timed steps, probes); cached: programs loaded from the cache",
        "case".ljust(LABEL_WIDTH) + titles,
    ])


def progress_label(case: Case, number: int, total: int) -> str:
    return f"[{number}/{total}] {case.label()}".ljust(LABEL_WIDTH)


def progress_line(rec: dict) -> str:
    """The measured columns of a record, and any extra timings it has."""
    cells = [f"{rec[key]:{width}{spec}}" for _, key, width, spec in COLUMNS if key in rec]
    if "network_seconds_per_step" in rec:
        cells.append(f"network {rec['network_seconds_per_step']:.4f} s/step")
    return " ".join(cells)


def summary(records: list, wall_seconds: float) -> str:
    compiled = sum(r.get("compile_seconds_total", 0.0) for r in records)
    ran = sum(r.get("run_seconds_total", 0.0) for r in records)
    hits = sum(r.get("cache_hits", 0) for r in records)
    return (f"total: compile {compiled:.1f} s ({hits} program(s) from the compilation "
            f"cache), run {ran:.1f} s, {wall_seconds:.1f} s in all")


def add_arguments(parser) -> None:
    """The options of ``xlex bench``."""
    parser.add_argument("--sizes", default=",".join(DEFAULT_SIZES),
                        help="comma-separated grid sizes NXxNYxNZ (default: %(default)s)")
    parser.add_argument("--solvers", default=",".join(SOLVERS),
                        help="comma-separated pressure solvers (default: %(default)s)")
    parser.add_argument("--sgs", default="none",
                        help="comma-separated subgrid schemes: none, smagorinsky, dynamic, "
                             "constant, neural (the default network, random weights), "
                             "neural-paper (the paper-sized network) (default: %(default)s)")
    parser.add_argument("--precision", default="float32", choices=["float32", "float64"],
                        help="(default: %(default)s)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                        help="timed steps per case (default: %(default)s)")
    parser.add_argument("--spinup", type=int, default=DEFAULT_SPINUP,
                        help="steps run before timing (default: %(default)s)")
    parser.add_argument("--json", action="store_true",
                        help="print the records as one JSON list on stdout (the header and "
                             "progress lines go to stderr)")
    parser.add_argument("--no-compilation-cache", action="store_true",
                        help="compile everything afresh: time a cold start")


def _split(text: str) -> list:
    return [s.strip() for s in text.split(",") if s.strip()]


def main(args) -> int:
    """``xlex bench``: check the options, print a header, a progress line per
    case and a total; with ``--json``, the records on stdout."""
    sizes, solvers, schemes = _split(args.sizes), _split(args.solvers), _split(args.sgs)
    for scheme in schemes:
        check_sgs(scheme)  # a misspelt option fails before anything compiles
    for size in sizes:
        parse_size(size)
    for solver in solvers:
        if solver not in SOLVERS:
            raise OptionError(f"unknown solver {solver!r}; choose from {', '.join(SOLVERS)}")
    for name, value in (("steps", args.steps), ("spinup", getattr(args, "spinup", 0))):
        if value < (1 if name == "steps" else 0):
            raise OptionError(f"--{name} must be {'>= 1' if name == 'steps' else '>= 0'}, "
                              f"got {value}")
    if getattr(args, "no_compilation_cache", False):
        from xlex import compilation_cache
        compilation_cache.disable()
    spinup = getattr(args, "spinup", DEFAULT_SPINUP)
    out = sys.stderr if args.json else sys.stdout
    count = len(cases(sizes, solvers, schemes))
    print(header(precision=args.precision, steps=args.steps, spinup=spinup, count=count),
          file=out, flush=True)
    t0 = time.perf_counter()
    records = run(sizes, solvers, precision=args.precision, steps=args.steps, spinup=spinup,
                  sgs=schemes,
                  start=lambda case, n, total: print(progress_label(case, n, total), end="",
                                                     file=out, flush=True),
                  report=lambda rec: print(progress_line(rec), file=out, flush=True))
    print(summary(records, time.perf_counter() - t0), file=out, flush=True)
    if args.json:
        print(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":  # python -m xlex.bench: the command before the CLI wires it
    import argparse
    _parser = argparse.ArgumentParser(prog="xlex bench", description=__doc__.split("\n\n")[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
