"""Integrates a contract Dataset: checks, converts, runs the compiled loop, converts back.

This is the edge behind ``ds.lex.integrate``: the core never sees xarray.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time as _time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from tqdm import tqdm

from xlex.config import PHYSICS_GROUPS, ModelConfig
from xlex.errors import BlowUpError, CFLError, OptionError, OptionTypeError, XlexError
from xlex.io.convert import dataset_to_inputs, states_to_dataset
from xlex.io.store import (
    StoreError,
    ZarrStore,
    check_target,
    complete_records,
    is_zarr,
    make_store,
    open_store,
)
from xlex.model import DIAGNOSTICS, make_step, output_diagnostics
from xlex.physics.surface import check_surface_layer
from xlex.state import BaseState, State
from xlex.stepping import advance
from xlex.timeparse import to_seconds, whole_multiple

#: Largest sum of directional Courant numbers ``dt (|u|/dx + |v|/dy + |w|/dz)`` for which
#: SSPRK3(4) with fifth-order upwind advection is linearly stable (about 1.7 in 1-D),
#: with a small margin.
COURANT_LIMIT = 1.6


def courant_number(u, v, w, grid, dt, xp=np):
    """Largest ``dt (|u|/dx + |v|/dy + |w|/dz)`` over the domain, velocities at centres."""
    uc = 0.5 * (xp.abs(u) + xp.abs(xp.roll(u, -1, axis=-1)))
    vc = 0.5 * (xp.abs(v) + xp.abs(xp.roll(v, -1, axis=-2)))
    wc = 0.5 * (xp.abs(w[..., 1:, :, :]) + xp.abs(w[..., :-1, :, :]))
    return dt * xp.max(uc / grid.dx + vc / grid.dy + wc / grid.dz)


def _floor_significant(x, digits=3):
    """``x`` rounded down to ``digits`` significant digits (a dt that is surely safe)."""
    scale = 10.0 ** (math.floor(math.log10(x)) - digits + 1)
    return float(f"{math.floor(x / scale) * scale:.{digits}g}")


def _options_attrs(config: ModelConfig, dt, duration, output_every):
    attrs = config.as_attrs()
    attrs = {k: ("none" if v is None else v) for k, v in attrs.items()}
    attrs.update({"xlex_dt": dt, "xlex_duration": duration, "xlex_output_every": output_every,
                  "boundary_conditions": "periodic in x and y; rigid free-slip walls at "
                                         "bottom and top",
                  "coriolis_parameter": config.coriolis,
                  "equations": "Durran (2008) pseudo-incompressible, moist "
                               "(density potential temperature)"})
    return attrs


def integrate(ds: xr.Dataset, duration, *, dt, output_every, solver="pcg",
              precision="float32", progress=True, store=None, overwrite=False,
              _append_at=None, **options) -> xr.Dataset:
    """Integrate the state in ``ds`` forward in time. See
    :meth:`xlex.accessor.LexAccessor.integrate`."""
    if store is not None and _append_at is None:
        store = check_target(store, overwrite)
    duration_s = to_seconds(duration, "duration")
    dt_s = to_seconds(dt, "dt")
    every_s = to_seconds(output_every, "output_every")
    n_outputs = whole_multiple(duration_s, every_s, "duration", "output_every")
    steps_per_output = whole_multiple(every_s, dt_s, "output_every", "dt")
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise OptionTypeError(f"unknown option(s) {unknown} for integrate; the model options "
                              f"are {sorted(known)}")
    recorded = ds.attrs if isinstance(ds, xr.Dataset) else {}
    inherited = _inherited_physics(recorded, options)
    try:
        config = ModelConfig(solver=solver, precision=precision, **{**inherited, **options})
    except (OptionError, OptionTypeError) as err:
        culprits = [n for n in inherited if re.search(rf"\b{n}\b", str(err))]
        if not culprits:
            raise
        raise type(err)(f"{err} (from the Dataset's xlex_{culprits[0]} attribute; pass "
                        f"{culprits[0]}=... to integrate to override it)") from None
    inputs = dataset_to_inputs(ds)
    grid = inputs.grid
    if config.surface != "none":
        check_surface_layer(grid, config.roughness_length, config.scalar_roughness)
    courant = courant_number(inputs.state["u"], inputs.state["v"], inputs.state["w"], grid, dt_s)
    if courant > COURANT_LIMIT:
        safe = _floor_significant(dt_s * COURANT_LIMIT / courant)
        raise CFLError(
            f"dt = {dt_s:g} s breaks the CFL limit for the initial state: the Courant number "
            f"dt (|u|/dx + |v|/dy + |w|/dz) is {courant:.3g} > {COURANT_LIMIT}; use dt <= "
            f"{safe!r} s (and mind that the flow may speed up)")

    with jax.enable_x64(config.precision == "float64"):
        return _run(ds, inputs, config, dt_s, every_s, duration_s, n_outputs, steps_per_output,
                    progress, store, _append_at)


def _inherited_physics(attrs, given) -> dict:
    """Physics options recorded in the Dataset (``xlex_*``), for the options the
    caller did not name. Naming a group's scheme (``sgs``, ``surface``) replaces
    the whole group; naming one of the two surface temperatures drops the other."""
    recorded = _options_from_attrs(attrs)
    out = {}
    for group, names in PHYSICS_GROUPS.items():
        if group in given:  # the scheme itself: a new configuration of the group
            continue
        out.update({n: recorded[n] for n in names if n in recorded and n not in given})
    temperatures = ("surface_temperature", "surface_potential_temperature")
    if any(t in given for t in temperatures):
        for t in temperatures:
            out.pop(t, None)
    return out


def _run(ds, inputs, config, dt_s, every_s, duration_s, n_outputs, steps_per_output, progress,
         store, append_at):
    grid = inputs.grid
    dtype = config.dtype
    base = BaseState(**{k: jnp.asarray(v, dtype) for k, v in inputs.base.items()})
    state = State(u=inputs.state["u"], v=inputs.state["v"], w=inputs.state["w"],
                  th=inputs.state["th"], qv=inputs.state["qv"], pi=inputs.state["pi"])
    batch_shape = inputs.batch_shape
    flat = int(np.prod(batch_shape)) if batch_shape else None
    state = jax.tree.map(
        lambda a: jnp.asarray(a.reshape((flat,) + a.shape[len(batch_shape):]) if flat else a,
                              dtype), state)
    step = make_step(grid, base, config, dt_s)
    diagnose = output_diagnostics(grid, base, config)

    def chunk(s):
        s, its = advance(step, s, steps_per_output)
        finite = jnp.stack([jnp.all(jnp.isfinite(getattr(s, n)))
                            for n in ("u", "v", "w", "th", "qv", "pi")])
        cfl = courant_number(s.u, s.v, s.w, grid, dt_s, jnp)
        return s, jnp.mean(its.astype(dtype)), jnp.max(its), finite, cfl

    if flat:
        chunk = jax.vmap(chunk)
    chunk = jax.jit(chunk)

    def snapshot(s):
        return {k: np.asarray(getattr(s, k)).reshape(batch_shape + getattr(s, k).shape[
            1 if flat else 0:]) for k in ("u", "v", "w", "th", "qv", "pi")}

    def extra_snapshot(extra):
        return {n: np.asarray(a).reshape(batch_shape + a.shape[1 if flat else 0:])
                for n, a in extra.items()}

    # one compiled diagnostics function for every record (t = 0 included)
    def diagnostics(s):
        return {}

    if diagnose is not None:
        diagnostics = jax.jit(jax.vmap(diagnose)) if flat else jax.jit(diagnose)
    records = [snapshot(state) | extra_snapshot(diagnostics(state))]
    iterations = [np.zeros(batch_shape)]
    times = [inputs.time]
    attrs = dict(ds.attrs)
    attrs.update(_options_attrs(config, dt_s, duration_s, every_s))
    if append_at is None:
        attrs["xlex_start_time"] = inputs.time

    def result(status, first=0):
        fields = {k: np.stack([r[k] for r in records[first:]]) for k in records[0]}
        lead = ("time",) + tuple(inputs.batch_dims)
        extra = {"pressure_iterations": (lead, np.stack(iterations[first:]),
                                         {"units": "1", "long_name": "mean pressure-solver "
                                          "iterations per solve since the previous output"})}
        for name, (dims, vattrs) in DIAGNOSTICS.items():
            if name in fields:
                extra[name] = (lead + dims, fields.pop(name), dict(vattrs))
        return states_to_dataset(
            fields, inputs.base, inputs.coords, np.asarray(times[first:]),
            batch_dims=inputs.batch_dims, attrs={**attrs, "xlex_status": status}, extra=extra)

    writer = None
    if store is not None:
        writer = make_store(store, start=append_at)
        if append_at is None:
            writer.create(result("running"))

    bar = tqdm(total=n_outputs * steps_per_output, unit="step", disable=not progress,
               desc=f"xlex {grid.describe()}", leave=True)
    started = _time.perf_counter()
    try:
        for k in range(n_outputs):
            new, mean_its, max_its, finite, cfl = chunk(state)
            finite = np.asarray(finite)
            t_now = inputs.time + (k + 1) * every_s
            cfl_value = float(np.max(np.asarray(cfl)))
            if not finite.all() or cfl_value > COURANT_LIMIT:
                names = ("u", "v", "w", "th", "qv", "pipert")
                bad = [n for n, ok in zip(names, finite.reshape(-1, 6).all(0) if flat else finite,
                                          strict=True) if not ok]
                variable, where = _locate_blow_up(new, bad, inputs)
                message = (f"the run blew up between t = {t_now - every_s:g} s and "
                           f"{t_now:g} s: " + (f"non-finite values in {variable} near {where}"
                                               if bad else
                                               f"Courant number {cfl_value:.3g} exceeds "
                                               f"{COURANT_LIMIT} (largest in {variable} near "
                                               f"{where})")
                           + f"; reduce dt (now {dt_s:g} s). The {len(records)} output(s) "
                           "before it are in the error's .outputs")
                if writer is not None:
                    writer.set_status("blew up")
                raise BlowUpError(message, time=t_now, variable=variable, location=where,
                                  outputs=result("blew up"))
            if int(np.max(np.asarray(max_its))) >= config.max_iterations:
                warnings.warn(f"the pressure solve hit max_iterations={config.max_iterations} "
                              f"before t = {t_now:g} s; the divergence may be above tolerance",
                              RuntimeWarning, stacklevel=3)
            state = new
            records.append(snapshot(state) | extra_snapshot(diagnostics(state)))
            iterations.append(np.asarray(mean_its).reshape(batch_shape))
            times.append(t_now)
            if writer is not None:
                writer.append(result("running", first=len(records) - 1))
            bar.update(steps_per_output)
    except KeyboardInterrupt:
        bar.close()
        if writer is not None:
            writer.set_status("interrupted")
        warnings.warn(f"interrupted: returning the {len(records)} output(s) completed, up to "
                      f"t = {times[-1]:g} s", RuntimeWarning, stacklevel=3)
        return result("interrupted")
    bar.close()
    out = result("complete")
    out.attrs["xlex_wall_seconds"] = round(_time.perf_counter() - started, 3)
    if writer is not None:
        writer.set_status("complete")
    return out


def _options_from_attrs(attrs) -> dict:
    """The ModelConfig options recorded as ``xlex_<name>`` attributes, typed back."""
    options = {}
    for field in dataclasses.fields(ModelConfig):
        key = f"xlex_{field.name}"
        if key not in attrs:
            continue
        value = attrs[key]
        value = value.item() if hasattr(value, "item") else value
        default = field.default
        if isinstance(default, bool):
            value = bool(value)
        elif isinstance(default, int) and not isinstance(default, bool):
            value = int(value)
        elif value == "none" and default is None:
            value = None
        options[field.name] = value
    return options


def resume(path, duration=None, *, progress=True) -> xr.Dataset:
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

    Returns
    -------
    xarray.Dataset
        Every complete record in the store, the old and the new.
    """
    if not Path(path).exists():
        raise StoreError(f"no store at {str(path)!r} to resume; check the path")
    n = complete_records(path)
    if is_zarr(path) and n:
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
    if duration is None:
        t_start = float(attrs.get("xlex_start_time", 0.0))
        remaining = t_start + float(attrs["xlex_duration"]) - t_last
        if remaining <= 1e-9:
            return open_store(path)
        duration = remaining
    options = _options_from_attrs(attrs)
    integrate(done, duration, dt=float(attrs["xlex_dt"]),
              output_every=float(attrs["xlex_output_every"]), progress=progress, store=path,
              _append_at=n, **options)
    return open_store(path)


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


__all__ = ["integrate", "resume", "courant_number", "COURANT_LIMIT"]
