"""The 3-D convolutional autoencoder of the neural subgrid model (paper
section 2.2.2, Figure 1), and the map between the model state and its inputs
and outputs.

The network sees six fields at the cell centres, channels last
``(..., z, y, x, 6)``: thrho', pi', qv', u, v, w (:data:`INPUTS`), padded with
ghost points that honour the boundaries (periodic in x and y; mirrored at the
rigid walls in z, with w changing sign). It returns corrections of thrho, qv,
u, v, w at the centres (:data:`OUTPUTS`), from which the ghost points are
stripped. The encoder halves the grid ``len(widths) - 1`` times (average
pooling) and the decoder doubles it back (nearest-neighbour repetition), with
``convs_per_level`` 3x3x3 'same' convolutions at every level.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from xlex.core import constants as c
from xlex.core.errors import OptionError, OptionTypeError
from xlex.core.operators import centred_winds

#: Network inputs, in channel order.
INPUTS = ("thrho_pert", "pi_pert", "qv_pert", "u", "v", "w")
#: Network outputs (corrections), in channel order.
OUTPUTS = ("thrho", "qv", "u", "v", "w")
ACTIVATIONS = ("gelu", "relu", "silu", "tanh")


@dataclasses.dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    """The shape of the autoencoder.

    Parameters
    ----------
    widths : tuple of int
        Channels at each level, finest first; ``len(widths) - 1`` halvings.
    convs_per_level : int
        3x3x3 convolutions (each followed by the activation) per level, in
        the encoder and in the decoder.
    activation : str
        One of :data:`ACTIVATIONS`; the paper's text says GELU (its published
        code uses ReLU).
    ghost : int
        Ghost points added on every side before the network and stripped after.
    """

    widths: tuple = (16, 32)
    convs_per_level: int = 2
    activation: str = "gelu"
    ghost: int = 1

    def __post_init__(self):
        widths = self.widths
        if isinstance(widths, list):
            object.__setattr__(self, "widths", tuple(widths))
            widths = self.widths
        if not isinstance(widths, tuple) or not widths or not all(
                isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
            raise OptionTypeError(f"NetworkConfig(widths={widths!r}) must be a tuple of positive "
                                  "channel counts, finest level first, e.g. (16, 32)")
        for name in ("convs_per_level", "ghost"):
            value = getattr(self, name)
            low = 1 if name == "convs_per_level" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise OptionError(f"NetworkConfig({name}={value!r}) must be an integer >= {low}")
        if self.activation not in ACTIVATIONS:
            raise OptionError(f"NetworkConfig(activation={self.activation!r}) is not known; "
                              f"choose one of {ACTIVATIONS}")

    @property
    def halvings(self) -> int:
        return len(self.widths) - 1

    def check_shape(self, shape):
        """Refuse a grid ``(nz, ny, nx)`` whose padded sizes cannot be halved
        :attr:`halvings` times, naming sizes that can."""
        step = 2 ** self.halvings
        for name, n in zip(("nz", "ny", "nx"), shape, strict=True):
            if (n + 2 * self.ghost) % step:
                ok = [m for m in range(max(1, n - step), n + step + 1)
                      if (m + 2 * self.ghost) % step == 0]
                raise OptionError(
                    f"the network cannot take {name}={n}: with {self.ghost} ghost point(s) on "
                    f"each side the size {n + 2 * self.ghost} must be divisible by {step} (it "
                    f"is halved {self.halvings} times). Sizes that work near it: {ok}; or "
                    f"change ghost or the number of widths")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"widths": list(self.widths)}


#: Named configurations: ``paper`` has about the size of the paper's network
#: (7.09 million parameters; its layer widths are not published).
PRESETS = {
    "default": NetworkConfig(widths=(16, 32), convs_per_level=2),
    "paper": NetworkConfig(widths=(80, 160, 288), convs_per_level=2, ghost=2),
}


def _activation(name):
    return {"gelu": jax.nn.gelu, "relu": jax.nn.relu, "silu": jax.nn.silu,
            "tanh": jnp.tanh}[name]


class ConvAutoencoder(nnx.Module):
    """Encoder-decoder of 3x3x3 'same' convolutions on ``(..., z, y, x, C)``
    inputs (see the module docstring); ``config`` is a :class:`NetworkConfig`."""

    def __init__(self, config: NetworkConfig, *, rngs):
        conv = dict(kernel_size=(3, 3, 3), padding="SAME", rngs=rngs)
        n = config.convs_per_level
        encoder, width = [], len(INPUTS)
        for w in config.widths:
            encoder.append(nnx.List([nnx.Conv(width if i == 0 else w, w, **conv)
                                     for i in range(n)]))
            width = w
        decoder = []
        for w in reversed(config.widths[:-1]):
            decoder.append(nnx.List([nnx.Conv(width if i == 0 else w, w, **conv)
                                     for i in range(n)]))
            width = w
        self.encoder = nnx.List(encoder)
        self.decoder = nnx.List(decoder)
        # the last convolution starts at zero: an untrained model corrects nothing
        self.head = nnx.Conv(width, len(OUTPUTS), kernel_init=nnx.initializers.zeros, **conv)
        self.activation = config.activation

    def __call__(self, x):
        act = _activation(self.activation)
        for level, convs in enumerate(self.encoder):
            if level:
                x = _halve(x)
            for layer in convs:
                x = act(layer(x))
        for convs in self.decoder:
            x = _double(x)
            for layer in convs:
                x = act(layer(x))
        return self.head(x)


def build_autoencoder(config: NetworkConfig, *, seed: int = 0) -> ConvAutoencoder:
    """A new :class:`ConvAutoencoder` with weights drawn from ``seed``."""
    return ConvAutoencoder(config, rngs=nnx.Rngs(seed))


def _halve(x):
    """2x2x2 average pooling of ``(..., z, y, x, C)``."""
    *lead, nz, ny, nx, ch = x.shape
    return x.reshape(*lead, nz // 2, 2, ny // 2, 2, nx // 2, 2, ch).mean(axis=(-6, -4, -2))


def _double(x):
    """Nearest-neighbour doubling of ``(..., z, y, x, C)``."""
    for axis in (-4, -3, -2):
        x = jnp.repeat(x, 2, axis=axis)
    return x


def count_parameters(weights) -> int:
    """Number of trainable numbers in a weights pytree."""
    return int(sum(a.size for a in jax.tree.leaves(weights)))


# --- the model state <-> the network's fields --------------------------------

def network_inputs(state, base, xp=jnp):
    """The six input fields at the centres, stacked last: ``(..., nz, ny, nx, 6)``.

    thrho' = thrho - thrho0 and qv' = qv - qv0 are deviations from the base
    state; pi' is the model's pressure perturbation; the winds are averaged
    from the faces to the centres.
    """
    th0 = base.th0[:, None, None]
    qv0 = base.qv0[:, None, None]
    thrho = state.th * (1.0 + c.VIRTUAL * state.qv)
    thrho_pert = thrho - th0 * (1.0 + c.VIRTUAL * qv0)
    uc, vc, wc = centred_winds(state.u, state.v, state.w, xp)
    return xp.stack([thrho_pert, state.pi, state.qv - qv0, uc, vc, wc], axis=-1)


def pad_ghost(x, ghost: int):
    """Ghost points on every side of ``(..., z, y, x, C)`` inputs: periodic in x
    and y; in z mirrored at the walls (free slip, no flux), with w (the last
    channel) changing sign as it does through a rigid wall."""
    if ghost == 0:
        return x
    nd = x.ndim
    wrap = [(0, 0)] * nd
    wrap[nd - 3] = wrap[nd - 2] = (ghost, ghost)
    x = jnp.pad(x, wrap, mode="wrap")
    sign = jnp.ones(x.shape[-1], x.dtype).at[-1].set(-1.0).reshape((1,) * (nd - 1) + (-1,))
    below = x[..., :ghost, :, :, :][..., ::-1, :, :, :] * sign
    above = x[..., -ghost:, :, :, :][..., ::-1, :, :, :] * sign
    return jnp.concatenate([below, x, above], axis=-4)


def strip_ghost(x, ghost: int):
    """``x`` without its ghost points (the inverse of :func:`pad_ghost`'s padding)."""
    if ghost == 0:
        return x
    return x[..., ghost:-ghost, ghost:-ghost, ghost:-ghost, :]


__all__ = ["INPUTS", "OUTPUTS", "NetworkConfig", "PRESETS", "ConvAutoencoder",
           "build_autoencoder",
           "count_parameters", "network_inputs", "pad_ghost", "strip_ghost"]
