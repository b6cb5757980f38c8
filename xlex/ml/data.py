"""Training data for a neural subgrid model: coarse-grained truth cut into look-ahead windows.

:func:`make_training_data` takes high-resolution truth runs (Datasets of the
contract, as :meth:`ds.lex.integrate <xlex.accessor.LexAccessor.integrate>`
returns them, or stores it wrote), coarse-grains them in space with
:func:`xlex.transforms.coarsen` and in time by keeping every ``every``-th
output, cuts each coarse run into windows of ``steps + 1`` states (an initial
state and ``steps`` look-ahead targets), and splits the windows once, by whole
windows and reproducibly from a seed, into a training and a test set. Windows
never share a state, so no state of the test set is ever seen in training; the
split is stored with the data. This module needs neither flax nor the model
core's JAX code: it is the xarray edge of :mod:`xlex.ml`.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from xlex.align import COORD_RTOL, TIME_ATOL, time_seconds
from xlex.core.errors import DatasetError, GridMismatchError, OptionError, OptionTypeError
from xlex.core.grid import MIN_HORIZONTAL_CELLS, MIN_VERTICAL_CELLS
from xlex.io.cf import BASE_STATE, COORDINATE_ATTRS, PROGNOSTIC, SPATIAL_DIMS
# the contract's metadata checks, which read no field values
from xlex.io.convert import _check_coordinates, _check_fields, _check_variables, _checked_grid
from xlex.io.store import COMPLETE, complete_records, is_zarr, open_store
from xlex.transforms import coarsen

__all__ = ["make_training_data"]

#: Fields every truth run must have besides the prognostic ones: the Exner
#: perturbation (a network input) and the base state (the mass weight of the
#: coarse-graining and the base state of the coarse model).
REQUIRED = ("pipert",) + BASE_STATE
#: Prefix of the global attributes that record how the data were made.
PREFIX = "xlex_training_"


# --------------------------------------------------------------------------- options


def _positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise OptionTypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise OptionError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _check_factors(factors):
    if isinstance(factors, (str, bytes)) or not isinstance(factors, Sequence) \
            or len(factors) != 3:
        raise OptionTypeError(f"factors must be three integers (x, y, z), e.g. (6, 6, 3); "
                              f"got {factors!r}")
    return tuple(_positive_int(f"factors[{i}] ({axis})", f)
                 for i, (axis, f) in enumerate(zip("xyz", factors, strict=True)))


def _check_fraction(test_fraction):
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real):
        raise OptionTypeError(f"test_fraction must be a number in [0, 1), got "
                              f"{type(test_fraction).__name__} {test_fraction!r}")
    if not 0.0 <= float(test_fraction) < 1.0:
        raise OptionError(f"test_fraction must lie in [0, 1) (the share of windows held out "
                          f"for testing, e.g. 0.1), got {test_fraction!r}")
    return float(test_fraction)


def _check_options(factors, every, steps, stride, test_fraction, seed):
    """The options, checked and normalised, as a dict."""
    steps = _positive_int("steps", steps)
    stride = steps + 1 if stride is None else _positive_int("stride", stride)
    if stride < steps + 1:
        raise OptionError(f"stride={stride} would let consecutive windows of steps={steps} "
                          f"share states (a window spans {steps + 1} states), and a state "
                          f"could then be in both the training and the test set; give "
                          f"stride >= steps + 1 = {steps + 1} (the default)")
    return {"factors": _check_factors(factors), "every": _positive_int("every", every),
            "steps": steps, "stride": stride, "test_fraction": _check_fraction(test_fraction),
            "seed": _positive_int("seed", seed, minimum=0)}


# --------------------------------------------------------------------------- the runs


def _sources(truth_runs):
    """``truth_runs`` as a list: one Dataset or path, or a sequence of them."""
    if isinstance(truth_runs, (xr.Dataset, str, os.PathLike)):
        truth_runs = [truth_runs]
    elif isinstance(truth_runs, bytes) or not isinstance(truth_runs, Sequence):
        raise OptionTypeError(f"truth_runs must be an xarray.Dataset, a path to a store, or a "
                              f"list of them; got {type(truth_runs).__name__}")
    runs = list(truth_runs)
    if not runs:
        raise OptionError("truth_runs is empty; give at least one truth run")
    for i, run in enumerate(runs):
        if not isinstance(run, (xr.Dataset, str, os.PathLike)):
            raise OptionTypeError(f"truth run {i} is a {type(run).__name__}; give an "
                                  "xarray.Dataset (the output of integrate) or the path of a "
                                  "NetCDF/Zarr store written by xlex")
    _check_distinct(runs)
    return runs


def _check_distinct(runs):
    """The same run twice would put copies of its states on both sides of the split."""
    seen = {}
    for i, run in enumerate(runs):
        key = ("path", os.path.realpath(run)) if not isinstance(run, xr.Dataset) \
            else ("dataset", id(run))
        if key in seen:
            raise OptionError(f"truth runs {seen[key]} and {i} are the same run; its windows "
                              "would be drawn twice, and a copy of a test window could be in "
                              "the training set. Give each run once")
        seen[key] = i


def _label(i, run):
    if isinstance(run, xr.Dataset):
        return f"truth run {i} (Dataset {run.attrs.get('title', 'without title')!r})"
    return f"truth run {i} ({os.fspath(run)!r})"


def _describe(run):
    """How the data record a source: its absolute path, or the title of a Dataset."""
    if isinstance(run, xr.Dataset):
        return f"Dataset: {run.attrs.get('title', 'without title')}"
    return os.path.abspath(run)


def _open(run):
    """A Dataset for a source; a store is opened lazily (dask, one chunk per record)."""
    if isinstance(run, xr.Dataset):
        return run
    path = Path(run)
    if is_zarr(path):
        n = complete_records(path)  # StoreError for a missing or non-xlex store
        try:
            ds = xr.open_zarr(path, consolidated=False)
        except ValueError:  # a record half written: read what is complete, array by array
            return open_store(path, load=False)
        ds = ds.isel(time=slice(0, n))
        return ds.drop_vars(COMPLETE) if COMPLETE in ds.variables else ds
    return open_store(path, load=False).chunk({"time": 1})


def _check_run(ds, label):
    """Contract checks on metadata only; returns (grid, ensemble dims, times [s])."""
    missing = [v for v in PROGNOSTIC + REQUIRED if v not in ds.data_vars]
    if missing:
        raise DatasetError(f"{label} is not an xlex run: it lacks the variable(s) {missing}. "
                           f"A truth run needs {list(PROGNOSTIC + REQUIRED)}; give the output "
                           "of integrate or the store it wrote (integrate(..., store=path))")
    try:
        _check_variables(ds)
        _check_coordinates(ds)
        grid = _checked_grid(ds)
        batch_dims = _check_fields(ds)
    except DatasetError as err:
        raise DatasetError(f"{label} is not an xlex run: {err}") from None
    if "time" not in ds.dims or "time" not in ds.coords:
        raise DatasetError(f"{label} has no time axis with coordinate values; give a run "
                           "with several outputs (the result of integrate, or its store)")
    if not (np.issubdtype(ds["time"].dtype, np.number)
            or np.issubdtype(ds["time"].dtype, np.timedelta64)):
        raise DatasetError(f"{label}: the time coordinate has dtype {ds['time'].dtype}; "
                           "give the model time in seconds")
    times = time_seconds(ds)
    if times.size > 1:
        dt = np.diff(times)
        if dt.min() <= 0 or dt.max() - dt.min() > TIME_ATOL:
            raise DatasetError(f"{label}: outputs are not equally spaced in time (intervals "
                               f"{dt.min():g} to {dt.max():g} s); windows need a constant "
                               "output interval: select equally spaced outputs first")
    return grid, batch_dims, times


def _check_factors_fit(grid, factors, label):
    """The factors divide the grid and leave a coarse grid the model can run on."""
    sizes = {"x": grid.nx, "y": grid.ny, "z": grid.nz}
    bad = [f"n{a}={sizes[a]} by {a}={f} (divisors of {sizes[a]}: "
           f"{', '.join(str(d) for d in range(1, sizes[a] + 1) if sizes[a] % d == 0)})"
           for a, f in zip("xyz", factors, strict=True) if sizes[a] % f]
    if bad:
        raise DatasetError(f"{label} has {grid.nx} x {grid.ny} x {grid.nz} cells, which do not "
                           f"divide by the factors: {'; '.join(bad)}. Choose factors that "
                           "divide the grid, or a truth run whose cell numbers are multiples "
                           "of them")
    coarse = [sizes[a] // f for a, f in zip("xyz", factors, strict=True)]
    if min(coarse[:2]) < MIN_HORIZONTAL_CELLS or coarse[2] < MIN_VERTICAL_CELLS:
        raise DatasetError(f"{label}: the coarse grid would have {coarse[0]} x {coarse[1]} x "
                           f"{coarse[2]} cells; the model needs at least "
                           f"{MIN_HORIZONTAL_CELLS} cells in x and y and {MIN_VERTICAL_CELLS} "
                           "levels to run on it. Use smaller factors or a truth run with "
                           "more cells")


def _check_same_grid(ref, ds, label):
    """Same spatial sizes and coordinates as the first run (to COORD_RTOL of the extent)."""
    for dim in SPATIAL_DIMS:
        a = np.asarray(ref[dim].values, np.float64)
        b = np.asarray(ds[dim].values, np.float64)
        scale = COORD_RTOL * max(np.abs(a).max(), np.abs(b).max(), 1.0)
        if a.shape != b.shape or np.abs(a - b).max() > scale:
            raise GridMismatchError(
                f"{label} is on another grid than truth run 0: {dim} has {b.size} points from "
                f"{b.min():g} to {b.max():g} m, run 0 {a.size} points from {a.min():g} to "
                f"{a.max():g} m. All truth runs must share one grid; make separate training "
                "data per grid")


# --------------------------------------------------------------------------- windows and split


def _window_starts(times, opts, label):
    """Coarse time indices where the windows of a run start."""
    every, steps = opts["every"], opts["steps"]
    n_coarse = (times.size - 1) // every + 1
    starts = np.arange(0, n_coarse - steps, opts["stride"])
    if starts.size == 0:
        need = steps * every + 1
        interval = f" ({steps * every * (times[1] - times[0]):g} s)" if times.size > 1 else ""
        raise DatasetError(f"{label} has {times.size} output(s), too few for one window: "
                           f"steps={steps} look-ahead steps every={every} outputs apart need "
                           f"{need} outputs{interval}. Run the truth longer (or with more "
                           "frequent output), or lower steps or every")
    return starts


def _n_test(n, test_fraction):
    """Number of test windows: the nearest whole number, at least one if asked for any."""
    n_test = int(math.floor(test_fraction * n + 0.5))
    n_test = max(n_test, 1) if test_fraction > 0 else 0
    if n - n_test < 1:
        raise DatasetError(f"the truth runs give {n} window(s); holding out test_fraction="
                           f"{test_fraction:g} of them leaves none for training. Give longer "
                           "or more runs, or a smaller test_fraction (0 for no test set)")
    return n_test


def _split(n, test_fraction, seed):
    """Sorted ids of the test windows: ``default_rng(seed).choice(n, n_test, replace=False)``."""
    n_test = _n_test(n, test_fraction)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=n_test, replace=False)).astype(np.int64)


def _trajectories(ds, batch_dims):
    """(position along each ensemble dim, that member's Dataset without the ensemble dims)
    for every member; just ``({}, ds)`` for a run without ensemble dims."""
    sizes = [ds.sizes[d] for d in batch_dims]
    for index in np.ndindex(*sizes):
        sel = dict(zip(batch_dims, index, strict=True))
        yield sel, ds.isel(sel, drop=True) if sel else ds


def _windows_of_run(ds, run_index, starts, batch_dims, opts, all_batch_dims):
    """The windows of one run, coarse-grained: Datasets with dims (window, step, ...)."""
    fx, fy, fz = opts["factors"]
    every, steps = opts["every"], opts["steps"]
    used = (starts[:, None] + np.arange(steps + 1)[None, :]).ravel() * every
    times = time_seconds(ds)[used]
    ds = ds.isel(time=used).assign_coords(time=("time", times, COORDINATE_ATTRS["time"]))
    ds = ds.drop_vars([c for c in ds.coords if c not in SPATIAL_DIMS + ("time",)])
    coarse = coarsen(ds, x=fx, y=fy, z=fz)
    positions = xr.DataArray(np.arange(used.size).reshape(starts.size, steps + 1),
                             dims=("window", "step"))
    pieces = []
    for sel, traj in _trajectories(coarse, batch_dims):
        win = traj.isel(time=positions)
        for name in list(win.data_vars):
            if "window" not in win[name].dims:
                win[name] = win[name].expand_dims(window=starts.size)
        member = {d: ("window", np.full(starts.size, sel.get(d, -1), np.int64))
                  for d in all_batch_dims}
        win = win.assign_coords(run=("window", np.full(starts.size, run_index, np.int64)),
                                start_time=("window", win["time"].values[:, 0],
                                            {"units": "seconds",
                                             "long_name": "time of the window's initial state"}),
                                **member)
        pieces.append(win.transpose("window", "step", ...))
    return pieces


def _plan(runs, sources, opts):
    """Every check, on metadata only; returns per run (ensemble dims, window starts) and
    the output interval [s]."""
    plans, interval = [], None
    for i, (ds, source) in enumerate(zip(runs, sources, strict=True)):
        label = _label(i, source)
        grid, batch_dims, times = _check_run(ds, label)
        _check_factors_fit(grid, opts["factors"], label)
        if i:
            _check_same_grid(runs[0], ds, label)
        starts = _window_starts(times, opts, label)
        step = float(times[1] - times[0])
        if interval is None:
            interval = step
        elif abs(step - interval) > TIME_ATOL:
            raise GridMismatchError(f"{label} has outputs every {step:g} s, truth run 0 every "
                                    f"{interval:g} s; the windows of all runs must have the "
                                    "same time step. Select outputs of the runs at one "
                                    "interval first (e.g. ds.isel(time=slice(None, None, k)))")
        plans.append((batch_dims, starts))
    return plans, interval


def _common_attrs(runs):
    """Global attributes with the same value in every run."""
    def same(a, b):
        try:
            return bool(np.array_equal(np.asarray(a), np.asarray(b)))
        except (TypeError, ValueError):
            return False
    first = runs[0].attrs
    return {k: v for k, v in first.items()
            if all(k in ds.attrs and same(ds.attrs[k], v) for ds in runs[1:])}


def _record(runs, sources, opts, n, test_ids, interval) -> dict:
    """Global attributes: those the runs share, the coarsening, and the split."""
    fx, fy, fz = opts["factors"]
    attrs = _common_attrs(runs)
    record = f"x={fx}, y={fy}, z={fz}, every={opts['every']}"
    attrs["coarsened"] = (f"{attrs['coarsened']}; then {record}" if "coarsened" in attrs
                          else record)
    attrs.update({
        PREFIX + "factors": [fx, fy, fz],
        PREFIX + "every": opts["every"],
        PREFIX + "steps": opts["steps"],
        PREFIX + "stride": opts["stride"],
        PREFIX + "interval": opts["every"] * interval,
        PREFIX + "test_fraction": opts["test_fraction"],
        PREFIX + "seed": opts["seed"],
        PREFIX + "windows": n,
        PREFIX + "test_windows": json.dumps([int(i) for i in test_ids]),
        PREFIX + "sources": json.dumps([_describe(s) for s in sources]),
    })
    return attrs


def make_training_data(truth_runs, *, factors=(6, 6, 3), every=3, steps=12,
                       test_fraction=0.1, seed=0, stride=None):
    """Coarse-grained look-ahead windows of truth runs, split once into training and test sets.

    Each truth run is coarse-grained in space by :func:`xlex.transforms.coarsen`
    (block means, mass-weighted face means: a discretely divergence-free fine
    wind stays divergence-free) and in time by keeping every ``every``-th
    output (outputs 0, every, 2 every, ...). The coarse run is cut into
    windows of ``steps + 1`` consecutive coarse states, the initial state
    (step 0) and ``steps`` look-ahead targets ``every`` outputs apart,
    starting at coarse times 0, stride, 2 stride, ...; with
    ``stride >= steps + 1`` no two windows share a state. An ensemble run
    (extra leading dims such as ``member``) gives windows of every member.

    The windows are numbered in the order run, member, start time (the
    ``window`` coordinate), and split ONCE into ``train`` and ``test``:
    the test windows are ``numpy.random.default_rng(seed).choice(n,
    n_test, replace=False)``, with ``n_test`` the nearest whole number to
    ``test_fraction * n`` (at least one when ``test_fraction > 0``). The same
    arguments always give the same split, and no (run, member, time) state is
    in both sets. Everything is checked (types, ranges, the contract, sizes,
    grids, lengths) before any field is read or coarse-grained.

    Parameters
    ----------
    truth_runs : xarray.Dataset, str, os.PathLike, or a sequence of them
        High-resolution runs: Datasets as :meth:`ds.lex.integrate
        <xlex.accessor.LexAccessor.integrate>` returns them, or paths of the
        NetCDF / Zarr stores it wrote (``store=...``), which are opened
        lazily (dask, one chunk per output). They must share one grid and
        one output interval, and need ``u``, ``v``, ``w``, ``th``, ``qv``,
        ``pipert`` and the base state ``th0``, ``qv0``, ``pi0``, ``rho0``.
    factors : (int, int, int), default (6, 6, 3)
        Spatial coarsening factors (x, y, z), e.g. 100 m -> 600 x 600 x 300 m.
        Must divide the truth grid and leave a coarse grid the model can run
        on (at least 6 cells in x and y, 2 levels).
    every : int, default 3
        Temporal coarsening: keep every ``every``-th output. The time step of
        the windows is ``every`` times the truth runs' output interval.
    steps : int, default 12
        Look-ahead steps per window (the paper's curriculum ends at 12).
    test_fraction : float, default 0.1
        Share of the windows held out for testing, in [0, 1).
    seed : int, default 0
        Seed of ``numpy.random.default_rng`` that draws the test windows (>= 0).
    stride : int, optional
        Coarse outputs between the starts of consecutive windows of a run;
        default and minimum ``steps + 1`` (disjoint windows). A larger stride
        spaces the windows further apart.

    Returns
    -------
    train, test : xarray.Dataset
        Every data variable of the runs (those all runs have) with dims
        ``(window, step, ...)``, ``step`` = 0..steps; the base state and
        other variables without time get a ``window`` dim. Coordinates:
        ``window`` (the window's number among all windows), ``step``,
        ``lead_time`` (step) [s], ``time`` (window, step) [s], ``run``
        (window: the index of the source in ``truth_runs``), ``start_time``
        (window) [s], and for ensemble runs one coordinate per ensemble dim
        (window: the member's position along it, -1 for a run without that
        dim). Global attributes: those all runs share, ``coarsened``, and
        ``xlex_training_*``: ``factors``, ``every``, ``steps``, ``stride``,
        ``interval`` [s], ``test_fraction``, ``seed``, ``windows`` (their
        number), ``test_windows`` and ``sources`` (JSON lists), ``part``
        (``"train"`` or ``"test"``). Dask-backed where the input is (stores
        always); a NumPy-backed Dataset gives NumPy-backed data.

    Raises
    ------
    OptionTypeError
        For an argument of the wrong type (a bool where an integer belongs, a
        string as ``factors``, ...).
    OptionError
        For a value out of range (``test_fraction`` outside [0, 1),
        ``stride < steps + 1``, ...), no runs, or the same run twice.
    DatasetError
        For a run that does not meet the contract, whose cell numbers do not
        divide by the factors, that is too short for one window, or whose
        outputs are not equally spaced; or too few windows for the split.
    GridMismatchError
        For runs on different grids or with different output intervals.
    xlex.io.store.StoreError
        For a path that is not an xlex store.

    Examples
    --------
    >>> truth = [xlex.cases.warm_bubble(theta_c=tc, dx=100.0).lex.integrate(
    ...     "20min", dt=2.0, output_every="4s") for tc in (0.5, 1.0, 2.0, 3.0)]  # doctest: +SKIP
    >>> train, test = make_training_data(truth, factors=(6, 6, 3), every=3,
    ...                                  steps=12)                              # doctest: +SKIP
    >>> train.u.dims                                                            # doctest: +SKIP
    ('window', 'step', 'zh', 'yh', 'xf')
    """
    opts = _check_options(factors, every, steps, stride, test_fraction, seed)
    sources = _sources(truth_runs)
    runs = [_open(s) for s in sources]
    plans, interval = _plan(runs, sources, opts)
    n = sum(starts.size * math.prod(ds.sizes[d] for d in dims)
            for ds, (dims, starts) in zip(runs, plans, strict=True))
    test_ids = _split(n, opts["test_fraction"], opts["seed"])
    names = [v for v in runs[0].data_vars if all(v in ds.data_vars for ds in runs[1:])]
    all_dims = list(dict.fromkeys(d for dims, _ in plans for d in dims))
    pieces = [piece for i, (ds, (dims, starts)) in enumerate(zip(runs, plans, strict=True))
              for piece in _windows_of_run(ds[names], i, starts, dims, opts, all_dims)]
    data = xr.concat(pieces, dim="window", data_vars="minimal", coords="minimal",
                     compat="override", join="override", combine_attrs="drop")
    data = data.assign_coords(
        window=("window", np.arange(n, dtype=np.int64)),
        step=("step", np.arange(opts["steps"] + 1, dtype=np.int64)),
        lead_time=("step", np.arange(opts["steps"] + 1) * opts["every"] * interval,
                   {"units": "seconds", "long_name": "time since the window's initial state"}))
    attrs = _record(runs, sources, opts, n, test_ids, interval)
    is_test = np.isin(np.arange(n), test_ids)
    train = data.isel(window=np.flatnonzero(~is_test))
    test = data.isel(window=test_ids)
    train.attrs = {**attrs, PREFIX + "part": "train"}
    test.attrs = {**attrs, PREFIX + "part": "test"}
    return train, test
