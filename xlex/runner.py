"""Integrates a contract Dataset: checks, converts, runs the compiled loop, converts back.

This is the edge behind ``ds.lex.integrate``: the core never sees xarray.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time as _time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from tqdm import tqdm

from xlex import interrupt
from xlex.core import parallel
from xlex.core.errors import (
    BlowUpError,
    CFLError,
    OptionError,
    OptionTypeError,
    XlexError,
)
from xlex.core.model import Physics, make_diagnostics, make_step, parameters
from xlex.core.operators import centred_winds
from xlex.core.physics.scheme import check_choice
from xlex.core.state import BaseState, State
from xlex.core.stepping import advance
from xlex.io.convert import dataset_to_inputs, states_to_dataset
from xlex.io.store import (
    StoreError,
    ZarrStore,
    check_not_open,
    check_target,
    complete_records,
    is_zarr,
    make_store,
    open_store,
    open_store_lazily,
    store_lock,
)
from xlex.options import (
    LEGACY_OPTIONS,
    SLOTS,
    physics_attrs,
    recorded_physics,
    resolve_physics,
)
from xlex.timeparse import to_seconds, whole_multiple

#: Floating-point precisions of a run.
PRECISIONS = ("float32", "float64")
#: The prognostic fields of a state.
FIELDS = ("u", "v", "w", "th", "qv", "pi")

#: Largest sum of directional Courant numbers ``dt (|u|/dx + |v|/dy + |w|/dz)`` for which
#: SSPRK3(4) with fifth-order upwind advection is linearly stable (about 1.7 in 1-D),
#: with a small margin.
COURANT_LIMIT = 1.6


def courant_number(u, v, w, grid, dt, xp=np):
    """Largest ``dt (|u|/dx + |v|/dy + |w|/dz)`` over the domain, speeds at centres
    (the mean of the speeds on the two faces of each cell)."""

    uc, vc, wc = centred_winds(xp.abs(u), xp.abs(v), xp.abs(w), xp)
    return dt * xp.max(uc / grid.dx + vc / grid.dy + wc / grid.dz)


def _floor_significant(x, digits=3):
    """``x`` rounded down to ``digits`` significant digits (a dt that is surely safe)."""
    scale = 10.0 ** (math.floor(math.log10(x)) - digits + 1)
    return float(f"{math.floor(x / scale) * scale:.{digits}g}")


#: What the written Dataset says of the equations and boundaries.
MODEL_ATTRS = {
    "boundary_conditions": "periodic in x and y; rigid free-slip walls at bottom and top",
    "equations": "Durran (2008) pseudo-incompressible, moist (density potential temperature)",
}


def _run_attrs(ds_attrs, physics: Physics, precision, dt, duration, output_every) -> dict:
    """The input's attributes (less the flat options of xlex 0.1, which the
    physics attribute replaces), the physics and the run's settings."""
    attrs = {k: v for k, v in ds_attrs.items()
             if not (k.startswith("xlex_") and k[5:] in LEGACY_OPTIONS)}
    attrs.update(physics_attrs(physics))
    attrs.update(MODEL_ATTRS)
    attrs.update({"xlex_dt": dt, "xlex_duration": duration, "xlex_output_every": output_every,
                  "xlex_precision": precision,
                  "coriolis_parameter": float(physics.rotation.f) if physics.rotation else 0.0})
    return attrs


def integrate(ds: xr.Dataset, duration, *, store=None, overwrite=False, _append_at=None,
              **options) -> xr.Dataset:
    """Integrate the state in ``ds`` forward in time. See
    :meth:`xlex.accessor.LexAccessor.integrate`.

    A new store is written under its writer lock (:func:`xlex.io.store.store_lock`),
    taken before anything compiles: a second writer of the same store (another
    process, or a resume of it) is refused with StoreLockedError. :func:`resume`
    holds the lock itself."""
    if store is None or _append_at is not None:
        return _integrate(ds, duration, store=store, _append_at=_append_at, **options)
    store = check_target(store, overwrite)
    with store_lock(store):
        check_not_open(store)
        return _integrate(ds, duration, store=store, _append_at=None, **options)


def _integrate(ds: xr.Dataset, duration, *, dt, output_every, physics=None,
               precision="float32", progress=True, store=None, _append_at=None,
               devices=None, **options) -> xr.Dataset:
    if not isinstance(progress, (bool, np.bool_)):  # "no" would be taken as true
        raise OptionTypeError(f"progress must be True or False, got {progress!r}")
    duration_s = to_seconds(duration, "duration")
    dt_s = to_seconds(dt, "dt")
    every_s = to_seconds(output_every, "output_every")
    n_outputs = whole_multiple(duration_s, every_s, "duration", "output_every")
    steps_per_output = whole_multiple(every_s, dt_s, "output_every", "dt")
    check_choice("integrate", "precision", precision, PRECISIONS)
    slots = {k: options.pop(k) for k in SLOTS if k in options}
    # physics=... replaces the record whole, so a bad record does not matter then
    given = physics is not None or not isinstance(ds, xr.Dataset)
    recorded = None if given else recorded_physics(ds.attrs)
    physics = resolve_physics(recorded, physics=physics, shorthand=options, **slots)
    inputs = dataset_to_inputs(ds)
    physics.check(inputs.grid)
    mesh = run_mesh(devices, inputs.grid, inputs.batch_shape)
    _check_courant(inputs, dt_s)
    _warn_dt_for_flow(inputs, dt_s, duration_s)
    run = Run(inputs=inputs, physics=physics, dtype=np.dtype(precision), dt=dt_s,
              every=every_s, n_outputs=n_outputs, steps_per_output=steps_per_output,
              attrs=_run_attrs(ds.attrs, physics, precision, dt_s, duration_s, every_s),
              mesh=mesh)
    if _append_at is None:
        run.attrs["xlex_start_time"] = inputs.time
    else:  # the store's planned duration now runs to the end of this extension
        start = float(run.attrs.get("xlex_start_time", 0.0))
        run.attrs["xlex_duration"] = inputs.time + duration_s - start
    with jax.enable_x64(precision == "float64"):
        return _run(run, progress, store, _append_at)


#: Fewest rows of cells a device's slab may hold: the WENO stencil reaches three
#: cells beyond a face, so a thinner slab would need its neighbours' neighbours.
MIN_SLAB_ROWS = 3


def run_mesh(devices, grid, batch_shape):
    """The mesh that splits a run over ``devices`` (None: one device, no mesh).

    ``devices`` is a number of devices (the first of ``jax.devices()``) or a
    sequence of jax devices. A single run is split into slabs along y (``ny``
    must divide into slabs of at least :data:`MIN_SLAB_ROWS` rows); an ensemble
    by members (their number must divide over the devices). Checked before
    anything compiles, naming the device counts that work.
    """
    if devices is None:
        return None
    available = jax.devices()
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if devices < 1:
            raise OptionError(f"devices={devices} must be >= 1 (a number of devices, or a list "
                              "of jax devices)")
        if devices > len(available):
            raise OptionError(
                f"devices={devices} but only {len(available)} {available[0].platform} "
                f"device(s) are available: use devices <= {len(available)} (on a CPU, "
                f"XLA_FLAGS=--xla_force_host_platform_device_count={devices} set before jax "
                "is imported makes that many for testing)")
        chosen = available[:devices]
    elif isinstance(devices, (list, tuple)) and devices and all(
            isinstance(d, jax.Device) for d in devices):
        chosen = list(devices)
        if len(set(chosen)) != len(chosen):
            raise OptionError("devices lists a device twice; give each device once")
    else:
        raise OptionTypeError(f"devices must be a number of devices or a list of jax devices "
                              f"(jax.devices()), got {devices!r}")
    n = len(chosen)
    if n == 1:
        return None
    limit = len(available)
    if batch_shape:
        members = int(np.prod(batch_shape))
        works = [d for d in range(1, min(members, limit) + 1) if members % d == 0]
        if members % n:
            raise OptionError(f"an ensemble of {members} members does not divide over {n} "
                              f"devices; devices that work here: {works}")
        return parallel.make_mesh(chosen, parallel.MEMBER_AXIS)
    works = [d for d in range(1, min(grid.ny, limit) + 1)
             if grid.ny % d == 0 and grid.ny // d >= MIN_SLAB_ROWS]
    if grid.ny % n or grid.ny // n < MIN_SLAB_ROWS:
        raise OptionError(f"the domain's ny = {grid.ny} rows do not split over {n} devices into "
                          f"equal slabs of at least {MIN_SLAB_ROWS} rows; devices that work "
                          f"here: {works}")
    return parallel.make_mesh(chosen, parallel.DOMAIN_AXIS)


def _check_courant(inputs, dt_s):
    courant = courant_number(inputs.state["u"], inputs.state["v"], inputs.state["w"],
                             inputs.grid, dt_s)
    if courant > COURANT_LIMIT:
        safe = _floor_significant(dt_s * COURANT_LIMIT / courant)
        raise CFLError(
            f"dt = {dt_s:g} s breaks the CFL limit for the initial state: the Courant number "
            f"dt (|u|/dx + |v|/dy + |w|/dz) is {courant:.3g} > {COURANT_LIMIT}; use dt <= "
            f"{safe!r} s (and mind that the flow may speed up)")


def _warn_dt_for_flow(inputs, dt_s, duration_s=None):
    """Warn (RuntimeWarning) when dt suits the initial state but not the flow its
    buoyancy will make (:func:`xlex.io.plausible.buoyant_speed`): such a run passes
    :func:`_check_courant` at rest and blows up minutes later. A run of
    ``duration_s`` too short for that flow to come is not warned: no air gains
    more speed than the largest buoyancy gives it in that time."""
    from xlex.io.plausible import buoyant_speed
    flow = buoyant_speed(inputs)
    rate = flow.courant_rate
    if duration_s is not None:
        grid = inputs.grid
        wind = max(float(np.max(np.abs(inputs.state[k]))) for k in ("u", "v", "w"))
        reachable = (wind + flow.max_buoyancy * duration_s) / min(grid.dx, grid.dy, grid.dz)
        rate = min(rate, reachable)
    expected = dt_s * rate
    if expected <= COURANT_LIMIT:
        return
    safe = _floor_significant(COURANT_LIMIT / rate, 2)
    grid = inputs.grid
    warnings.warn(
        f"dt = {dt_s:g} s suits the initial state but likely not the flow it will make: its "
        f"buoyancy (up to {flow.max_buoyancy:.2g} m s-2) should drive speeds near "
        f"{rate * min(grid.dx, grid.dy, grid.dz):.0f} m/s (an estimate "
        f"calibrated on xlex runs), a Courant number near {expected:.2g} > {COURANT_LIMIT}: "
        f"the run would likely blow up. Use dt <= {safe:g} s", RuntimeWarning, stacklevel=5)


@dataclasses.dataclass
class Run:
    """What one call of :func:`integrate` runs, checked."""

    inputs: object
    physics: Physics
    dtype: np.dtype
    dt: float
    every: float
    n_outputs: int
    steps_per_output: int
    attrs: dict
    mesh: object = None  # a jax.sharding.Mesh splitting the run over devices, or None

    @property
    def batch_shape(self):
        return self.inputs.batch_shape

    @property
    def batched(self) -> bool:
        return bool(self.inputs.batch_shape)


#: Compiled output chunks and diagnostics, by configuration (see :func:`compiled_chunk`).
_COMPILED: dict = {}


def compiled_chunk(grid, physics: Physics, dt, steps, batched, mesh=None):
    """The jitted ``chunk(state, base, params)`` that advances ``steps`` steps and
    returns (state, sum, count and max of the pressure iterations, largest relative
    residual of the pressure solves, whether any solve broke down, finite flags,
    Courant number): one per (grid, structure of the physics, dt, steps, batching,
    mesh), kept for the process so that a second run of a configuration compiles
    nothing. With a mesh it must be called under ``jax.set_mesh(mesh)`` with inputs
    placed by :func:`xlex.core.parallel.place`.

    The iterations are summed, not averaged, so that an output interval run as
    several chunks (see :func:`plan_chunks`) reports the same mean, bit for bit."""
    key = ("chunk", make_step, grid, jax.tree.structure(physics), dt, steps, batched, mesh)
    if key in _COMPILED:
        return _COMPILED[key]
    step = make_step(grid, physics, dt)

    def chunk(state, base, params):
        state, info = advance(lambda s: step(s, base, params), state, steps)
        its = info["pressure_iterations"]
        finite = jnp.stack([jnp.all(jnp.isfinite(getattr(state, n))) for n in FIELDS])
        cfl = courant_number(state.u, state.v, state.w, grid, dt, jnp)
        dtype = state.th.dtype
        solves = SolveSummary(jnp.sum(its.astype(dtype)), jnp.asarray(its.size, dtype),
                              jnp.max(its), jnp.max(info["pressure_residual"]),
                              jnp.any(info["pressure_breakdown"]))
        return state, solves, finite, cfl

    if batched:
        chunk = jax.vmap(chunk, in_axes=(0, None, None))
    _COMPILED[key] = jax.jit(chunk)
    return _COMPILED[key]


class SolveSummary(NamedTuple):
    """The pressure solves of a stretch of steps: iterations summed (exact whole
    numbers, so that an interval run as several chunks gives the mean of one scan,
    bit for bit), their count and largest, the largest true relative residual
    ||b - A pi'|| / ||b|| and whether any Krylov recurrence broke down."""

    iterations: Any
    solves: Any
    most_iterations: Any
    residual: Any
    breakdown: Any

    def merge(self, other: SolveSummary) -> SolveSummary:
        """The summary of this stretch followed by ``other`` (numpy, on the host)."""
        return SolveSummary(self.iterations + np.asarray(other.iterations),
                            self.solves + np.asarray(other.solves),
                            np.maximum(self.most_iterations, np.asarray(other.most_iterations)),
                            np.maximum(self.residual, np.asarray(other.residual)),
                            self.breakdown | np.asarray(other.breakdown))

    @classmethod
    def empty(cls) -> SolveSummary:
        return cls(0, 0, 0, 0.0, False)

    @property
    def mean_iterations(self):
        return self.iterations / self.solves


def compiled_diagnostics(grid, physics: Physics, batched, mesh=None):
    """The jitted ``diagnose(state, base, params)`` of the physics' output fields
    (an empty dict when no scheme writes any), kept like :func:`compiled_chunk`."""
    key = ("diagnostics", grid, jax.tree.structure(physics), batched, mesh)
    if key not in _COMPILED:
        diagnose = make_diagnostics(grid, physics)
        if diagnose is None:
            _COMPILED[key] = lambda state, base, params: {}
        else:
            if batched:
                diagnose = jax.vmap(diagnose, in_axes=(0, None, None))
            _COMPILED[key] = jax.jit(diagnose)
    return _COMPILED[key]


def _device_inputs(run: Run):
    """(state, base) as arrays of the run's dtype, the batch dims flattened to one."""
    inputs = run.inputs
    lead = len(run.batch_shape)
    flat = (int(np.prod(run.batch_shape)),) if run.batched else ()
    state = State(**{k: jnp.asarray(inputs.state[k].reshape(flat + inputs.state[k].shape[lead:]),
                                    run.dtype) for k in FIELDS})
    base = BaseState(**{k: jnp.asarray(v, run.dtype) for k, v in inputs.base.items()})
    if run.mesh is not None:
        state = parallel.place(state, run.mesh, batched=run.batched)
        base = parallel.place(base, run.mesh, batched=False)
    return state, base


def _to_host(a) -> np.ndarray:
    """``a`` as one numpy array in this process: a field split over the devices of
    several hosts (``jax.distributed``) is gathered from all of them first."""
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return np.asarray(a)


class Records:
    """The records of a run, as numpy arrays, and the Dataset they make."""

    def __init__(self, run: Run):
        self.run = run
        self.fields, self.solves, self.times = [], [], []

    def add(self, state, diagnostics, solves: SolveSummary | None, time):
        """Add the record at ``time``; ``solves`` of the interval before it (None for
        the initial record, which no solve made)."""
        shape = self.run.batch_shape
        lead = 1 if self.run.batched else 0
        arrays = {k: getattr(state, k) for k in FIELDS} | dict(diagnostics)
        self.fields.append({k: _to_host(a).reshape(shape + a.shape[lead:])
                            for k, a in arrays.items()})
        if solves is None:
            self.solves.append((np.zeros(shape), np.zeros(shape)))
        else:
            self.solves.append((np.asarray(solves.mean_iterations).reshape(shape),
                                np.asarray(solves.residual).reshape(shape)))
        self.times.append(time)

    def __len__(self):
        return len(self.times)

    def keep(self, n):
        """Drop all but the first ``n`` records (at least the initial one)."""
        n = max(1, n)
        del self.fields[n:], self.solves[n:], self.times[n:]

    def release(self):
        """Let go of the fields of every record (a store holds them), so that a run's
        memory does not grow with its number of outputs; their times stay."""
        self.fields = [None] * len(self.fields)

    @property
    def held(self) -> int:
        """How many records' fields are in memory."""
        return sum(f is not None for f in self.fields)

    def dataset(self, status, first=0) -> xr.Dataset:
        inputs = self.run.inputs
        fields = {k: np.stack([r[k] for r in self.fields[first:]]) for k in self.fields[first]}
        lead = ("time",) + tuple(inputs.batch_dims)
        iterations, residuals = zip(*self.solves[first:], strict=True)
        extra = {"pressure_iterations": (lead, np.stack(iterations),
                                         {"units": "1", "long_name": "mean pressure-solver "
                                          "iterations per solve since the previous output"}),
                 "pressure_residual": (lead, np.stack(residuals).astype(self.run.dtype), {
                     "units": "1", "long_name": "largest relative residual of the pressure "
                     "solves since the previous output: the divergence left by a projection "
                     "over the divergence it removed, ||b - A pi'|| / ||b|| (at most the "
                     "solver's tolerance)"})}
        for name, (dims, vattrs) in self.run.physics.outputs.items():
            if name in fields:
                extra[name] = (lead + dims, fields.pop(name), dict(vattrs))
        return states_to_dataset(
            fields, inputs.base, inputs.coords, np.asarray(self.times[first:]),
            batch_dims=inputs.batch_dims, attrs={**self.run.attrs, "xlex_status": status},
            extra=extra)


#: Cell-steps per second of a float32 step (upwind/WENO advection, PCG pressure
#: solve, no subgrid scheme) measured with ``xlex bench`` on a shared 2-core CPU:
#: 1.5e6 at 30x30x15, 2.2e6 to 2.5e6 at 60x60x30, 1.7e6 at 120x120x60. The low
#: end, so that estimates of run time err long rather than short.
CPU_CELL_STEPS_PER_SECOND = 1.5e6
#: Aim for a progress-bar update (one compiled chunk of steps) this often [s].
PROGRESS_SECONDS = 2.0
#: Warn before a run whose estimated duration on a CPU exceeds this [s].
WARN_RUN_SECONDS = 600.0


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
    """How an output interval is run: ``calls`` calls of a compiled chunk of ``steps`` steps."""

    steps: int
    calls: int


def estimated_seconds_per_step(run: Run):
    """A rough wall time of one step on this machine's CPU [s], from the number of
    cells (ensemble members included) and :data:`CPU_CELL_STEPS_PER_SECOND`; None
    on a GPU or TPU, for which xlex has no calibration."""
    if jax.default_backend() != "cpu":
        return None
    grid = run.inputs.grid
    cells = grid.nx * grid.ny * grid.nz * int(np.prod(run.batch_shape, dtype=int))
    slower = 1.5 if run.dtype == np.float64 else 1.0  # float64 moves twice the bytes
    return cells * slower / CPU_CELL_STEPS_PER_SECOND


def plan_chunks(run: Run, seconds_per_step=None) -> ChunkPlan:
    """Split each output interval into equal compiled chunks of about
    :data:`PROGRESS_SECONDS` each, so that the progress bar moves every few
    seconds even when an output interval takes minutes. A chunk of k steps
    called n times gives the records of one scan of n k steps bit for bit
    (tests/test_runner.py), so the split changes nothing but the bar."""
    n = run.steps_per_output
    if not seconds_per_step:
        return ChunkPlan(steps=n, calls=1)
    fits = [k for k in range(1, n + 1) if n % k == 0 and k * seconds_per_step <= PROGRESS_SECONDS]
    k = max(fits, default=1)
    return ChunkPlan(steps=k, calls=n // k)


def _warn_cost(run: Run, seconds_per_step):
    """Say before it starts what a long run will cost (a 100 m warm bubble sat
    at 0/60 for minutes with no hint why)."""
    if not seconds_per_step:
        return
    grid = run.inputs.grid
    steps = run.n_outputs * run.steps_per_output
    total = steps * seconds_per_step
    if total <= WARN_RUN_SECONDS:
        return
    cells = grid.nx * grid.ny * grid.nz * int(np.prod(run.batch_shape, dtype=int))
    warnings.warn(
        f"this run has {cells:,} cells and {steps} steps: on a CPU like the 2-core one xlex "
        f"was timed on, expect roughly {_duration(total)} ({seconds_per_step:.2g} s per step; "
        "an estimate, subgrid schemes cost more). A coarser grid (e.g. dx=400) or a GPU is "
        "much faster; see docs/performance.md", RuntimeWarning, stacklevel=5)


def _duration(seconds):
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """The tqdm bar of a run: "compiling" until the first chunk is compiled, then
    the steps done, updated after every chunk."""

    def __init__(self, run: Run, enabled: bool):
        self.name = f"xlex {run.inputs.grid.describe()}"
        self.bar = tqdm(total=run.n_outputs * run.steps_per_output, unit="step",
                        disable=not enabled, desc=f"{self.name} compiling", leave=True)
        self.compiling = True
        interrupt.set_line_open(enabled)

    def compiled(self):
        if self.compiling:
            self.compiling = False
            self.bar.unpause()  # the steps per second count from here, not from the compile
            self.bar.set_description(self.name)

    def update(self, steps):
        self.bar.update(steps)

    def close(self):
        self.bar.close()
        interrupt.set_line_open(False)


def _advance_interval(chunk, plan: ChunkPlan, state, base, params, progress: Progress):
    """Run one output interval as ``plan.calls`` chunks; returns the state, the
    :class:`SolveSummary` of its pressure solves, and the finite flags and Courant
    number at its end. Each chunk is dispatched before the previous one is waited for, so
    the device does not idle while the bar is drawn."""
    pending = chunk(state, base, params)
    progress.compiled()
    solves = SolveSummary.empty()
    for j in range(plan.calls):
        following = chunk(pending[0], base, params) if j + 1 < plan.calls else None
        state, chunk_solves, finite, cfl = pending
        solves = solves.merge(chunk_solves)  # waits for this chunk
        progress.update(plan.steps)
        pending = following
    return state, solves, finite, cfl


def _offset(append_at):
    """Index in the store of the first in-memory record (the initial state)."""
    return append_at - 1 if append_at else 0


def _store_saver(writer, records, append_at):
    """What a Ctrl-C in the ``xlex`` command does with a store being written: mark
    it interrupted and say how many records it holds, counted in the file."""
    def describe():
        writer.set_status("interrupted")
        n = complete_records(writer.path)
        i = n - 1 - _offset(append_at)
        upto = f", the last at t = {records.times[i]:g} s" if 0 <= i < len(records) else ""
        return (f"{writer.path} holds {n} complete record(s){upto}, marked interrupted; "
                f"continue with: xlex run --resume {writer.path}")
    return describe


def _open_store(run: Run, records, store, append_at):
    """(writer, saver): the store's writer, with the initial record written (a new
    run) or the status set to running (a resumed one), and the Ctrl-C saver
    pushed for it (see :mod:`xlex.interrupt`); (None, None) without a store."""
    if store is None:
        return None, None
    writer = make_store(store, start=append_at)
    saver = _store_saver(writer, records, append_at)
    with interrupt.critical():
        if append_at is None:
            writer.create(records.dataset("running"))
        else:  # the store tells the truth while this writer extends it
            writer.set_attrs(xlex_status="running", xlex_duration=run.attrs["xlex_duration"])
        # inside the write, so that a Ctrl-C it deferred finds the saver
        interrupt.push_saver(saver)
    return writer, saver


def _run(run: Run, progress, store, append_at):
    if run.mesh is None:
        return _run_here(run, progress, store, append_at)
    with jax.set_mesh(run.mesh):  # the steps are traced under it (xlex.core.parallel)
        return _run_here(run, progress, store, append_at)


def _run_here(run: Run, progress, store, append_at):
    grid = run.inputs.grid
    seconds_per_step = estimated_seconds_per_step(run)
    _warn_cost(run, seconds_per_step)
    plan = plan_chunks(run, seconds_per_step)
    state, base = _device_inputs(run)
    params = parameters(run.physics)
    chunk = compiled_chunk(grid, run.physics, run.dt, plan.steps, run.batched, run.mesh)
    diagnose = compiled_diagnostics(grid, run.physics, run.batched, run.mesh)
    bar = Progress(run, progress)
    records = Records(run)
    writer = saver = None
    try:
        records.add(state, diagnose(state, base, params), None, run.inputs.time)
        writer, saver = _open_store(run, records, store, append_at)
        started = _time.perf_counter()
        solve_warnings = SolveWarnings(run)
        for k in range(run.n_outputs):
            new, solves, finite, cfl = _advance_interval(chunk, plan, state, base, params, bar)
            t_now = run.inputs.time + (k + 1) * run.every
            _check_blow_up(run, records, writer, new, finite, cfl, t_now)
            solve_warnings.check(solves, t_now)
            state = new
            records.add(state, diagnose(state, base, params), solves, t_now)
            if writer is not None:
                with interrupt.critical():
                    writer.append(records.dataset("running", first=len(records) - 1))
                records.release()  # the store holds them: memory does not grow with outputs
        wall = round(_time.perf_counter() - started, 3)
        if writer is None:
            out = records.dataset("complete")
        else:
            with interrupt.critical():
                writer.set_status("complete")
            out = open_store_lazily(writer.path)
        out.attrs["xlex_wall_seconds"] = wall
        return out
    except KeyboardInterrupt:
        bar.close()  # before the warning, which would land on the bar's line
        return _interrupted(records, writer, append_at)
    finally:
        bar.close()
        interrupt.pop_saver(saver)


def _interrupted(records, writer, append_at):
    """A KeyboardInterrupt in library use (a notebook's Ctrl-C): mark the store and
    return the records it holds, counted in the file."""
    if writer is None:
        kept = ""
    else:
        writer.set_status("interrupted")
        n = complete_records(writer.path)
        records.keep(n - _offset(append_at))
        kept = f"; {writer.path} holds them ({n} record(s) in all), marked interrupted"
    warnings.warn(f"interrupted: returning the {len(records)} output(s) completed, up to "
                  f"t = {records.times[-1]:g} s{kept}", RuntimeWarning, stacklevel=5)
    if writer is None:
        return records.dataset("interrupted")
    return open_store_lazily(writer.path).isel(time=slice(_offset(append_at), None))


def _check_blow_up(run, records, writer, new, finite, cfl, t_now):
    """Raise BlowUpError (with the records so far) on non-finite values or a
    Courant number over the limit."""
    finite = np.asarray(finite)
    cfl_value = float(np.max(np.asarray(cfl)))
    if finite.all() and cfl_value <= COURANT_LIMIT:
        return
    names = ("u", "v", "w", "th", "qv", "pipert")
    ok = finite.reshape(-1, 6).all(0) if run.batched else finite
    bad = [n for n, good in zip(names, ok, strict=True) if not good]
    variable, where = _locate_blow_up(new, bad, run.inputs)
    what = (f"non-finite values in {variable} near {where}" if bad else
            f"Courant number {cfl_value:.3g} exceeds {COURANT_LIMIT} (largest in {variable} "
            f"near {where})")
    if writer is None:
        outputs = records.dataset("blew up")
    else:  # every record of the store, read lazily (its fields are not in memory)
        writer.set_status("blew up")
        outputs = open_store_lazily(writer.path)
    message = (f"the run blew up between t = {t_now - run.every:g} s and {t_now:g} s: {what}; "
               f"reduce dt (now {run.dt:g} s). The {outputs.sizes['time']} output(s) before "
               "it are in the error's .outputs")
    raise BlowUpError(message, time=t_now, variable=variable, location=where,
                      outputs=outputs)


class SolveWarnings:
    """Warns once per run of each kind of pressure solve that did not do its job:
    a Krylov breakdown, one that hit max_iterations, and one that left a residual
    above the tolerance (the first that applies to an interval, named with its
    output time; the output's ``pressure_residual`` records every interval)."""

    def __init__(self, run: Run):
        solver = run.physics.pressure
        self.cap = solver.resolved_max_iterations()
        self.tolerance = solver.resolved_tolerance(run.dtype)
        self.said = set()

    def check(self, solves: SolveSummary, t_now):
        residual = float(np.max(solves.residual))
        fix = ("raise PressureSolver(max_iterations=...) or the tolerance, or reduce dt; "
               "pressure_residual in the output records every interval")
        if np.any(solves.breakdown):
            self._warn("breakdown", f"a pressure solve broke down (a zero or negative inner "
                       f"product in the Krylov recurrence) before t = {t_now:g} s, leaving a "
                       f"relative residual of {residual:.3g}; {fix}")
        elif int(np.max(solves.most_iterations)) >= self.cap:
            self._warn("cap", f"the pressure solve hit max_iterations={self.cap} before "
                       f"t = {t_now:g} s (relative residual {residual:.3g}, tolerance "
                       f"{self.tolerance:g}); {fix}")
        elif residual > self.tolerance:
            self._warn("residual", f"a pressure solve left a relative residual of "
                       f"{residual:.3g}, above the tolerance {self.tolerance:g}, before "
                       f"t = {t_now:g} s: the winds are not divergence-free to the tolerance; "
                       f"{fix}")

    def _warn(self, kind, message):
        if kind not in self.said:
            self.said.add(kind)
            warnings.warn(message, RuntimeWarning, stacklevel=4)


def resume(path, duration=None, *, progress=True, devices=None) -> xr.Dataset:
    """Continue a run streamed to ``path`` from its last complete record.

    The options (dt, output interval, solver, precision, schemes) are read from
    the file; new records are appended to it. On CPU the records are bit for bit
    those of an uninterrupted run.

    Parameters
    ----------
    path : str or Path
        A store written by ``integrate(..., store=path)``.
    duration : float or str, optional
        How much longer to run; default: what remains of the duration the run
        was started with.
    devices : int or list of jax devices, optional
        Split the rest of the run over devices, as in ``integrate`` (results
        equal a single-device run to round-off).

    Returns
    -------
    xarray.Dataset
        Every complete record in the store, the old and the new, read lazily
        (:func:`xlex.io.store.open_store_lazily`: the fields stay in the file
        until used, and the file is not held open).
    """
    if not Path(path).exists():
        raise StoreError(f"no store at {str(path)!r} to resume; check the path")
    with store_lock(path):  # a second writer, e.g. the run still writing it, is refused
        check_not_open(path)
        return _resume(path, duration, progress, devices)


def _resume(path, duration, progress, devices):
    n = complete_records(path)
    if is_zarr(path) and n:
        with interrupt.critical():
            ZarrStore(path, start=n).truncate()  # drop a half-written record's arrays
    done = open_store(path, records=[n - 1] if n else [])
    attrs = done.attrs
    missing = [k for k in ("xlex_dt", "xlex_output_every", "xlex_duration") if k not in attrs]
    if missing:
        raise XlexError(f"{str(path)!r} was not written by xlex integrate(store=...): it lacks "
                        f"the attributes {missing}")
    if done.sizes.get("time", 0) == 0:
        raise XlexError(f"{str(path)!r} holds no complete record to resume from")
    t_last = float(done["time"].values[-1])
    number = functools.partial(_recorded_seconds, attrs, path)
    if duration is None:
        remaining = number("xlex_start_time", 0.0) + number("xlex_duration") - t_last
        if remaining <= 1e-9:
            return open_store_lazily(path)
        duration = remaining
    _integrate(done, duration, dt=number("xlex_dt"), output_every=number("xlex_output_every"),
               precision=str(attrs.get("xlex_precision", "float32")), progress=progress,
               store=path, _append_at=n, devices=devices)
    return open_store_lazily(path)


def _recorded_seconds(attrs, path, name, default=None) -> float:
    """A run option in seconds recorded in a store's attributes, or an error
    naming the attribute (never a default for a recorded value that is bad)."""
    value = attrs.get(name, default)
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)) and np.isfinite(value)
    if not ok:
        raise XlexError(f"{str(path)!r}: its attribute {name} is {value!r}, not a number of "
                        "seconds; the store was changed after xlex wrote it. Restore the value "
                        "xlex wrote, or start a new run")
    return float(value)


def _locate_blow_up(state, bad, inputs):
    """(variable, {dim: coordinate}) of the worst point of the first bad field."""
    from xlex.io.cf import VARIABLE_DIMS
    if bad:
        name = bad[0]
        arr = np.asarray(getattr(state, "pi" if name == "pipert" else name))
        score = ~np.isfinite(arr)
    else:
        # the velocity component with the largest directional Courant number
        grid = inputs.grid
        parts = {n: np.abs(np.asarray(getattr(state, n))) / d
                 for n, d in (("u", grid.dx), ("v", grid.dy), ("w", grid.dz))}
        name = max(parts, key=lambda n: parts[n].max())
        arr = np.asarray(getattr(state, name))
        score = parts[name]
    idx = np.unravel_index(np.argmax(score), arr.shape)
    dims = VARIABLE_DIMS["pipert" if name == "pi" else name]
    where = {d: float(inputs.coords[d][i]) for d, i in zip(dims, idx[-3:], strict=True)}
    return name, where


__all__ = ["integrate", "resume", "run_mesh", "courant_number", "compiled_chunk", "COURANT_LIMIT"]
