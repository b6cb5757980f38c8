"""Ready-made initial states (``xlex.cases.warm_bubble(...)``,
``xlex.cases.convective_boundary_layer(...)``, ``xlex.cases.density_current(...)``,
``xlex.cases.gravity_wave(...)``).

Ensembles: a parameter of the initial perturbation given as a list (or tuple,
or 1-D array) builds one member per entry, stacked along a leading ``member``
dimension, with the values in a coordinate named after the parameter, e.g.
``theta_c(member)``. ``ds.lex.integrate`` runs all members at once (vmapped).
Lists given for several parameters pair up member by member, so they need the
same length (for every combination, build the product yourself, e.g. with
``itertools.product``). Parameters that set the grid, the base state or the
physics cannot vary: the members of one Dataset share them.
"""

from __future__ import annotations

import functools
import inspect
import numbers

import numpy as np
import xarray as xr

from xlex.core.errors import OptionError, OptionTypeError, XlexError
from xlex.io import cases as _single
from xlex.io.cases import BYTES_PER_CELL, _physical_memory

#: Per builder, the parameters that may vary across members: those that only
#: change the initial fields (grid, base state and physics are shared).
ENSEMBLE_PARAMETERS = {
    "warm_bubble": ("theta_c", "x_centre", "y_centre", "z_centre", "x_radius", "y_radius",
                    "z_radius"),
    "convective_boundary_layer": ("u", "v", "perturbation", "perturbation_depth", "seed"),
    "density_current": ("temperature_perturbation", "x_centre", "z_centre", "x_radius",
                        "z_radius"),
    "gravity_wave": ("amplitude", "x_centre", "half_width", "u"),
}

MEMBER = "member"


def _is_list(value) -> bool:
    """A list, tuple or array of one or more dims (a string or 0-d array is a scalar)."""
    return isinstance(value, (list, tuple, range)) or getattr(value, "ndim", 0) >= 1


def _member_values(lists: dict) -> int:
    """The number of members the lists give; refuse empty, multi-dim or unequal lists."""
    sizes = {}
    for name, value in lists.items():
        if getattr(value, "ndim", 1) != 1:
            raise OptionError(f"{name} must be one number or a 1-D list of numbers (one per "
                              f"ensemble member), got an array of shape {np.shape(value)}")
        sizes[name] = len(value)
        if not sizes[name]:
            raise OptionError(f"{name}={list(value)!r} gives no ensemble members; give at "
                              "least one value")
        for i, entry in enumerate(value):
            # before anything is built; ranges are checked by the builder, per member
            if isinstance(entry, (bool, np.bool_)) or not isinstance(entry, numbers.Real):
                raise OptionTypeError(f"{name}[{i}] must be a number (one per ensemble "
                                      f"member), got {type(entry).__name__} {entry!r}")
    if len(set(sizes.values())) > 1:
        told = ", ".join(f"{name} has {n}" for name, n in sizes.items())
        raise OptionError(f"ensemble lists of different lengths ({told} values): lists given "
                          "for several parameters pair up member by member, so they need the "
                          "same length (for every combination, build the lists with "
                          "itertools.product)")
    return next(iter(sizes.values()))


def _check_varying(builder_name: str, lists: dict) -> None:
    allowed = ENSEMBLE_PARAMETERS[builder_name]
    fixed = [name for name in lists if name not in allowed]
    if fixed:
        raise OptionError(
            f"{', '.join(fixed)} cannot vary across the members of one {builder_name} "
            "ensemble: the members share one grid, base state and physics, and "
            f"{'these set' if len(fixed) > 1 else 'it sets'} one of them. Give "
            f"{'them' if len(fixed) > 1 else 'it'} one value, or build one Dataset per value "
            f"and integrate each. Parameters that may vary: {', '.join(allowed)}")


def _build_member(builder, index: int, kwargs: dict, lists: dict):
    """Member ``index``; an error names the member and its values."""
    values = {name: value[index] for name, value in lists.items()}
    try:
        return builder(**kwargs, **values)
    except XlexError as err:
        told = ", ".join(f"{name}={value!r}" for name, value in values.items())
        raise type(err)(f"ensemble member {index} ({told}): {err}") from err


def _check_memory(first: xr.Dataset, members: int) -> None:
    """Refuse an ensemble whose members together cannot fit in memory."""
    cells = first.sizes["xh"] * first.sizes["yh"] * first.sizes["zh"]
    need, memory = cells * members * BYTES_PER_CELL, _physical_memory()
    if memory is not None and need > memory:
        raise OptionError(f"{members} members of {cells:,} cells need about "
                          f"{need / 2**30:,.1f} GiB to build and integrate, more than this "
                          f"machine's {memory / 2**30:,.1f} GiB; use fewer members or a "
                          "coarser grid")


def _coordinate_name(name: str, ds: xr.Dataset) -> str:
    # 'u' and 'v' (the wind of a boundary layer) are variables already
    return name if name not in ds.variables else f"case_{name}"


def _title(first: xr.Dataset, lists: dict, members: int) -> str:
    """The first member's title with each varying value replaced by the list."""
    title = first.attrs.get("title", "xlex case")
    for name, value in lists.items():
        listed = ", ".join(f"{v:g}" for v in value)
        one = f"{name} = {value[0]:g}"
        title = (title.replace(one, f"{name} = {listed}") if one in title
                 else f"{title}; {name} = {listed}")
    return f"{title} (ensemble of {members} members)"


def _stack(datasets: list, lists: dict) -> xr.Dataset:
    """One Dataset with the members' fields along a leading ``member`` dim (after
    time), the shared base state once, and the varying values as coordinates."""
    first = datasets[0]
    fields = [name for name, da in first.data_vars.items() if len(da.dims) > 1]
    ens = xr.concat(datasets, dim=MEMBER, data_vars=fields, coords="minimal",
                    compat="override", join="exact", combine_attrs="override")
    ens = ens.transpose("time", MEMBER, ...)
    members = len(datasets)
    coords = {MEMBER: (MEMBER, np.arange(members),
                       {"long_name": "ensemble member"})}
    for name in lists:
        values = np.array([ds.attrs[f"case_{name}"] for ds in datasets])
        coords[_coordinate_name(name, first)] = (
            MEMBER, values, {"long_name": f"case parameter {name} of each member"})
        ens.attrs[f"case_{name}"] = values
    ens.attrs["title"] = _title(first, lists, members)
    ens.attrs["case_ensemble_parameters"] = " ".join(lists)
    return ens.assign_coords(coords)


def _ensemble(builder):
    """``builder`` that also takes lists for the parameters of
    :data:`ENSEMBLE_PARAMETERS` and returns their ensemble."""
    name = builder.__name__
    options = set(inspect.signature(builder).parameters)

    @functools.wraps(builder)
    def build(*args, **kwargs):
        lists = {k: v for k, v in kwargs.items() if _is_list(v)}
        if args or not lists or set(kwargs) - options:
            # the builder refuses positional arguments and unknown options
            return builder(*args, **kwargs)
        _check_varying(name, lists)
        members = _member_values(lists)
        lists = {k: list(v) for k, v in lists.items()}
        scalars = {k: v for k, v in kwargs.items() if k not in lists}
        first = _build_member(builder, 0, scalars, lists)
        _check_memory(first, members)
        rest = [_build_member(builder, i, scalars, lists) for i in range(1, members)]
        return _stack([first, *rest], lists)

    return build


warm_bubble = _ensemble(_single.warm_bubble)
convective_boundary_layer = _ensemble(_single.convective_boundary_layer)
density_current = _ensemble(_single.density_current)
gravity_wave = _ensemble(_single.gravity_wave)

__all__ = ["ENSEMBLE_PARAMETERS", "convective_boundary_layer", "density_current",
           "gravity_wave", "warm_bubble"]
