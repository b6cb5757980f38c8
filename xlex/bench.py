"""Benchmarks of the step and the pressure solve (``xlex bench``).

For each grid size, subgrid scheme and solver, on a warm bubble spun up for a
few steps so the pressure solve has real work: the seconds spent compiling
and the seconds spent running, kept apart; seconds per step; seconds per step
spent in the pressure solve; grid-point updates per second; Krylov iterations
per solve; and how many programs came from the persistent compilation cache
(:mod:`xlex.compilation_cache`), which makes a second ``xlex bench`` compile
little.

With ``--training`` (:func:`bench_training`), one step of online training
instead: an Adam update of a neural subgrid model's weights, forward and
backward through N look-ahead steps of the hybrid model (as
:func:`xlex.ml.train_online` takes it), at each look-ahead of
``--lookahead``: its compile and run seconds, and its memory from XLA's
analysis of the compiled update (and the device's peak where the device
reports one).

The cases are a table (:func:`cases`) of :class:`Case` rows, each timed by
the function :data:`KINDS` names for its ``kind``: another kind of
benchmark is one more function there, its records printed by the same
header and progress lines.
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
from xlex.core.parallel import place
from xlex.core.stepping import advance
from xlex.options import scheme_from_name
from xlex.runner import run_mesh

#: ``xlex bench`` with no options times these sizes with both solvers in
#: about a minute on a 2-core laptop CPU (docs/performance.md).
DEFAULT_SIZES = ("48x48x24", "96x96x48")
DEFAULT_STEPS = 3
DEFAULT_SPINUP = 5

#: Neural subgrid models ``xlex bench --sgs`` knows: name -> preset.
NEURAL = {"neural": "default", "neural-paper": "paper"}

#: ``xlex bench --training``: the default coarse grid, notebook 03's (16 x 16
#: x 20 cells of 600 x 600 x 400 m, its 200 m truth coarsened by 3, 3, 2); the
#: paper's coarse grid is ``40x40x40`` (600 x 600 x 300 m, as every size
#: without ``@``: a 24 x 24 x 12 km domain).
TRAINING_SIZES = ("16x16x20@600x600x400",)
#: Look-ahead steps of the training cases (the paper's curriculum ends at 12).
DEFAULT_LOOKAHEAD = (1, 3, 12)
#: Timed updates of a training case (after one warm-up update).
DEFAULT_UPDATES = 2
#: The training defaults: float64, as the paper trains (and train_online).
TRAINING_PRECISION = "float64"
SIZE_FORM = "NXxNYxNZ or NXxNYxNZ@DXxDYxDZ (cells, and cell sizes in m), e.g. 96x96x48"


def parse_size(text: str) -> tuple[int, int, int]:
    """'96x96x48' -> (96, 96, 48) as (nx, ny, nz); a cell size after ``@``
    ('16x16x20@600x600x400') is checked and left out (:func:`parse_spacing`)."""
    cells, _, spacing = text.lower().partition("@")
    try:
        nx, ny, nz = (int(p) for p in cells.split("x"))
    except ValueError:
        raise OptionError(f"size {text!r} is not of the form {SIZE_FORM}") from None
    if min(nx, ny, nz) < 1:
        raise OptionError(f"size {text!r} has a size < 1; give {SIZE_FORM}")
    parse_spacing(text)
    return nx, ny, nz


def parse_spacing(text: str) -> tuple[float, float, float] | None:
    """The cell size [m] after ``@`` in a size ('16x16x20@600x600x400' ->
    (600.0, 600.0, 400.0)), or None: a 24 x 24 x 12 km domain."""
    _, at, spacing = text.lower().partition("@")
    if not at:
        return None
    try:
        dx, dy, dz = (float(p) for p in spacing.split("x"))
    except ValueError:
        raise OptionError(f"size {text!r} is not of the form {SIZE_FORM}") from None
    if not all(np.isfinite(d) and d > 0 for d in (dx, dy, dz)):
        raise OptionError(f"size {text!r}: cell sizes must be finite and > 0 m")
    return dx, dy, dz


def parse_lookahead(text: str) -> tuple[int, ...]:
    """'1,3,12' -> (1, 3, 12); anything but integers >= 1 is refused."""
    out = []
    for part in _split(text):
        try:
            value = int(part)
        except ValueError:
            value = 0
        if value < 1:
            raise OptionError(f"--lookahead {text!r}: {part!r} is not an integer >= 1; give "
                              "comma-separated look-ahead steps, e.g. --lookahead 1,3,12")
        out.append(value)
    if not out:
        raise OptionError("--lookahead is empty; give look-ahead steps, e.g. 1,3,12")
    return tuple(out)


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
        """``jax.jit(fn)`` (or ``fn`` if jitted already) compiled for ``args``,
        and the seconds it took."""
        t0 = time.perf_counter()
        jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
        compiled = jitted.lower(*args).compile()
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
    dx, dy, dz = parse_spacing(size) or (24000.0 / nx, 24000.0 / ny, 12000.0 / nz)
    return Grid(nx=nx, ny=ny, nz=nz, dx=dx, dy=dy, dz=dz)


def _default_dt(grid) -> float:
    return 12.0 * min(grid.dx, grid.dz) / 400.0


def _spun_up(clock, grid, dtype, dt, spinup, shared=None):
    """(state, base): the 5 K bubble after ``spinup`` steps of the default
    physics, so every solver and scheme starts from the same state. With a
    ``shared`` dict, a state spun up for an earlier case of the same grid is
    reused (its cost counted in that case)."""
    key = (grid, np.dtype(dtype).name, dt, spinup)
    if shared is not None and key in shared:
        return shared[key]
    base = moist_base_state(grid).astype(dtype)
    state = warm_bubble_state(grid, base, 5.0, x_centre=grid.nx * grid.dx / 2,
                              y_centre=grid.ny * grid.dy / 2).astype(dtype)
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
               spinup=DEFAULT_SPINUP, dt=None, sgs="none", shared=None, devices=1,
               members=1):
    """Time one grid size with one solver and subgrid scheme; returns a dict record
    (for a neural scheme also the seconds per step of the correction alone).

    With ``members`` > 1 the step runs an ensemble of that many copies at once
    (vmapped, as ``integrate`` runs one), and ``points_per_second`` counts the
    points of every member; with ``devices`` > 1 the run is split over that
    many devices as ``integrate(devices=...)`` splits it (the domain along y,
    or an ensemble by members). ``bytes_per_point`` is XLA's memory of the
    compiled step program on one device (arguments, outputs and scratch) per
    grid point of the whole run, every member counted.

    ``compile_seconds`` is the compilation of the timed step program;
    ``compile_seconds_total`` and ``run_seconds_total`` split the whole case
    (spin-up, step, pressure probe, network probe) into compiling and running;
    ``cache_hits`` counts the programs loaded from the persistent cache.
    :func:`run` passes one ``shared`` dict to all its cases, so the cases of
    one grid share one spin-up, counted in the first of them."""
    grid = _grid(size)
    dtype = np.dtype(precision)
    dt = dt if dt is not None else _default_dt(grid)
    clock = Clock()
    extra = {}
    with jax.enable_x64(precision == "float64"):
        state, base = _spun_up(clock, grid, dtype, dt, spinup, shared)
        scheme = (_neural_model(grid, state, base, NEURAL[sgs]) if sgs in NEURAL
                  else scheme_from_name("sgs", sgs, {}))
        physics = Physics(pressure=PressureSolver(method=solver), sgs=scheme)
        params = parameters(physics)
        step = make_step(grid, physics, dt)
        batch = (members,) if members > 1 else ()
        mesh = run_mesh(devices, grid, batch)

        def steps_of(s, p, base):
            return advance(lambda x: step(x, base, p), s, steps)

        if members > 1:
            state = jax.tree.map(lambda a: jnp.broadcast_to(a, batch + a.shape), state)
            steps_of = jax.vmap(steps_of, in_axes=(0, None, None))
        with _mesh_of(mesh):
            if mesh is not None:
                state = place(state, mesh, batched=bool(batch))
                base = place(base, mesh, batched=False)
            run, compile_seconds = clock.compile(steps_of, state, params, base)
            clock.run(run, state, params, base)  # warm
            (_, info), seconds = clock.run(run, state, params, base)
            per_step = seconds / steps
            memory = _memory(run)
            # the projections alone, of one member
            pressure_seconds = (_time_pressure(clock, physics, grid, state, base, dt,
                                               None if mesh is not None else shared)
                                if members == 1 else float("nan"))
        if "temp_bytes" in memory:
            extra["bytes_per_point"] = (memory["temp_bytes"] + memory["argument_bytes"]
                                        + memory["output_bytes"]) / (grid.points * members)
        if sgs in NEURAL:
            extra = {"network_seconds_per_step": _time_network(clock, params, state, base,
                                                               steps),
                     "network_parameters": scheme.parameter_count}
    iterations = float(jnp.mean(info["pressure_iterations"].astype(jnp.float32)))
    return extra | {"kind": "step", "size": size, "solver": solver, "sgs": sgs,
                    "precision": precision, "steps": steps, "devices": devices,
                    "members": members,
                    "compile_seconds": round(compile_seconds, 3),
                    "compile_seconds_total": round(clock.compile_seconds, 3),
                    "run_seconds_total": round(clock.run_seconds, 3),
                    "cache_hits": clock.cache_hits,
                    "seconds_per_step": per_step,
                    "pressure_seconds_per_step": pressure_seconds,
                    "points_per_second": grid.points * members / per_step,
                    "pressure_iterations": iterations}


# --------------------------------------------------------------------------- a training step


def _trainee(grid, state, base, preset, precision, shared=None):
    """The network of :func:`_neural_model` in the training's precision (one per
    grid, preset and precision of a run: flax's initialisers compile once)."""
    key = (grid, preset, precision, "network")
    if shared is not None and key in shared:
        return shared[key]
    model = dataclasses.replace(_neural_model(grid, state, base, preset), precision=precision)
    if shared is not None:
        shared[key] = model
    return model


def _truth(clock, grid, state, base, dt, steps, shared=None):
    """``steps + 1`` states from ``state`` of the coarse model with Smagorinsky
    (a model other than the one trained, so the loss is not zero): the "truth"
    of the benchmark's windows. Only the cost of an update is timed, not the
    quality of the data. The compiled step and the states are shared by the
    cases of a grid (their cost counted in the first that needs them)."""
    key = (grid, state.th.dtype.name, dt, "truth")
    one, states = shared.get(key, (None, [state])) if shared is not None else (None, [state])
    if len(states) < steps + 1:
        if one is None:
            truth = Physics(sgs=scheme_from_name("sgs", "smagorinsky", {}))
            step = make_step(grid, truth, dt)
            params = parameters(truth)
            compiled, _ = clock.compile(lambda s, p: step(s, base, p)[0], state, params)
            one = (compiled, params)
        compiled, params = one
        states = list(states)
        while len(states) < steps + 1:
            states.append(clock.run(compiled, states[-1], params)[0])
        if shared is not None:
            shared[key] = (one, states)
    return states[:steps + 1]


def _windows(clock, grid, state, base, dt, lookahead, batch_size, shared=None):
    """``batch_size`` windows of ``lookahead + 1`` states, one step apart."""
    from xlex.ml.training import Windows
    states = _truth(clock, grid, state, base, dt, lookahead + batch_size - 1, shared)
    host = [jax.tree.map(np.asarray, s) for s in states]
    stack = [jax.tree.map(lambda *a: np.stack(a), *host[b:b + lookahead + 1])
             for b in range(batch_size)]
    bases = [jax.tree.map(np.asarray, base)] * batch_size
    return Windows(states=jax.tree.map(lambda *a: np.stack(a), *stack),
                   base=jax.tree.map(lambda *a: np.stack(a), *bases), grid=grid, dt=dt)


def _mesh_of(mesh):
    """``jax.set_mesh(mesh)``, or nothing without a mesh."""
    import contextlib
    return contextlib.nullcontext() if mesh is None else jax.set_mesh(mesh)


def _memory(compiled) -> dict:
    """What XLA's analysis of ``compiled`` says of its memory [bytes], and the
    device's peak so far where the device reports one (GPUs; not the CPU)."""
    out = {}
    analysis = compiled.memory_analysis()
    if analysis is not None:
        out = {"temp_bytes": int(analysis.temp_size_in_bytes),
               "argument_bytes": int(analysis.argument_size_in_bytes),
               "output_bytes": int(analysis.output_size_in_bytes)}
    stats = jax.devices()[0].memory_stats()
    if isinstance(stats, dict) and "peak_bytes_in_use" in stats:
        out["peak_bytes_in_use"] = int(stats["peak_bytes_in_use"])
    return out


def bench_training(size: str, lookahead: int, *, batch_size=1, precision=TRAINING_PRECISION,
                   updates=DEFAULT_UPDATES, spinup=DEFAULT_SPINUP, sgs="neural", solver="pcg",
                   dt=None, shared=None):
    """Time one step of online training; returns a dict record.

    One step is what :func:`xlex.ml.train_online` does per batch: the hybrid
    model (the dynamics with ``solver``, and a NeuralSGS of ``sgs``'s preset
    with random weights after every step) runs ``lookahead`` steps from each
    of ``batch_size`` windows (vmapped, checkpointed), the loss of eqs. 22-26
    and its gradient with respect to every weight are taken through the
    pressure solves, and Adam updates the weights: the very program
    ``train_online`` compiles (:func:`xlex.ml.training._compiled`). The windows
    are states of the 5 K bubble after ``spinup`` steps and the steps after it.

    ``compile_seconds`` is the compilation of the update, ``seconds_per_update``
    the mean of ``updates`` updates after a warm-up one; ``temp_bytes``,
    ``argument_bytes`` and ``output_bytes`` are XLA's analysis of the compiled
    update (its scratch memory, its inputs and its outputs), ``peak_bytes_in_use``
    the device's peak in this process so far, where the device reports it (on a
    GPU, not the CPU; cases run in order, so it includes earlier ones). XLA's
    ``peak_memory_in_bytes`` is left out: on the CPU it came out below the
    scratch memory alone.
    """
    from xlex.ml import training
    grid = _grid(size)
    dtype = np.dtype(precision)
    dt = dt if dt is not None else _default_dt(grid)
    clock = Clock()
    with jax.enable_x64(precision == "float64"):
        state, base = _spun_up(clock, grid, dtype, dt, spinup, shared)
        model = _trainee(grid, state, base, NEURAL[sgs], precision, shared)
        windows = _windows(clock, grid, state, base, dt, lookahead, batch_size, shared)
        schedule = training.check_schedule(lookahead=lookahead, epochs=1,
                                           learning_rate=(1e-3, 1e-6), batch_size=batch_size,
                                           precision=precision, seed=0)
        problem = training.network_problem(
            Physics(pressure=PressureSolver(method=solver), sgs=model))
        engine = training._Engine(problem, windows, schedule, total_steps=updates + 1)
        args = (engine.moving, engine.optimiser.init(engine.moving), engine.fixed,
                engine.scales, *engine.batch(windows, np.arange(batch_size), lookahead))
        update, compile_seconds = clock.compile(engine.update(lookahead), *args)
        (moving, opt_state, terms), _ = clock.run(update, *args)  # warm
        timed = 0.0
        for _ in range(updates):  # the weights move as in training
            (moving, opt_state, terms), seconds = clock.run(update, moving, opt_state,
                                                            *args[2:])
            timed += seconds
        memory = _memory(update)  # after running: the device's peak includes the updates
    loss = float(terms["total"])
    if not np.isfinite(loss):
        raise training.TrainingDivergedError(
            f"bench --training {size} look-ahead {lookahead}: the loss is {loss}")
    return memory | {
        "kind": "training", "size": size, "lookahead": lookahead, "batch_size": batch_size,
        "sgs": sgs, "solver": solver, "precision": precision, "dt": dt,
        "updates": updates, "network_parameters": model.parameter_count,
        "compile_seconds": round(compile_seconds, 3),
        "compile_seconds_total": round(clock.compile_seconds, 3),
        "run_seconds_total": round(clock.run_seconds, 3),
        "cache_hits": clock.cache_hits, "seconds_per_update": timed / updates, "loss": loss}


# --------------------------------------------------------------------------- the table


@dataclasses.dataclass(frozen=True)
class Case:
    """One row of the bench: what to time (``kind``, a key of :data:`KINDS`) and
    the options its function takes (``lookahead`` and ``batch_size``: a
    training step's)."""

    kind: str
    size: str
    sgs: str = "none"
    solver: str = "pcg"
    lookahead: int = 0
    batch_size: int = 1
    devices: int = 1
    members: int = 1

    def label(self) -> str:
        if self.kind == "training":
            return f"{self.size} {self.sgs} N={self.lookahead} batch {self.batch_size}"
        spread = (f" {self.members}m" if self.members > 1 else "") + (
            f" {self.devices}dev" if self.devices > 1 else "")
        return f"{self.size} {self.sgs} {self.solver}{spread}"


def _time_step(case: Case, *, precision, steps, spinup, shared):
    return bench_case(case.size, case.solver, precision=precision, steps=steps,
                      spinup=spinup, sgs=case.sgs, shared=shared, devices=case.devices,
                      members=case.members)


def _time_training(case: Case, *, precision, steps, spinup, shared):
    """``steps`` is the number of timed updates."""
    return bench_training(case.size, case.lookahead, batch_size=case.batch_size,
                          precision=precision, updates=steps, spinup=spinup, sgs=case.sgs,
                          solver=case.solver, shared=shared)


#: The timing function of each kind of case, called as ``fn(case,
#: precision=..., steps=..., spinup=..., shared=...)``; it returns the case's
#: record (a dict). ``shared`` is one dict for all the cases of a run (e.g.
#: spun-up states).
KINDS = {"step": _time_step, "training": _time_training}


def cases(sizes=DEFAULT_SIZES, solvers=SOLVERS, sgs=("none",), *, lookahead=None,
          batch_size=1, devices=(1,), members=(1,)) -> list[Case]:
    """The table of cases, in the order they run: each size with each scheme
    and each solver (and each count of members and of devices); with
    ``lookahead`` (a sequence), training steps at each look-ahead of each."""
    if lookahead is None:
        return [Case("step", size, scheme, solver, devices=d, members=m)
                for size in sizes for scheme in sgs for solver in solvers
                for m in members for d in devices]
    return [Case("training", size, scheme, solver, n, batch_size)
            for size in sizes for scheme in sgs for solver in solvers for n in lookahead]


def run(sizes=DEFAULT_SIZES, solvers=SOLVERS, *, precision="float32", steps=DEFAULT_STEPS,
        spinup=DEFAULT_SPINUP, report=print, sgs=("none",), start=None, lookahead=None,
        batch_size=1, devices=(1,), members=(1,)):
    """Benchmark every size with every solver and subgrid scheme (with
    ``lookahead``, a training step at each look-ahead); ``start`` gets each
    :class:`Case` (and its number and the total) before it runs, ``report``
    each record when it is done. Returns the records."""
    table = cases(sizes, solvers, sgs, lookahead=lookahead, batch_size=batch_size,
                  devices=devices, members=members)
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
    ("bytes/point", "bytes_per_point", 11, ".0f"),
)
MB = 1e-6
#: The columns of a training step: (title, key, width, format, scale).
TRAINING_COLUMNS = (
    ("compile s", "compile_seconds_total", 9, ".2f", 1),
    ("run s", "run_seconds_total", 7, ".2f", 1),
    ("cached", "cache_hits", 6, "d", 1),
    ("s/update", "seconds_per_update", 9, ".3f", 1),
    ("temp MB", "temp_bytes", 8, ".1f", MB),
    ("args MB", "argument_bytes", 8, ".1f", MB),
    ("device peak MB", "peak_bytes_in_use", 14, ".1f", MB),
)
LABEL_WIDTH = 34
TRAINING_LABEL_WIDTH = 42


def _columns(kind):
    if kind == "training":
        return TRAINING_COLUMNS
    return tuple((*c, 1) for c in COLUMNS)


def header(*, precision, steps, spinup, count, kind="step", batch_size=1) -> str:
    """What is timed, on what, and the column titles."""
    from xlex import compilation_cache
    device = jax.devices()[0]
    cache = compilation_cache.directory()
    titles = " ".join(f"{c[0]:>{c[2]}}" for c in _columns(kind))
    if kind == "training":
        what = (f"xlex bench --training: {count} case(s), one Adam update of a neural subgrid "
                f"model through N look-ahead steps of the hybrid model (forward and backward), "
                f"{precision}, batch {batch_size}, {steps} timed update(s) after a warm-up one, "
                f"warm bubble after {spinup} spin-up step(s)")
        legend = ("compile s: all compilation of the case; run s: all running of it (spin-up, "
                  "truth, warm-up, timed updates); temp/args MB: XLA's scratch and argument "
                  "memory of the compiled update; device peak: the device's peak so far, "
                  "where it reports one (GPU)")
        width = TRAINING_LABEL_WIDTH
    else:
        what = (f"xlex bench: {count} case(s), warm bubble, {precision}, {steps} timed step(s) "
                f"after {spinup} spin-up step(s)")
        legend = ("compile s: all compilation of the case; run s: all running of it (spin-up, "
                  "warm-up, timed steps, probes); cached: programs loaded from the cache")
        width = LABEL_WIDTH
    return "\n".join([
        what,
        f"device: {device.platform} ({device.device_kind}), {os.cpu_count()} CPU core(s); "
        f"compilation cache: {cache if cache else 'off'}",
        legend,
        "case".ljust(width) + titles,
    ])


def progress_label(case: Case, number: int, total: int) -> str:
    width = TRAINING_LABEL_WIDTH if case.kind == "training" else LABEL_WIDTH
    return f"[{number}/{total}] {case.label()}".ljust(width)


def progress_line(rec: dict) -> str:
    """The measured columns of a record (blank where it has none), and any extra
    timings it has."""
    cells = []
    for _, key, width, spec, scale in _columns(rec.get("kind")):
        if key in rec:
            value = rec[key] * scale if scale != 1 else rec[key]
            cells.append(f"{value:{width}{spec}}")
        elif rec.get("kind") == "training":
            cells.append(f"{'-':>{width}}")
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
    parser.add_argument("--training", action="store_true",
                        help="time one step of online training instead of a model step: an "
                             "Adam update of a neural subgrid model through N look-ahead "
                             "steps (forward and backward), with its memory")
    parser.add_argument("--sizes", default=None,
                        help=f"comma-separated grid sizes NXxNYxNZ, in a 24 x 24 x 12 km "
                             f"domain, or NXxNYxNZ@DXxDYxDZ with cell sizes in m (default: "
                             f"{','.join(DEFAULT_SIZES)}); with --training (default: "
                             f"{','.join(TRAINING_SIZES)}), the coarse grid of "
                             "notebook 03; the paper's coarse grid is 40x40x40, "
                             "600 x 600 x 300 m")
    parser.add_argument("--solvers", default=None,
                        help=f"comma-separated pressure solvers (default: {','.join(SOLVERS)}); "
                             f"with --training (default: {SOLVERS[0]})")
    parser.add_argument("--sgs", default=None,
                        help="comma-separated subgrid schemes: none, smagorinsky, dynamic, "
                             "constant, neural (the default network, random weights), "
                             "neural-paper (the paper-sized network) (default: none); with "
                             "--training, which trains a network (default: neural)")
    parser.add_argument("--lookahead", default=None,
                        help="with --training: comma-separated look-ahead steps (default: "
                             f"{','.join(map(str, DEFAULT_LOOKAHEAD))})")
    parser.add_argument("--batch-size", default=None,
                        help="with --training: windows per update (vmapped) (default: 1)")
    parser.add_argument("--precision", default=None, choices=["float32", "float64"],
                        help=f"(default: float32); with --training (default: "
                             f"{TRAINING_PRECISION})")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"timed steps per case (default: {DEFAULT_STEPS}); with "
                             f"--training, timed updates after a warm-up one (default: "
                             f"{DEFAULT_UPDATES})")
    parser.add_argument("--spinup", type=int, default=DEFAULT_SPINUP,
                        help="steps run before timing (default: %(default)s)")
    parser.add_argument("--devices", default=None,
                        help="comma-separated device counts to split each run over (the "
                             "domain along y; an ensemble by members) (default: 1)")
    parser.add_argument("--members", default=None,
                        help="comma-separated ensemble sizes: each case runs that many "
                             "members at once; points/s counts them all (default: 1)")
    parser.add_argument("--json", action="store_true",
                        help="print the records as one JSON list on stdout (the header and "
                             "progress lines go to stderr)")
    parser.add_argument("--no-compilation-cache", action="store_true",
                        help="compile everything afresh: time a cold start")


def _split(text: str) -> list:
    return [s.strip() for s in text.split(",") if s.strip()]


def _batch_size(text) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = 0
    if value < 1:
        raise OptionError(f"--batch-size {text!r} is not an integer >= 1; give the windows "
                          "per update, e.g. --batch-size 2")
    return value


def _counts(text, flag) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in _split(text))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise OptionError(f"{flag} {text!r} is not a comma-separated list of integers >= 1, "
                          f"e.g. {flag} 1,2")
    return values


def _spread(given, training, sizes):
    """The checked ``--devices`` and ``--members`` (each size must split over
    each device count, as integrate checks it)."""
    devices = _counts(given("devices"), "--devices") if given("devices") else (1,)
    members = _counts(given("members"), "--members") if given("members") else (1,)
    if training and (devices != (1,) or members != (1,)):
        raise OptionError("--devices and --members time model steps; drop them with "
                          "--training (use --batch-size for windows per update)")
    for size in sizes:
        for d in devices:
            for m in members:
                try:
                    run_mesh(d, _grid(size), (m,) if m > 1 else ())
                except OptionError as err:
                    raise OptionError(f"--sizes {size} --devices {d} --members {m}: "
                                      f"{err}") from None
    return devices, members


def _options(args) -> dict:
    """The checked options of ``xlex bench``, the defaults of its kind filled in;
    every refusal (an OptionError naming the option and the fix) comes here,
    before anything compiles."""
    training = bool(getattr(args, "training", False))
    given = lambda name: getattr(args, name, None)  # noqa: E731
    if not training:
        for name in ("lookahead", "batch_size"):
            if given(name) is not None:
                flag = "--" + name.replace("_", "-")
                raise OptionError(f"{flag} sets a training step: add --training "
                                  f"(xlex bench --training {flag} {given(name)})")
    sizes = _split(given("sizes")) if given("sizes") else list(
        TRAINING_SIZES if training else DEFAULT_SIZES)
    solvers = _split(given("solvers")) if given("solvers") else list(
        SOLVERS[:1] if training else SOLVERS)
    schemes = _split(given("sgs")) if given("sgs") else ["neural" if training else "none"]
    for scheme in schemes:
        if training and scheme not in NEURAL:
            raise OptionError(f"--sgs {scheme!r}: a training step trains a network; choose "
                              f"{' or '.join(NEURAL)}")
        check_sgs(scheme)  # a misspelt option fails before anything compiles
    for size in sizes:
        try:
            _grid(size)  # its form, and a grid xlex takes (no compiling)
        except OptionError as err:
            raise OptionError(f"--sizes {size}: {err}") from None
    for solver in solvers:
        if solver not in SOLVERS:
            raise OptionError(f"unknown solver {solver!r}; choose from {', '.join(SOLVERS)}")
    steps = given("steps") if given("steps") is not None else (
        DEFAULT_UPDATES if training else DEFAULT_STEPS)
    spinup = given("spinup") if given("spinup") is not None else DEFAULT_SPINUP
    for name, value in (("steps", steps), ("spinup", spinup)):
        if value < (1 if name == "steps" else 0):
            raise OptionError(f"--{name} must be {'>= 1' if name == 'steps' else '>= 0'}, "
                              f"got {value}")
    devices, members = _spread(given, training, sizes)
    options = {"sizes": sizes, "solvers": solvers, "sgs": schemes, "steps": steps,
               "spinup": spinup, "devices": devices, "members": members,
               "precision": given("precision") or (TRAINING_PRECISION if training
                                                   else "float32")}
    if training:
        from xlex.ml.network import PRESETS
        lookahead = parse_lookahead(given("lookahead") or ",".join(map(str, DEFAULT_LOOKAHEAD)))
        batch_size = _batch_size(given("batch_size") if given("batch_size") is not None else 1)
        for size in sizes:  # a grid the network cannot take
            nx, ny, nz = parse_size(size)
            for scheme in schemes:
                try:
                    PRESETS[NEURAL[scheme]].check_shape((nz, ny, nx))
                except OptionError as err:
                    raise OptionError(f"--sizes {size} with --sgs {scheme}: {err}") from None
        options |= {"lookahead": lookahead, "batch_size": batch_size}
    return options


def main(args) -> int:
    """``xlex bench``: check the options, print a header, a progress line per
    case and a total; with ``--json``, the records on stdout."""
    opts = _options(args)
    if getattr(args, "no_compilation_cache", False):
        from xlex import compilation_cache
        compilation_cache.disable()
    out = sys.stderr if args.json else sys.stdout
    training = "lookahead" in opts
    count = len(cases(opts["sizes"], opts["solvers"], opts["sgs"],
                      lookahead=opts.get("lookahead"), devices=opts["devices"],
                      members=opts["members"]))
    print(header(precision=opts["precision"], steps=opts["steps"], spinup=opts["spinup"],
                 count=count, kind="training" if training else "step",
                 batch_size=opts.get("batch_size", 1)), file=out, flush=True)
    t0 = time.perf_counter()
    records = run(opts["sizes"], opts["solvers"], precision=opts["precision"],
                  steps=opts["steps"], spinup=opts["spinup"], sgs=opts["sgs"],
                  lookahead=opts.get("lookahead"), batch_size=opts.get("batch_size", 1),
                  devices=opts["devices"], members=opts["members"],
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
