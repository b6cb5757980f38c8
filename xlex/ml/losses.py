"""The loss of online training (paper eqs. 22-26), as pure JAX functions.

For a window whose hybrid-model states after k = 1..N steps are ``pred`` and
whose coarse-grained truth states are ``truth``, the loss is (eq. 26)

    L = 1/N sum_k [ sum_F f(F) . 1/2 (pred_k F - truth_k F)^2            (eq. 22)
                   + f(qv) . max(-pred_k qv, 0)                          (eq. 23)
                   + sum_G f(lap G) . (lap pred_k G - lap truth_k G)^2 ] (eq. 24)

over the fields F = th', qv', u, v, w and G = th', qv', with ``lap`` the
discrete Laplacian (:func:`laplacian`) and ``f`` the spatially varying scale of
eq. 25, f(F) = (max F - min F) / ([max F] - [min F])^3: the range of F at each
grid point over the training set, over the cube of its range over the whole
level. Each product is averaged over the grid points where the paper sums
it; that changes no minimiser, and Adam's steps do not depend on the loss's
scale, while the numbers stay readable at any grid size.

The errors of th' and th are equal (the base state is the window's own), so
only the statistics need the base state. Winds are compared at their faces.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

#: Fields of the L2 loss (eq. 22), in the order of :attr:`LossScales.l2`.
L2_FIELDS = ("th", "qv", "u", "v", "w")
#: Fields of the Laplacian loss (eq. 24), in the order of :attr:`LossScales.laplacian`.
LAPLACIAN_FIELDS = ("th", "qv")
#: Names of the loss terms, in the order they are reported.
TERMS = ("l2", "negative_qv", "laplacian")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LossScales:
    """The scale factors f_scale of eq. 25, one array per field at its grid points.

    Attributes
    ----------
    l2 : tuple of 5 arrays
        f(F) for th', qv', u, v, w (shapes of the fields: w has nz + 1 levels).
    negative_qv : array (nz, ny, nx)
        f(qv), the weight of the negative-moisture penalty [1 / (kg kg-1)].
    laplacian : tuple of 2 arrays (nz, ny, nx)
        f(lap th'), f(lap qv').
    spacing : tuple of 3 floats
        (dx, dy, dz) [m] of the Laplacian (static).
    """

    l2: tuple
    negative_qv: jax.Array
    laplacian: tuple
    spacing: tuple = dataclasses.field(metadata={"static": True}, default=(1.0, 1.0, 1.0))


def laplacian(a, spacing, xp=jnp):
    """The 7-point Laplacian of a cell-centred field ``(..., nz, ny, nx)``:
    periodic in x and y, zero normal gradient at the walls (the field is
    mirrored there, as for th and qv on an insulated lid and ground)."""
    dx, dy, dz = spacing
    lx = (xp.roll(a, -1, axis=-1) - 2.0 * a + xp.roll(a, 1, axis=-1)) / dx**2
    ly = (xp.roll(a, -1, axis=-2) - 2.0 * a + xp.roll(a, 1, axis=-2)) / dy**2
    above = xp.concatenate([a[..., 1:, :, :], a[..., -1:, :, :]], axis=-3)
    below = xp.concatenate([a[..., :1, :, :], a[..., :-1, :, :]], axis=-3)
    return lx + ly + (above - 2.0 * a + below) / dz**2


def scale_factor(values, axes, *, level_floor=0.0) -> np.ndarray:
    """f_scale of eq. 25 for samples ``values`` (``axes`` index the samples;
    the remaining axes are (level, y, x)): the point range over the cube of
    the level range, 0 on a level that never varied.

    ``level_floor`` (beyond the paper; 0, the default, is eq. 25 exactly)
    floors each level's range at that fraction of the field's range over all
    levels, so that a nearly quiet level is not weighted by up to
    1 / level_floor^3 more than the liveliest one's scale."""
    values = np.asarray(values)
    hi, lo = values.max(axis=axes), values.min(axis=axes)
    level = hi.max(axis=(-2, -1), keepdims=True) - lo.min(axis=(-2, -1), keepdims=True)
    if level_floor:
        whole = hi.max() - lo.min()
        level = np.where(level > 0, np.maximum(level, level_floor * whole), level)
    safe = np.where(level > 0, level, 1.0)
    return np.where(level > 0, (hi - lo) / safe**3, 0.0)


def loss_scales(states, base, spacing, *, level_floor=0.0) -> LossScales:
    """The scales of eq. 25 from training states (numpy; any leading sample axes).

    Parameters
    ----------
    states : State
        Training states with leading axes ``(window, step)`` (or any).
    base : BaseState
        Their base states, with the leading axes of ``states`` up to the
        first (one per window), or unbatched.
    spacing : (dx, dy, dz)
        Grid spacing [m].
    level_floor : float
        See :func:`scale_factor` (0: the paper's eq. 25).
    """
    th0, qv0 = np.asarray(base.th0), np.asarray(base.qv0)
    lead = np.ndim(states.th) - 3
    extra = lead - (th0.ndim - 1)  # sample axes the base state lacks (steps)
    th0 = th0.reshape(th0.shape[:-1] + (1,) * extra + (th0.shape[-1], 1, 1))
    qv0 = qv0.reshape(th0.shape)
    thp = np.asarray(states.th) - th0
    qvp = np.asarray(states.qv) - qv0
    axes = tuple(range(lead))
    fields = (thp, qvp, np.asarray(states.u), np.asarray(states.v), np.asarray(states.w))
    kw = {"level_floor": level_floor}
    lap = tuple(scale_factor(laplacian(f, spacing, np), axes, **kw) for f in (thp, qvp))
    return LossScales(l2=tuple(scale_factor(f, axes, **kw) for f in fields),
                      negative_qv=scale_factor(qvp, axes, **kw), laplacian=lap,
                      spacing=tuple(float(s) for s in spacing))


def l2_loss(pred, truth, scales: LossScales):
    """Eq. 22 for one state: sum over th', qv', u, v, w of the point mean of
    f(F) 1/2 (pred F - truth F)^2."""
    total = 0.0
    for name, f in zip(L2_FIELDS, scales.l2, strict=True):
        err = getattr(pred, name) - getattr(truth, name)
        total = total + jnp.mean(f * 0.5 * err**2)
    return total


def negative_qv_loss(pred, scales: LossScales):
    """Eq. 23 for one state: the point mean of f(qv) max(-qv, 0)."""
    return jnp.mean(scales.negative_qv * jnp.maximum(-pred.qv, 0.0))


def laplacian_loss(pred, truth, scales: LossScales):
    """Eq. 24 for one state: sum over th', qv' of the point mean of
    f(lap G) (lap pred G - lap truth G)^2 (the Laplacian of the difference)."""
    total = 0.0
    for name, f in zip(LAPLACIAN_FIELDS, scales.laplacian, strict=True):
        err = laplacian(getattr(pred, name) - getattr(truth, name), scales.spacing)
        total = total + jnp.mean(f * err**2)
    return total


def rollout_loss(pred, truth, scales: LossScales) -> dict:
    """Eq. 26: each term averaged over the N look-ahead states, and their sum.

    ``pred`` and ``truth`` are States stacked along a leading look-ahead axis
    (k = 1..N). Returns ``{"l2", "negative_qv", "laplacian", "total"}`` (scalars).
    """
    def per_state(p, t):
        return {"l2": l2_loss(p, t, scales), "negative_qv": negative_qv_loss(p, scales),
                "laplacian": laplacian_loss(p, t, scales)}

    terms = jax.tree.map(jnp.mean, jax.vmap(per_state)(pred, truth))
    terms["total"] = terms["l2"] + terms["negative_qv"] + terms["laplacian"]
    return terms


__all__ = ["LossScales", "loss_scales", "laplacian", "scale_factor", "l2_loss",
           "negative_qv_loss", "laplacian_loss", "rollout_loss", "TERMS"]
