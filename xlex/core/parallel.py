"""Runs over several devices with JAX's own SPMD machinery.

Two ways to split a run, each a one-axis :class:`jax.sharding.Mesh`:

* **the domain** (mesh axis ``"y"``): every field is split into slabs along y,
  one per device. The step is compiled once for the whole domain and the
  compiler partitions it: the periodic shifts of the stencils become halo
  exchanges between neighbours (collective permutes) and the Krylov solver's
  inner products all-reduces. The one operation it would partition badly is
  the FFT of the pressure preconditioner (a transform along a split axis
  gathers the whole array on every device), so that is written by hand with
  :func:`jax.shard_map`: FFT along x on each slab, an all-to-all that
  transposes to slabs of x-wavenumbers, FFT along y and the tridiagonal
  solves in z, and back (:func:`xlex.core.dynamics.pressure.fft_tridiagonal_preconditioner`).
* **the members** of an ensemble (mesh axis ``"member"``): each device runs
  its share of the members; nothing is exchanged between devices.

The mesh in force (``with jax.set_mesh(mesh)``) while a step is traced says
which applies; without one, nothing changes. Results equal single-device ones
to round-off (the order of the sums in the inner products differs).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

#: Mesh axis of a domain split into slabs along y.
DOMAIN_AXIS = "y"
#: Mesh axis of an ensemble split by members.
MEMBER_AXIS = "member"


def domain_split() -> int:
    """Number of slabs along y that the mesh in force splits the domain into
    (1 without a mesh, or with a mesh of members)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or DOMAIN_AXIS not in mesh.axis_names:
        return 1
    return int(mesh.shape[DOMAIN_AXIS])


def make_mesh(devices, axis: str) -> Mesh:
    """A one-axis mesh named ``axis`` over ``devices`` (a sequence of jax devices)."""
    return Mesh(np.asarray(list(devices), dtype=object), (axis,))


def field_spec(ndim: int, axis: str, batched: bool) -> PartitionSpec:
    """How a ``(..., z, y, x)`` field of ``ndim`` axes is split: along y on a
    domain mesh; along its leading (member) axis on a member mesh when
    ``batched``; otherwise not at all."""
    if axis == DOMAIN_AXIS and ndim >= 3:
        return PartitionSpec(*([None] * (ndim - 2)), DOMAIN_AXIS, None)
    if axis == MEMBER_AXIS and batched and ndim >= 1:
        return PartitionSpec(MEMBER_AXIS, *([None] * (ndim - 1)))
    return PartitionSpec()


def place(tree, mesh: Mesh, *, batched: bool):
    """``tree``'s arrays on ``mesh``'s devices, split as :func:`field_spec` says
    (profiles and scalars copied to every device)."""
    axis = mesh.axis_names[0]

    def put(a):
        return jax.device_put(a, NamedSharding(mesh, field_spec(a.ndim, axis, batched)))

    return jax.tree.map(put, tree)


__all__ = ["DOMAIN_AXIS", "MEMBER_AXIS", "domain_split", "make_mesh", "field_spec", "place"]
