"""Online training through the solver (paper section 2.2.2), and calibration
of the float parameters of any scheme by the same loss.

Both fit some leaves of the physics pytree (the network's weights, or a
scheme's constants) by differentiating the loss of eqs. 22-26
(:mod:`xlex.ml.losses`) through N look-ahead steps of the model
(:func:`xlex.core.stepping.trajectory`, checkpointed, with the pressure solves
differentiated implicitly), with Adam and an exponentially decaying learning
rate, over a curriculum of look-ahead lengths (the paper's 3, 6, 12). One
optimiser step takes a batch of windows (vmapped). With a ``directory``,
the training state (trained leaves, optimiser state, epoch, history) is
checkpointed with orbax-checkpoint after every ``checkpoint_every`` epochs,
and a call with the same directory and settings resumes from the latest
checkpoint and gives the result of an uninterrupted training. The windows of
an epoch are shuffled from ``(seed, epoch)`` alone, so nothing random needs
saving.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from xlex.core.errors import GridMismatchError, OptionError, OptionTypeError, XlexError
from xlex.core.model import SLOT_TYPES, Physics, make_step, parameters
from xlex.core.physics.scheme import check_choice
from xlex.core.state import BaseState, State
from xlex.core.stepping import trajectory
from xlex.ml.data import _positive_int
from xlex.ml.losses import TERMS, loss_scales, rollout_loss
from xlex.ml.normalisation import _lead_dims, dataset_grid

PRECISIONS = ("float32", "float64")
#: Name of the file a trained model is saved to inside ``directory``.
MODEL_FILE = "model.nn"
#: Sub-folder of ``directory`` that holds the training checkpoints.
CHECKPOINTS = "checkpoints"


class TrainingDivergedError(XlexError, FloatingPointError):
    """The loss of a training batch was not finite."""


# --------------------------------------------------------------------------- options


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The checked settings of a training (compared on resume)."""

    lookahead: tuple
    epochs: tuple
    learning_rate: tuple
    batch_size: int
    precision: str
    seed: int
    level_floor: float

    @property
    def epoch_lookahead(self) -> list[int]:
        """The look-ahead of every epoch, in order."""
        return [n for n, e in zip(self.lookahead, self.epochs, strict=True) for _ in range(e)]


def _int_tuple(name, value, example):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise OptionTypeError(f"{name} must be an integer or a sequence of integers, e.g. "
                              f"{example}; got {value!r}")
    return tuple(_positive_int(f"{name}[{i}]", v) for i, v in enumerate(value))


def _learning_rates(value):
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = (value, value)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise OptionTypeError("learning_rate must be a number or (initial, final), e.g. "
                              f"(1e-3, 1e-6); got {value!r}")
    rates = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise OptionTypeError(f"learning_rate[{i}] must be a number, got {v!r}")
        if not (math.isfinite(v) and v > 0):
            raise OptionError(f"learning_rate[{i}] must be finite and > 0, got {v!r}")
        rates.append(float(v))
    if rates[1] > rates[0]:
        raise OptionError(f"learning_rate={tuple(value)!r} increases; it decays from the first "
                          f"value to the second, e.g. ({rates[1]:g}, {rates[0]:g})")
    return tuple(rates)


#: Default floor of the level ranges of eq. 25 in training (see
#: :func:`xlex.ml.losses.scale_factor`; 0 is the paper's equation). With the
#: paper's scale, notebook 03's network made the untrained amplitude worse than
#: Smagorinsky (R(th') 0.29 at 10 min against 0.60) while its test loss rose;
#: with 0.1 its test loss fell and it beat Smagorinsky (0.69) (docs/training.md).
LEVEL_FLOOR = 0.1


def _level_floor(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise OptionTypeError(f"level_floor must be a number in [0, 1], e.g. 0.1; got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise OptionError(f"level_floor={value!r} is outside [0, 1]: it is a fraction of each "
                          "field's range over all levels (0, the paper's eq. 25; e.g. 0.1)")
    return float(value)


def _schedule(lookahead, epochs, learning_rate, batch_size, precision, seed,
              level_floor=LEVEL_FLOOR) -> Schedule:
    lookahead = _int_tuple("lookahead", lookahead, "(3, 6, 12)")
    epochs = _int_tuple("epochs", epochs, "10 or (4, 4, 2)")
    if len(epochs) == 1:
        epochs = epochs * len(lookahead)
    if len(epochs) != len(lookahead):
        raise OptionError(f"epochs={epochs} gives {len(epochs)} stages but lookahead="
                          f"{lookahead} has {len(lookahead)}: give one number of epochs per "
                          "look-ahead length, or one for all")
    check_choice("train_online", "precision", precision, PRECISIONS)
    return Schedule(lookahead=lookahead, epochs=epochs,
                    learning_rate=_learning_rates(learning_rate),
                    batch_size=_positive_int("batch_size", batch_size),
                    precision=precision, seed=_positive_int("seed", seed, minimum=0),
                    level_floor=_level_floor(level_floor))


def check_schedule(*, lookahead, epochs, learning_rate, batch_size, precision, seed,
                   level_floor=LEVEL_FLOOR):
    """Check the schedule options of :func:`train_online` (what it checks first),
    e.g. for a command that reads the training data only after them."""
    return _schedule(lookahead, epochs, learning_rate, batch_size, precision, seed, level_floor)


# --------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class Windows:
    """Look-ahead windows in memory: states ``(window, step, ...)`` and base
    states ``(window, nz)`` as numpy arrays, with their grid and step."""

    states: State
    base: BaseState
    grid: object
    dt: float

    @property
    def count(self) -> int:
        return int(np.shape(self.states.th)[0])

    @property
    def steps(self) -> int:
        return int(np.shape(self.states.th)[1]) - 1


def _check_data(data, label):
    if not isinstance(data, xr.Dataset):
        raise OptionTypeError(f"{label} must be an xarray.Dataset of look-ahead windows "
                              f"(xlex.ml.make_training_data), got {type(data).__name__}")
    if "window" not in data.dims or "step" not in data.dims or "lead_time" not in data.coords:
        raise OptionError(f"{label} has no window and step dims: give a set of "
                          "xlex.ml.make_training_data (train, test = make_training_data(runs))")


def window_step(data) -> float:
    """The model time step of a training set: the spacing of its look-ahead times [s]."""
    lead = np.asarray(data["lead_time"].values, np.float64)
    return float(lead[1] - lead[0])


def load_windows(data) -> Windows:
    """Every window of a training set (from :func:`xlex.ml.make_training_data`)
    read into numpy arrays, checked against the contract."""
    from xlex.io.convert import dataset_to_inputs
    _check_data(data, "the training data")
    states, bases, grid = [], [], None
    for i in range(data.sizes["window"]):
        inputs = dataset_to_inputs(data.isel(window=i))
        grid = inputs.grid
        states.append({k: np.asarray(v) for k, v in inputs.state.items()})
        bases.append({k: np.asarray(v) for k, v in inputs.base.items()})
    stack = {k: np.stack([s[k] for s in states]) for k in states[0]}
    base = {k: np.stack([b[k] for b in bases]) for k in bases[0]}
    return Windows(states=State(**stack), base=BaseState(**base), grid=grid,
                   dt=window_step(data))


def _check_compatible(train, test, grid, schedule):
    if schedule.batch_size > train.sizes["window"]:
        raise OptionError(f"batch_size={schedule.batch_size} is larger than the "
                          f"{train.sizes['window']} training windows; choose batch_size <= "
                          f"{train.sizes['window']}")
    steps = train.sizes["step"] - 1
    if max(schedule.lookahead) > steps:
        raise OptionError(f"lookahead={schedule.lookahead} reaches {max(schedule.lookahead)} "
                          f"steps but the training windows hold {steps} look-ahead states: "
                          f"make the data with steps >= {max(schedule.lookahead)} or shorten "
                          "the look-ahead")
    if test is None:
        return
    _check_data(test, "test")
    if dataset_grid(test) != grid:
        raise GridMismatchError(f"the test set is on the grid {dataset_grid(test)}, the "
                                f"training set on {grid}: give the test set made with the "
                                "training set (train, test = make_training_data(...))")
    if test.sizes["step"] - 1 < max(schedule.lookahead):
        raise OptionError(f"the test windows hold {test.sizes['step'] - 1} look-ahead states, "
                          f"fewer than lookahead {max(schedule.lookahead)}")
    if not math.isclose(window_step(test), window_step(train), rel_tol=1e-9):
        raise GridMismatchError(f"the test windows are {window_step(test):g} s apart, the "
                                f"training windows {window_step(train):g} s")


def _take(tree, index):
    return jax.tree.map(lambda a: a[index], tree)


# --------------------------------------------------------------------------- the fit


@dataclasses.dataclass
class _Problem:
    """What one fit optimises: the physics, which of its leaves move, the
    bounds each moving leaf is clipped to after a step (None: unbounded), and a
    label for messages."""

    physics: Physics
    select: callable  # path of a leaf of parameters(physics) -> bool
    bounds: tuple | None
    label: str
    names: tuple = ()  # names of the moving leaves, recorded per step (calibration)


def network_problem(physics) -> _Problem:
    """The fit of the weights of the NeuralSGS in ``physics``'s sgs slot (the
    rest of the physics fixed), as :func:`train_online` and ``xlex bench
    --training`` make it."""
    return _Problem(physics=physics,
                    select=lambda path: _path_names(path)[:2] == ["sgs", "weights"],
                    bounds=None, label="NeuralSGS")


def _split(params, select):
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    mask = [bool(select(path)) for path, _ in flat]
    moving = [leaf for (_, leaf), m in zip(flat, mask, strict=True) if m]
    fixed = [leaf for (_, leaf), m in zip(flat, mask, strict=True) if not m]
    return moving, fixed, functools.partial(_merge, treedef, tuple(mask)), tuple(mask)


def _merge(treedef, mask, moving, fixed):
    moving, fixed = iter(moving), iter(fixed)
    return treedef.unflatten([next(moving) if m else next(fixed) for m in mask])


#: Compiled updates and losses, by configuration (see :func:`_compiled`), kept for
#: the process so that a second fit of one configuration compiles nothing.
_COMPILED: dict = {}


def _compiled(physics, grid, dt, steps, mask, rates, total, bounds):
    """``(update, loss, optimiser)`` for one configuration: the structure of the
    physics, grid, step, look-ahead, which leaves move, the learning-rate
    schedule and the bounds. Everything else (the leaves, the loss scales, the
    windows) is an argument, so nothing large is baked into the programs."""
    import optax
    key = (grid, jax.tree.structure(physics), dt, steps, mask, rates, total, bounds)
    if key in _COMPILED:
        return _COMPILED[key]
    step = make_step(grid, physics, dt)
    merge = functools.partial(_merge, jax.tree.structure(physics), mask)
    learning_rate = optax.exponential_decay(rates[0], transition_steps=max(total - 1, 1),
                                            decay_rate=rates[1] / rates[0])
    optimiser = optax.adam(learning_rate)

    def window_terms(moving, fixed, scales, state0, base, truth):
        pred, _ = trajectory(step, state0, base, merge(moving, fixed), steps=steps,
                             save_every=1)
        return rollout_loss(pred, truth, scales)

    def batch_terms(moving, fixed, scales, state0, base, truth):
        terms = jax.vmap(window_terms, in_axes=(None, None, None, 0, 0, 0))(
            moving, fixed, scales, state0, base, truth)
        terms = jax.tree.map(jnp.mean, terms)
        return terms["total"], terms

    def update(moving, opt_state, fixed, scales, state0, base, truth):
        grad_fn = jax.value_and_grad(batch_terms, has_aux=True)
        (_, terms), grads = grad_fn(moving, fixed, scales, state0, base, truth)
        updates, opt_state = optimiser.update(grads, opt_state, moving)
        moving = optax.apply_updates(moving, updates)
        if bounds is not None:
            moving = [jnp.clip(m, lo, hi) for m, (lo, hi) in zip(moving, bounds, strict=True)]
        return moving, opt_state, terms

    def loss(moving, fixed, scales, state0, base, truth):
        return batch_terms(moving, fixed, scales, state0, base, truth)[1]

    _COMPILED[key] = (jax.jit(update), jax.jit(loss), optimiser, learning_rate)
    return _COMPILED[key]


class _Engine:
    """The leaves of a fit, its loss scales and its compiled pieces."""

    def __init__(self, problem, windows, schedule, total_steps):
        self.problem = problem
        self.windows = windows
        self.dtype = jnp.dtype(schedule.precision)
        params = jax.tree.map(lambda p: jnp.asarray(p, self.dtype), parameters(problem.physics))
        self.moving, self.fixed, self.merge, self.mask = _split(params, problem.select)
        if not self.moving:
            raise OptionError(f"{problem.label}: nothing to train (no parameter selected)")
        grid = windows.grid
        scales = loss_scales(windows.states, windows.base, (grid.dx, grid.dy, grid.dz),
                             level_floor=schedule.level_floor)
        self.scales = jax.tree.map(lambda a: jnp.asarray(a, self.dtype), scales)
        self._config = (problem.physics, grid, windows.dt)
        self._schedule = (schedule.learning_rate, total_steps, problem.bounds)
        *_, self.optimiser, self.learning_rate = self._functions(1)

    def _functions(self, steps):
        physics, grid, dt = self._config
        rates, total, bounds = self._schedule
        return _compiled(physics, grid, dt, steps, self.mask, rates, total, bounds)

    def update(self, steps):
        """``update(moving, opt_state, fixed, scales, state0, base, truth) ->
        (moving, opt_state, terms)``: one Adam step on a batch."""
        return self._functions(steps)[0]

    def loss(self, steps):
        """``loss(moving, fixed, scales, state0, base, truth) -> terms`` (no gradient)."""
        return self._functions(steps)[1]

    def batch(self, windows, index, steps):
        """Initial states, base states and truths of the windows ``index``."""
        cast = functools.partial(jax.tree.map, lambda a: jnp.asarray(a, self.dtype))
        return (cast(_take(windows.states, (index, 0))), cast(_take(windows.base, index)),
                cast(_take(windows.states, (index, slice(1, steps + 1)))))


def _mean_test_loss(engine, moving, test, steps, batch_size) -> float:
    total, n = 0.0, test.count
    for start in range(0, n, batch_size):
        index = np.arange(start, min(start + batch_size, n))
        terms = engine.loss(steps)(moving, engine.fixed, engine.scales,
                                   *engine.batch(test, index, steps))
        total += float(terms["total"]) * index.size
    return total / n


# --------------------------------------------------------------------------- checkpoints


def _manager(directory: Path):
    import orbax.checkpoint as ocp
    options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False)
    return ocp.CheckpointManager(directory.resolve() / CHECKPOINTS, options=options)


def _save(manager, epoch, moving, opt_state, record):
    import orbax.checkpoint as ocp

    from xlex import interrupt
    with interrupt.critical():  # the command's Ctrl-C waits for the checkpoint
        manager.save(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardSave({"moving": moving, "opt_state": opt_state}),
            record=ocp.args.JsonSave(record)))
        manager.wait_until_finished()


#: What a checkpoint written before a setting existed was made with.
_SETTING_DEFAULTS = {"level_floor": 0.0}


def _restore(manager, moving, opt_state, settings, directory):
    import orbax.checkpoint as ocp
    epoch = manager.latest_step()
    if epoch is None:
        return None
    template = {"moving": moving, "opt_state": opt_state}
    try:
        got = manager.restore(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(template), record=ocp.args.JsonRestore()))
    except (ValueError, KeyError, TypeError) as err:
        raise OptionError(f"{str(directory)!r} holds a checkpoint of another model or scheme "
                          f"({type(err).__name__}: {err}); train into another directory") from None
    record = got["record"]
    # a checkpoint from before a setting existed was made with its default
    record["settings"] = {**_SETTING_DEFAULTS, **record["settings"]}
    if record["settings"] != settings:
        diff = sorted(k for k in settings if record["settings"].get(k) != settings[k])
        raise OptionError(f"{str(directory)!r} holds a training with other settings ({diff}: "
                          f"{[record['settings'].get(k) for k in diff]} there, "
                          f"{[settings[k] for k in diff]} now); resume with the same settings "
                          "or train into another directory")
    # orbax gives committed arrays, which jit keys apart from the uncommitted ones of a
    # fresh fit: as they are, a resume in the same process compiled the update again
    state = jax.tree.map(lambda a: jnp.asarray(np.asarray(a)), got["state"])
    return state["moving"], state["opt_state"], record


# --------------------------------------------------------------------------- history


def _empty_history(names=()):
    return {"iteration": {"epoch": [], "learning_rate": [], **{t: [] for t in TERMS},
                          "total": [], **{n: [] for n in names}},
            "epoch": {"lookahead": [], "train_loss": [], "test_loss": [], "wall_time": []}}


def history_dataset(history, label) -> xr.Dataset:
    """The record of a fit as a Dataset: per optimiser step and per epoch."""
    it, ep = history["iteration"], history["epoch"]
    n_it, n_ep = len(it["total"]), len(ep["train_loss"])
    units = {"learning_rate": "1", "wall_time": "s"}
    names = {"l2": "L2 loss (eq. 22)", "negative_qv": "negative-qv penalty (eq. 23)",
             "laplacian": "Laplacian loss (eq. 24)", "total": "total loss (eq. 26)",
             "learning_rate": "Adam learning rate", "lookahead": "look-ahead steps",
             "train_loss": "mean total loss of the epoch's batches",
             "test_loss": "total loss on the test windows after the epoch",
             "wall_time": "wall-clock time of the epoch",
             **{n: f"calibrated {n} after the step" for n in it if n not in TERMS
                and n not in ("epoch", "learning_rate", "total")}}
    data = {k: (("iteration",), np.asarray(v, np.int64 if k == "epoch" else np.float64),
                {"long_name": names.get(k, "epoch of the step"), "units": units.get(k, "1")})
            for k, v in it.items() if k != "epoch"}
    data.update({k: (("epoch",), np.asarray(v, np.int64 if k == "lookahead" else np.float64),
                     {"long_name": names[k], "units": units.get(k, "1")})
                 for k, v in ep.items()})
    return xr.Dataset(data, coords={
        "iteration": np.arange(n_it), "epoch": np.arange(n_ep),
        "epoch_of_iteration": (("iteration",), np.asarray(it["epoch"], np.int64))},
        attrs={"title": f"online training of {label}"})


# --------------------------------------------------------------------------- the loop


def _fit(problem: _Problem, train, test, schedule: Schedule, *, directory, checkpoint_every,
         progress):
    """Run the fit; return (trained parameters of the physics, history Dataset)."""
    from tqdm import tqdm

    with jax.enable_x64(schedule.precision == "float64"):
        windows = load_windows(train)
        tests = None if test is None else load_windows(test)
        per_epoch = windows.count // schedule.batch_size
        plan = schedule.epoch_lookahead
        engine = _Engine(problem, windows, schedule, per_epoch * len(plan))
        moving, opt_state = engine.moving, engine.optimiser.init(engine.moving)
        history, first = _empty_history(problem.names), 0
        settings = {**dataclasses.asdict(schedule), "windows": windows.count,
                    "label": problem.label}
        settings = json.loads(json.dumps(settings))  # lists, as JSON gives them back
        manager = None
        if directory is not None:
            directory = Path(directory)
            directory.mkdir(parents=True, exist_ok=True)
            manager = _manager(directory)
            restored = _restore(manager, moving, opt_state, settings, directory)
            if restored is not None:
                moving, opt_state, record = restored
                history, first = record["history"], record["epochs_done"]
        bar = tqdm(total=per_epoch * len(plan), initial=per_epoch * first, unit="batch",
                   disable=not progress, desc=problem.label)
        try:
            for epoch in range(first, len(plan)):
                moving, opt_state = _epoch(engine, moving, opt_state, windows, tests, schedule,
                                           epoch, plan[epoch], history, bar)
                if manager is not None and ((epoch + 1) % checkpoint_every == 0
                                            or epoch + 1 == len(plan)):
                    _save(manager, epoch + 1, moving, opt_state,
                          {"settings": settings, "epochs_done": epoch + 1, "history": history})
        except KeyboardInterrupt:
            bar.close()
            done = manager.latest_step() if manager is not None else None
            where = (f"; the checkpoint after epoch {done} in {str(directory)!r} resumes it "
                     "(call again with the same directory)") if done else ""
            warnings.warn(f"{problem.label}: training interrupted in epoch {epoch + 1} of "
                          f"{len(plan)}{where}", stacklevel=3)
            raise
        bar.close()
        trained = engine.merge(jax.tree.map(np.asarray, moving),
                               jax.tree.map(np.asarray, engine.fixed))
    return trained, history_dataset(history, problem.label)


def _epoch(engine, moving, opt_state, windows, tests, schedule, epoch, steps, history, bar):
    """One pass over the training windows, in an order drawn from (seed, epoch)."""
    start = time.perf_counter()
    order = np.random.default_rng([schedule.seed, epoch]).permutation(windows.count)
    size = schedule.batch_size
    update = engine.update(steps)
    losses = []
    for b in range(windows.count // size):
        index = order[b * size:(b + 1) * size]
        moving, opt_state, terms = update(moving, opt_state, engine.fixed, engine.scales,
                                          *engine.batch(windows, index, steps))
        terms = {k: float(v) for k, v in terms.items()}
        if not math.isfinite(terms["total"]):
            raise TrainingDivergedError(
                f"{engine.problem.label}: the loss of batch {b + 1} of epoch {epoch + 1} is "
                f"{terms['total']} (look-ahead {steps}): the rollout blew up. Lower the "
                "learning rate, start with a shorter look-ahead, or check the time step")
        it = history["iteration"]
        it["learning_rate"].append(float(engine.learning_rate(len(it["total"]))))  # Adam's count
        it["epoch"].append(epoch)
        for k, v in terms.items():
            it[k].append(v)
        for name, value in zip(engine.problem.names, moving, strict=False):
            it[name].append(float(value))
        losses.append(terms["total"])
        bar.update(1)
        bar.set_postfix(epoch=epoch + 1, lookahead=steps, loss=f"{terms['total']:.4g}")
    ep = history["epoch"]
    ep["lookahead"].append(steps)
    ep["train_loss"].append(float(np.mean(losses)))
    ep["test_loss"].append(math.nan if tests is None else
                           _mean_test_loss(engine, moving, tests, steps, size))
    ep["wall_time"].append(time.perf_counter() - start)
    return moving, opt_state


# --------------------------------------------------------------------------- public API


def _checked_physics(physics) -> Physics:
    physics = Physics() if physics is None else physics
    if not isinstance(physics, Physics):
        raise OptionTypeError(f"physics must be an xlex.Physics (the other schemes of the "
                              f"coarse model), got {type(physics).__name__}")
    return physics


def _in_physics(physics, slot, obj):
    return dataclasses.replace(_checked_physics(physics), **{slot: obj})


def _path_names(path):
    return [getattr(k, "name", getattr(k, "key", None)) for k in path]


def train_online(train, *, model=None, test=None, lookahead=(3, 6, 12), epochs=1,
                 learning_rate=(1e-3, 1e-6), batch_size=1, precision="float64", physics=None,
                 directory=None, checkpoint_every=1, seed=0, level_floor=LEVEL_FLOOR,
                 progress=True):
    """Train a neural subgrid model through the solver (the paper's online training).

    Each optimiser step takes ``batch_size`` windows, runs the hybrid model
    (dynamics + the network's correction after every step) ``N`` steps from
    each window's initial state, and differentiates the loss of eqs. 22-26
    against the window's truth states (:mod:`xlex.ml.losses`) with respect to
    every weight, through the pressure solves. Adam, with the learning rate
    decaying exponentially from ``learning_rate[0]`` to ``learning_rate[1]``
    over all steps; ``N`` follows the curriculum ``lookahead``.

    Parameters
    ----------
    train : xarray.Dataset
        Training windows from :func:`xlex.ml.make_training_data`; the model
        step is their spacing in time (``lead_time``).
    model : NeuralSGS, optional
        The model to train (default: ``NeuralSGS.create(train, seed=seed)``,
        the default network with statistics of ``train``). Its options
        (``symmetric``, ``project``) are used in training.
    test : xarray.Dataset, optional
        Test windows (same grid and step); their loss is recorded per epoch.
    lookahead : int or sequence of int, default (3, 6, 12)
        Look-ahead steps of each curriculum stage (at most the windows' steps).
    epochs : int or sequence of int, default 1
        Epochs of each stage (one number for every stage, or one per stage).
    learning_rate : float or (float, float), default (1e-3, 1e-6)
        Initial and final learning rate (non-increasing).
    batch_size : int, default 1
        Windows per optimiser step (vmapped). Each epoch takes
        ``n_windows // batch_size`` batches; the remainder of the shuffled
        windows waits for a later epoch.
    precision : {"float64", "float32"}, default "float64"
        Arithmetic of the training (the model and the network). The model
        returned keeps its own ``precision`` for inference.
    physics : Physics, optional
        The other schemes of the coarse model (default: ``xlex.Physics()``,
        dynamics only); its sgs slot is taken by the model.
    directory : str or Path, optional
        Where checkpoints (``checkpoints/``, orbax) and the trained model
        (:data:`MODEL_FILE`) go. A directory that already holds a checkpoint
        of the same settings is resumed from it.
    checkpoint_every : int, default 1
        Epochs between checkpoints (the last epoch is always saved).
    seed : int, default 0
        Seed of the new model's weights and of the order of the windows.
    level_floor : float, default 0.1 (:data:`LEVEL_FLOOR`)
        Floor of each level's range in the loss scales of eq. 25, as a
        fraction of the field's range over all levels, in [0, 1]. 0 is the
        paper's equation exactly, which weights a level the flow barely
        reaches by up to ~1e7 times a lively one (beyond the paper; see
        :func:`xlex.ml.losses.scale_factor` and docs/training.md).
    progress : bool, default True
        Show a progress bar (batches, epoch, loss).

    Returns
    -------
    model : NeuralSGS
        The trained model (saved to ``directory / "model.nn"`` when a
        directory is given).
    history : xarray.Dataset
        ``l2``, ``negative_qv``, ``laplacian``, ``total`` and
        ``learning_rate`` per optimiser step (dim ``iteration``), and
        ``lookahead``, ``train_loss``, ``test_loss`` (NaN without a test
        set) and ``wall_time`` [s] per epoch.

    Raises
    ------
    OptionError, OptionTypeError
        Bad options (an increasing learning rate, ``epochs < 1``, a look-ahead
        longer than the windows, a batch larger than the training set, a
        directory holding another training).
    GridMismatchError
        A test set or model on another grid.
    TrainingDivergedError
        A non-finite loss (the message says what to change).
    """
    from xlex.ml.neural_sgs import NeuralSGS

    schedule = _schedule(lookahead, epochs, learning_rate, batch_size, precision, seed,
                         level_floor)
    _check_data(train, "train")
    checkpoint_every = _positive_int("checkpoint_every", checkpoint_every)
    grid = dataset_grid(train)
    _check_compatible(train, test, grid, schedule)
    physics = _checked_physics(physics)  # before a new model compiles its initialisers
    if model is None:
        model = NeuralSGS.create(train, seed=schedule.seed)
    if not isinstance(model, NeuralSGS):
        raise OptionTypeError(f"model must be a NeuralSGS (xlex.ml.NeuralSGS.create(train)), "
                              f"got {type(model).__name__}")
    model.check(grid)
    trainee = dataclasses.replace(model, precision=schedule.precision)
    problem = network_problem(_in_physics(physics, "sgs", trainee))
    params, history = _fit(problem, train, test, schedule, directory=directory,
                           checkpoint_every=checkpoint_every, progress=progress)
    weights = jax.tree.map(lambda new, old: np.asarray(new, np.asarray(old).dtype),
                           params.sgs.weights, model.weights)
    trained = dataclasses.replace(model, weights=weights)
    if directory is not None:
        trained = trained.save(Path(directory) / MODEL_FILE)
    return trained, history


def _slot_of(scheme) -> str:
    for slot, types in SLOT_TYPES.items():
        if isinstance(scheme, types):
            return slot
    raise OptionTypeError(f"calibrate: {type(scheme).__name__} is not a scheme of a physics "
                          f"slot; give one of {[t.__name__ for ts in SLOT_TYPES.values() for t in ts]}")


def _bounds(names, bounds):
    bounds = {} if bounds is None else dict(bounds)
    unknown = sorted(set(bounds) - set(names))
    if unknown:
        raise OptionError(f"bounds name {unknown}, which are not calibrated (parameters="
                          f"{tuple(names)})")
    out = []
    for name in names:
        lo, hi = bounds.get(name, (0.0, math.inf))
        if not (isinstance(lo, numbers.Real) and isinstance(hi, numbers.Real) and lo < hi):
            raise OptionError(f"bounds[{name!r}] must be (low, high) with low < high, got "
                              f"{bounds[name]!r}")
        out.append((float(lo), float(hi)))
    return out


def calibrate(scheme, train, *, parameters=("cs",), bounds=None, test=None, lookahead=(3,),
              epochs=5, learning_rate=(1e-2, 1e-3), batch_size=1, precision="float64",
              physics=None, directory=None, checkpoint_every=1, seed=0,
              level_floor=LEVEL_FLOOR, progress=True):
    """Fit float parameters of a scheme by the loss of online training.

    The scheme takes its slot of ``physics`` (e.g. a Smagorinsky the sgs
    slot) and the named parameters are optimised exactly as
    :func:`train_online` optimises a network's weights: the hybrid
    trajectories of the training windows against their truth, through the
    pressure solves, with Adam. After every step each parameter is clipped
    to its bounds.

    Parameters
    ----------
    scheme : a physics scheme
        The scheme to calibrate, with its starting values (e.g.
        ``xlex.Smagorinsky(cs=0.25)``).
    train : xarray.Dataset
        Training windows (:func:`xlex.ml.make_training_data`).
    parameters : sequence of str, default ("cs",)
        Float parameters of the scheme to fit (e.g. ``("cs", "prandtl")``, or
        a BulkSurface's ``("z0",)``).
    bounds : dict, optional
        ``{name: (low, high)}``; default (0, inf) for each: xlex's schemes
        take positive constants.
    lookahead, epochs, learning_rate, batch_size, precision, physics, directory, checkpoint_every, seed, level_floor, progress
        As in :func:`train_online`; the defaults suit a constant of order 0.1
        (steps of ~1e-2 decaying to 1e-3).

    Returns
    -------
    scheme
        The scheme with the fitted values (a new object, validated).
    history : xarray.Dataset
        As in :func:`train_online`, plus each calibrated parameter after every
        optimiser step (dim ``iteration``).
    """
    slot = _slot_of(scheme)
    if isinstance(parameters, str) or not isinstance(parameters, Sequence) or not parameters:
        raise OptionTypeError(f"parameters must be a sequence of names, e.g. ('cs',); got "
                              f"{parameters!r}")
    leaves = [_path_names(p)[0] for p, _ in jax.tree_util.tree_flatten_with_path(scheme)[0]]
    unknown = [p for p in parameters if p not in leaves]
    if unknown:
        raise OptionError(f"{type(scheme).__name__} has no float parameter {unknown}; its "
                          f"parameters are {tuple(leaves)}")
    names = tuple(parameters)
    limits = _bounds(names, bounds)
    schedule = _schedule(lookahead, epochs, learning_rate, batch_size, precision, seed,
                         level_floor)
    _check_data(train, "train")
    checkpoint_every = _positive_int("checkpoint_every", checkpoint_every)
    _check_compatible(train, test, dataset_grid(train), schedule)
    order = [n for n in leaves if n in names]  # leaves come in the scheme's field order
    problem = _Problem(physics=_in_physics(physics, slot, scheme),
                       select=lambda path: (len(path) == 2 and _path_names(path)[0] == slot
                                            and _path_names(path)[1] in names),
                       bounds=tuple(limits[names.index(n)] for n in order), names=tuple(order),
                       label=f"{type(scheme).__name__}({', '.join(names)})")
    params, history = _fit(problem, train, test, schedule, directory=directory,
                           checkpoint_every=checkpoint_every, progress=progress)
    fitted = getattr(params, slot)
    return dataclasses.replace(scheme, **{n: float(getattr(fitted, n)) for n in names}), history


__all__ = ["train_online", "calibrate", "load_windows", "history_dataset", "Schedule",
           "LEVEL_FLOOR",
           "TrainingDivergedError", "MODEL_FILE"]
