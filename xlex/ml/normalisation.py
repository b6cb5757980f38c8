"""Normalisation of the neural subgrid model (paper eqs. 20-21).

Inputs are min-max normalised per height level: for each input field and
level, the least and greatest value over every point of that level in every
state of the training set (eq. 20). Outputs are multiplied by the range
(max - min) of the corrected field at each grid point over the training set
(eq. 21), so a point where a field never varied gets no correction. The
statistics come from the training data only and are saved with the model.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from xlex.core import constants as c
from xlex.core.errors import DatasetError
from xlex.core.operators import centred_winds
from xlex.core.state import BaseState, State
from xlex.ml.network import INPUTS, OUTPUTS, network_inputs


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Normalisation:
    """Training-set statistics of the network's inputs and outputs.

    Attributes
    ----------
    input_min, input_max : array (6, nz)
        Least and greatest value of each input (:data:`~xlex.ml.network.INPUTS`)
        at each level over the training set.
    output_range : array (5, nz, ny, nx)
        max - min of each corrected field (:data:`~xlex.ml.network.OUTPUTS`,
        winds at the centres) at each grid point over the training set.
    """

    input_min: jax.Array
    input_max: jax.Array
    output_range: jax.Array

    def normalise(self, x, xp=np):
        """Inputs ``(..., nz, ny, nx, 6)`` mapped to [0, 1] per level (eq. 20);
        0 where a field did not vary over a level."""
        lead = (1,) * (x.ndim - 4)
        lo = xp.moveaxis(self.input_min, 0, -1)[:, None, None, :].reshape(*lead, -1, 1, 1,
                                                                          x.shape[-1])
        span = xp.moveaxis(self.input_max - self.input_min, 0, -1)[:, None, None, :]
        span = span.reshape(lo.shape)
        safe = xp.where(span > 0, span, 1.0)
        return xp.where(span > 0, (x - lo) / safe, 0.0)

    def scale(self, y, xp=np):
        """Network outputs ``(..., nz, ny, nx, 5)`` times each point's range (eq. 21)."""
        span = xp.moveaxis(self.output_range, 0, -1)
        return y * span.reshape((1,) * (y.ndim - 4) + span.shape)

    @property
    def grid_shape(self):
        """The grid ``(nz, ny, nx)`` the statistics were computed on."""
        return tuple(self.output_range.shape[1:])

    def to_numpy(self) -> dict:
        return {f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)}


def corrected_fields(state, xp=np):
    """The fields the network corrects, at the centres, stacked last:
    ``(..., nz, ny, nx, 5)`` of thrho, qv, u, v, w."""
    uc, vc, wc = centred_winds(state.u, state.v, state.w, xp)
    thrho = state.th * (1.0 + c.VIRTUAL * state.qv)
    return xp.stack([thrho, state.qv, uc, vc, wc], axis=-1)


class StatisticsAccumulator:
    """Running extremes over batches of states (so a large training set is read
    once, a piece at a time)."""

    def __init__(self):
        self.in_min = self.in_max = self.out_min = self.out_max = None

    def add(self, state: State, base: BaseState):
        """Take in ``state`` (numpy arrays with any leading batch axes)."""
        x = np.asarray(network_inputs(state, base, np))
        y = np.asarray(corrected_fields(state, np))
        x = x.reshape(-1, *x.shape[-4:])
        y = y.reshape(-1, *y.shape[-4:])
        level_axes = (0, 2, 3)  # batch, y, x of (batch, z, y, x, channel)
        lo, hi = x.min(axis=level_axes).T, x.max(axis=level_axes).T
        ylo, yhi = np.moveaxis(y.min(axis=0), -1, 0), np.moveaxis(y.max(axis=0), -1, 0)
        if self.in_min is None:
            self.in_min, self.in_max, self.out_min, self.out_max = lo, hi, ylo, yhi
        else:
            self.in_min = np.minimum(self.in_min, lo)
            self.in_max = np.maximum(self.in_max, hi)
            self.out_min = np.minimum(self.out_min, ylo)
            self.out_max = np.maximum(self.out_max, yhi)

    def result(self) -> Normalisation:
        if self.in_min is None:
            raise DatasetError("no training states were given: the normalisation statistics "
                               "need at least one state")
        return Normalisation(input_min=self.in_min, input_max=self.in_max,
                             output_range=self.out_max - self.out_min)


def normalisation_from_states(state: State, base: BaseState) -> Normalisation:
    """The statistics of the states ``state`` (numpy arrays, any leading axes)."""
    acc = StatisticsAccumulator()
    acc.add(state, base)
    return acc.result()


def _lead_dims(data):
    spatial = {"zh", "zf", "yh", "yf", "xh", "xf"}
    if "th" not in data:
        raise DatasetError("the training data have no 'th': give the train set of "
                           "xlex.ml.make_training_data or a run of integrate")
    return [d for d in data["th"].dims if d not in spatial]


def dataset_grid(data):
    """The model grid of a training set or run (checked against the contract)."""
    from xlex.io.convert import dataset_to_inputs
    first = data.isel({d: 0 for d in _lead_dims(data)})
    return dataset_to_inputs(first).grid


def normalisation_from_data(data) -> Normalisation:
    """The statistics of a training set: a contract Dataset whose leading dims
    index its states (``window`` and ``step`` from
    :func:`xlex.ml.make_training_data`, or ``time`` and ensemble members of a
    run), read one entry of its first leading dim at a time."""
    from xlex.io.convert import dataset_to_inputs

    lead = _lead_dims(data)
    if not lead:
        data = data.expand_dims("sample")
        lead = ["sample"]
    acc = StatisticsAccumulator()
    for index in range(data.sizes[lead[0]]):
        piece = data.isel({lead[0]: index})  # base profiles lose the window dim
        if "time" in lead[1:]:  # dataset_to_inputs reads only the last record of a time dim
            piece = piece.rename({"time": "record"})
        inputs = dataset_to_inputs(piece)
        state = State(**{k: np.asarray(v) for k, v in inputs.state.items()})
        acc.add(state, BaseState(**{k: np.asarray(v) for k, v in inputs.base.items()}))
    return acc.result()


__all__ = ["Normalisation", "normalisation_from_states", "normalisation_from_data", "dataset_grid",
           "corrected_fields", "INPUTS", "OUTPUTS"]
