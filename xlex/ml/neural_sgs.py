"""The neural subgrid model as a physics scheme (paper eqs. 15-21).

After every full dynamics step the state is corrected by the network,
state += correction (eqs. 17-19), and (by default) the winds are projected
again onto the constraint div(rho0 thrho0 u) = 0.

``NeuralSGS`` goes in the ``sgs`` slot: ``ds.lex.integrate(..., sgs=model)``.
Its weights and normalisation statistics are leaves of the physics pytree,
so ``jax.grad`` of anything computed from a run reaches every weight
(``xlex.parameters(physics).sgs.weights``); the network's shape and the
options are static.

How the correction of thrho becomes one of th: the network corrects thrho
and qv, and th is recovered from the corrected pair, th = thrho / (1 +
(1/eps - 1) qv), written as th + [new th - old th] so that a zero correction
leaves th bit for bit.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from xlex.core import constants as c
from xlex.core.errors import GridMismatchError, OptionTypeError, XlexError
from xlex.core.grid import Grid
from xlex.core.operators import (
    interp_x_centre_to_face,
    interp_y_centre_to_face,
    interp_z_centre_to_face,
    zero_walls,
)
from xlex.core.physics.scheme import (
    PhysicsScheme,
    check_choice,
    check_flag,
    parameter,
    registry_name,
    scheme,
)
from xlex.ml.network import (
    INPUTS,
    OUTPUTS,
    PRESETS,
    NetworkConfig,
    build_autoencoder,
    count_parameters,
    network_inputs,
    pad_ghost,
    strip_ghost,
)
from xlex.ml.normalisation import Normalisation

#: The file format of :meth:`NeuralSGS.save` (raised when the layout changes).
FORMAT = "xlex-neural-sgs"
FORMAT_VERSION = 1
DTYPES = ("float32", "float64")
#: Input channels of u and v (negated by mirrors, swapped by the x <-> y transpose).
_U_IN, _V_IN = 3, 4
_U_OUT, _V_OUT = 2, 3


class ModelFileError(XlexError, ValueError):
    """A neural model file that is missing, of another format or version, or changed."""


@functools.lru_cache(maxsize=32)
def graphdef(config: NetworkConfig):
    """The (static) structure of the network of ``config``, without weights."""
    return nnx.graphdef(nnx.eval_shape(lambda: build_autoencoder(config)))


@scheme
class NeuralSGS(PhysicsScheme):
    """A learned correction of the state after every step (sgs slot).

    Build one with :meth:`create` (new weights) or :meth:`load` (a saved model).

    Parameters
    ----------
    config : NetworkConfig
        The network's shape (static).
    grid : Grid
        The grid the model is built for (static); a run on another grid is refused.
    weights : dict
        The network's weights (a pytree of arrays; differentiable leaves).
    normalisation : Normalisation
        Training-set statistics (leaves, held fixed: no gradient flows to them).
    symmetric : bool
        Average the correction over the horizontal mirrors (and the x <-> y swap
        when nx == ny and dx == dy), transforming the winds with them, so a
        symmetric state gets an exactly symmetric correction (8x the network's
        cost on a square grid, 4x otherwise).
    project : bool
        Project the corrected winds onto the constraint (default True: the
        divergence stays at the solver's tolerance).
    precision : {"float32", "float64"}
        Arithmetic of the network (default float32 inference; train in float64).
    source : str, optional
        The file the model was loaded from or saved to (recorded with runs).
    """

    config: NetworkConfig
    grid: Grid
    weights: dict = parameter()
    normalisation: Normalisation = parameter()
    symmetric: bool = False
    project: bool = True
    precision: str = "float32"
    source: str | None = None

    def __post_init__(self):
        if not isinstance(self.config, NetworkConfig):
            raise OptionTypeError(f"NeuralSGS(config=...) must be a NetworkConfig, got "
                                  f"{type(self.config).__name__}")
        if not isinstance(self.grid, Grid):
            raise OptionTypeError(f"NeuralSGS(grid=...) must be a Grid, got "
                                  f"{type(self.grid).__name__}")
        check_flag("NeuralSGS", "symmetric", self.symmetric)
        check_flag("NeuralSGS", "project", self.project)
        check_choice("NeuralSGS", "precision", self.precision, DTYPES)
        self.config.check_shape(self.grid.shape)
        if not isinstance(self.normalisation, Normalisation):
            raise OptionTypeError("NeuralSGS(normalisation=...) must be a Normalisation "
                                  "(xlex.ml.normalisation_from_data(train))")
        if tuple(self.normalisation.grid_shape) != self.grid.shape:
            raise GridMismatchError(
                f"the normalisation statistics are for a grid of {self.normalisation.grid_shape} "
                f"(nz, ny, nx) cells, the model for {self.grid.shape}: compute them on "
                "training data of the model's grid")
        nz = self.grid.nz
        want = {"input_min": (len(INPUTS), nz), "input_max": (len(INPUTS), nz),
                "output_range": (len(OUTPUTS), *self.grid.shape)}
        for name, shape in want.items():
            got = tuple(np.shape(getattr(self.normalisation, name)))
            if got != shape:
                raise GridMismatchError(
                    f"the normalisation statistic {name} has shape {got}, the model needs "
                    f"{shape} (inputs {INPUTS} or outputs {OUTPUTS} by level/point): compute "
                    "it with xlex.ml.normalisation_from_data(train)")

    @classmethod
    def create(cls, data, normalisation: Normalisation | None = None, *,
               preset: str = "default", config: NetworkConfig | None = None, seed: int = 0,
               **options) -> NeuralSGS:
        """A new model with weights drawn from ``seed`` and a last layer of zeros
        (so it corrects nothing until trained).

        ``data`` is the training set (from :func:`xlex.ml.make_training_data`):
        the model takes its grid and, unless ``normalisation`` is given, its
        statistics (:func:`xlex.ml.normalisation_from_data`). Or ``data`` is a
        :class:`~xlex.core.grid.Grid`, with the statistics given.
        ``preset`` names a configuration of :data:`xlex.ml.network.PRESETS`
        (``"default"``: 74,005 weights; ``"paper"``: 7,172,309); ``config``
        overrides it. Other keywords are the options of the class
        (``symmetric``, ``project``, ``precision``).
        """
        grid = data
        if not isinstance(data, Grid):
            from xlex.ml.normalisation import dataset_grid, normalisation_from_data
            grid = dataset_grid(data)
            if normalisation is None:
                (config or PRESETS.get(preset, PRESETS["default"])).check_shape(grid.shape)
                normalisation = normalisation_from_data(data)
        elif normalisation is None:
            raise OptionTypeError("NeuralSGS.create(grid) needs the normalisation statistics "
                                  "(xlex.ml.normalisation_from_data(train)), or pass the "
                                  "training set itself: NeuralSGS.create(train)")
        if config is None:
            check_choice("NeuralSGS.create", "preset", preset, tuple(PRESETS))
            config = PRESETS[preset]
        if not isinstance(config, NetworkConfig):
            raise OptionTypeError("NeuralSGS.create(config=...) must be a NetworkConfig")
        if not isinstance(grid, Grid):
            raise OptionTypeError(f"NeuralSGS.create(grid=...) must be a Grid, got "
                                  f"{type(grid).__name__}")
        config.check_shape(grid.shape)  # before drawing any weight
        weights = nnx.to_pure_dict(nnx.state(build_autoencoder(config, seed=seed)))
        if options.get("precision") == "float64":  # flax draws float32 weights
            weights = jax.tree.map(lambda a: np.asarray(a, np.float64), weights)
        return cls(config=config, grid=grid, weights=weights, normalisation=normalisation,
                   **options)

    @property
    def projects_correction(self) -> bool:
        return self.project

    @property
    def parameter_count(self) -> int:
        """Number of trainable weights."""
        return count_parameters(self.weights)

    def check(self, grid):
        if grid != self.grid:
            raise GridMismatchError(
                f"this neural model was built for the grid {_describe(self.grid)}, the run is "
                f"on {_describe(grid)}: train a model on data of the run's grid (coarse-grain "
                "the truth runs to it with make_training_data)")

    # -- the correction --------------------------------------------------------

    def correction(self, state, base):
        """The correction ``(..., nz, ny, nx, 5)`` of thrho, qv, u, v, w at the
        cell centres, in the state's dtype."""
        x = network_inputs(state, base)
        if not self.symmetric:
            return self._apply(x)
        group = _symmetry_group(self.grid)
        batch = jnp.stack([_transform(x, g, _U_IN, _V_IN) for g in group])
        out = self._apply(batch)
        back = [_untransform(out[i], g, _U_OUT, _V_OUT) for i, g in enumerate(group)]
        return sum(back[1:], back[0]) / len(group)

    def _apply(self, x):
        """Normalise, pad, run the network, strip and scale (eqs. 20-21)."""
        stats = jax.lax.stop_gradient(self.normalisation)
        dtype = jnp.dtype(self.precision)
        xn = stats.normalise(x, jnp).astype(dtype)
        ghost = self.config.ghost
        padded = pad_ghost(xn, ghost)
        lead = padded.shape[:-4]
        net = nnx.merge(graphdef(self.config),
                        jax.tree.map(lambda a: jnp.asarray(a, dtype), self.weights))
        y = net(padded.reshape(-1, *padded.shape[-4:]))
        y = strip_ghost(y.reshape(*lead, *y.shape[1:]), ghost).astype(x.dtype)
        return stats.scale(y, jnp)

    def correct(self, state, base, grid):
        t = self.correction(state, base)
        d_thrho, d_qv, du, dv, dw = (t[..., i] for i in range(5))
        factor = 1.0 + c.VIRTUAL * state.qv
        thrho = state.th * factor
        qv = state.qv + d_qv
        th_new = (thrho + d_thrho) / (1.0 + c.VIRTUAL * qv)
        th = state.th + (th_new - thrho / factor)
        return dataclasses.replace(
            state, th=th, qv=qv,
            u=state.u + interp_x_centre_to_face(du),
            v=state.v + interp_y_centre_to_face(dv),
            w=state.w + zero_walls(interp_z_centre_to_face(dw)))

    # -- files -----------------------------------------------------------------

    def to_dict(self) -> dict:
        """The recorded form: where the model file is and its checksum (a run that
        resumes loads that file and refuses one whose checksum differs)."""
        return {"scheme": registry_name(type(self)), "path": self.source,
                "sha256": hashlib.sha256(self.to_bytes()).hexdigest(),
                "symmetric": self.symmetric, "project": self.project,
                "precision": self.precision}

    @classmethod
    def from_record(cls, data: dict) -> NeuralSGS:
        """The model a run recorded with :meth:`to_dict`, checked against its checksum."""
        path = data.get("path")
        if not path:
            raise ModelFileError("the run used a neural model that was never saved, so it "
                                 "cannot be loaded again: save models (model.save(path)) "
                                 "before running with them")
        raw = _read_model_file(Path(path))
        digest = hashlib.sha256(raw).hexdigest()
        if digest != data.get("sha256"):
            raise ModelFileError(
                f"the neural model file {path!r} has changed since the run used it (sha256 "
                f"{digest[:12]}..., the run recorded {str(data.get('sha256'))[:12]}...): "
                "give the run the file it was made with")
        return cls._from_bytes(raw, Path(path), symmetric=data.get("symmetric", False),
                               project=data.get("project", True),
                               precision=data.get("precision", "float32"))

    def to_bytes(self) -> bytes:
        """The model (configuration, grid, weights, statistics) in the format of
        :meth:`save`."""
        from flax import serialization

        from xlex import __version__
        content = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "xlex_version": __version__,
            "config": self.config.to_dict(), "grid": dataclasses.asdict(self.grid),
            "weights": _str_keys(jax.tree.map(np.asarray, self.weights)),
            "normalisation": self.normalisation.to_numpy(),
        }
        return serialization.msgpack_serialize(content)

    def save(self, path) -> NeuralSGS:
        """Write the model to ``path`` (written beside it, then renamed into place)
        and return it with ``source`` set to that file."""
        path = Path(path)
        data = self.to_bytes()
        tmp = path.with_name(path.name + ".part")
        try:
            tmp.write_bytes(data)
            tmp.replace(path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise ModelFileError(f"saving the neural model to {str(path)!r} failed: "
                                 f"{err}") from None
        return dataclasses.replace(self, source=str(path.resolve()))

    @classmethod
    def load(cls, path, **options) -> NeuralSGS:
        """The model saved at ``path`` (options as in :meth:`create` override the
        defaults ``symmetric=False, project=True, precision="float32"``)."""
        return cls._from_bytes(_read_model_file(Path(path)), Path(path), **options)

    @classmethod
    def _from_bytes(cls, raw: bytes, path: Path, **options) -> NeuralSGS:
        from flax import serialization
        try:
            content = serialization.msgpack_restore(raw)
        except Exception as err:  # msgpack raises several unrelated types
            raise ModelFileError(f"{str(path)!r} is not a neural model file written by xlex "
                                 f"({type(err).__name__}: {err})") from None
        if not isinstance(content, dict) or content.get("format") != FORMAT:
            raise ModelFileError(f"{str(path)!r} is not a neural model file written by xlex "
                                 "(model.save(path))")
        version = content.get("format_version")
        if version != FORMAT_VERSION:
            raise ModelFileError(
                f"{str(path)!r} is a neural model file of format version {version} (written "
                f"by xlex {content.get('xlex_version')}); this xlex reads version "
                f"{FORMAT_VERSION}: load it with the xlex that wrote it")
        config = NetworkConfig(**{k: tuple(v) if isinstance(v, list) else v
                                  for k, v in content["config"].items()})
        grid = Grid(**content["grid"])
        template = nnx.to_pure_dict(nnx.state(nnx.eval_shape(lambda: build_autoencoder(config))))
        weights = _restore_keys(template, content["weights"])
        stats = Normalisation(**{k: np.asarray(v) for k, v in content["normalisation"].items()})
        return cls(config=config, grid=grid, weights=weights, normalisation=stats,
                   source=str(path.resolve()), **options)


def _read_model_file(path: Path) -> bytes:
    if not path.is_file():
        raise ModelFileError(f"no neural model file at {str(path)!r}; check the path "
                             "(models are written by model.save(path))")
    return path.read_bytes()


def _describe(grid: Grid) -> str:
    return (f"{grid.nx} x {grid.ny} x {grid.nz} cells of {grid.dx:g} x {grid.dy:g} x "
            f"{grid.dz:g} m")


def _str_keys(tree):
    if isinstance(tree, dict):
        return {str(k): _str_keys(v) for k, v in tree.items()}
    return tree


def _restore_keys(template, loaded):
    """``loaded`` (string keys) with the keys and nesting of ``template``."""
    if isinstance(template, dict):
        if not isinstance(loaded, dict) or set(map(str, template)) != set(loaded):
            raise ModelFileError("the weights in the model file do not match its network "
                                 "configuration")
        return {k: _restore_keys(v, loaded[str(k)]) for k, v in template.items()}
    array = np.asarray(loaded)
    if array.shape != template.shape:
        raise ModelFileError(f"a weight of shape {array.shape} in the model file does not "
                             f"match its network configuration ({template.shape})")
    return array


# -- the symmetry group --------------------------------------------------------

def _symmetry_group(grid: Grid):
    """(mirror x, mirror y, swap x <-> y) of every element of the group."""
    swaps = (False, True) if grid.nx == grid.ny and grid.dx == grid.dy else (False,)
    return [(mx, my, sw) for sw in swaps for my in (False, True) for mx in (False, True)]


def _transform(a, g, iu, iv):
    """Apply g to centred fields ``(..., z, y, x, C)``: mirrors flip their axis and
    negate the wind along it; the swap transposes x and y and exchanges u, v."""
    mx, my, sw = g
    sign = jnp.ones(a.shape[-1], a.dtype)
    if mx:
        a = jnp.flip(a, axis=-2)
        sign = sign.at[iu].multiply(-1.0)
    if my:
        a = jnp.flip(a, axis=-3)
        sign = sign.at[iv].multiply(-1.0)
    a = a * sign.reshape((1,) * (a.ndim - 1) + (-1,))
    if sw:
        a = jnp.swapaxes(a, -3, -2)
        order = list(range(a.shape[-1]))
        order[iu], order[iv] = iv, iu
        a = a[..., order]
    return a


def _untransform(a, g, iu, iv):
    """The inverse of :func:`_transform` (undo the swap, then the mirrors)."""
    mx, my, sw = g
    if sw:
        a = _transform(a, (False, False, True), iu, iv)
    return _transform(a, (mx, my, False), iu, iv)


__all__ = ["NeuralSGS", "ModelFileError", "graphdef"]
