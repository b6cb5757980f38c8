"""CF metadata of the dataset contract, written once.

Every variable and coordinate xlex writes gets its attributes from here, and
the CM1 reader annotates CM1 output from the same tables, so the two line up.
The edges take the contract's dimension names (:data:`SPATIAL_DIMS`,
:data:`AXIS_OF`, :data:`VARIABLE_DIMS`) and units (:data:`VARIABLE_ATTRS`,
:data:`UNIT_ALIASES`, :data:`LENGTH_UNITS`) from here and nowhere else.
"""

from __future__ import annotations

#: Spatial dimensions of the contract, in (z, y, x) order: ``h`` cell centres,
#: ``f`` faces (west, south and bottom faces; ``zf`` includes both walls).
SPATIAL_DIMS: tuple[str, ...] = ("zh", "zf", "yh", "yf", "xh", "xf")
#: The axis (``"z"``, ``"y"`` or ``"x"``) of each spatial dimension.
AXIS_OF: dict[str, str] = {d: d[0] for d in SPATIAL_DIMS}

#: Attributes of the coordinates. Face coordinates carry
#: ``c_grid_axis_shift = -0.5`` so that xgcm reads the staggering unaided, and
#: the standard name of their axis like the centres (without one, CF checkers
#: take an ``axis = "Y"`` coordinate for a latitude with wrong units).
COORDINATE_ATTRS: dict[str, dict] = {
    # Elapsed model time, as CM1 writes it: "seconds" with no reference date, so
    # that xr.open_dataset gives float seconds for xlex and CM1 files alike ("since"
    # would decode to datetime64); a CF deviation, see docs/contract.md.
    "time": {"units": "seconds", "long_name": "time since beginning of simulation",
             "standard_name": "time", "axis": "T"},
    "xh": {"units": "m", "long_name": "x of cell centres", "axis": "X",
           "standard_name": "projection_x_coordinate"},
    "xf": {"units": "m", "long_name": "x of west cell faces", "axis": "X",
           "standard_name": "projection_x_coordinate", "c_grid_axis_shift": -0.5},
    "yh": {"units": "m", "long_name": "y of cell centres", "axis": "Y",
           "standard_name": "projection_y_coordinate"},
    "yf": {"units": "m", "long_name": "y of south cell faces", "axis": "Y",
           "standard_name": "projection_y_coordinate", "c_grid_axis_shift": -0.5},
    "zh": {"units": "m", "long_name": "height of cell centres", "axis": "Z",
           "positive": "up", "standard_name": "height"},
    "zf": {"units": "m", "long_name": "height of cell bottom faces", "axis": "Z",
           "positive": "up", "standard_name": "height", "c_grid_axis_shift": -0.5},
}

# CF 1.11 (section 3.1.2) asks temperatures to say whether they are on the
# scale or differences, since K and degC convert differently for each.
ON_SCALE = {"units_metadata": "temperature: on_scale"}
DIFFERENCE = {"units_metadata": "temperature: difference"}

#: Attributes of the data variables of the contract.
VARIABLE_ATTRS: dict[str, dict] = {
    "u": {"units": "m s-1", "long_name": "x wind on x faces", "standard_name": "x_wind"},
    "v": {"units": "m s-1", "long_name": "y wind on y faces", "standard_name": "y_wind"},
    "w": {"units": "m s-1", "long_name": "vertical velocity on z faces",
          "standard_name": "upward_air_velocity"},
    "th": {"units": "K", "long_name": "potential temperature",
           "standard_name": "air_potential_temperature", **ON_SCALE},
    "qv": {"units": "kg kg-1", "long_name": "water vapour mixing ratio",
           "standard_name": "humidity_mixing_ratio"},
    "pipert": {"units": "1", "long_name": "Exner function perturbation pi'"},
    "thpert": {"units": "K", "long_name": "potential temperature perturbation th - th0",
               **DIFFERENCE},
    "qvpert": {"units": "kg kg-1", "long_name": "water vapour mixing ratio perturbation qv - qv0"},
    "thrho": {"units": "K", "long_name": "density potential temperature", **ON_SCALE},
    "th0": {"units": "K", "long_name": "base-state potential temperature", **ON_SCALE},
    "qv0": {"units": "kg kg-1", "long_name": "base-state water vapour mixing ratio"},
    "pi0": {"units": "1", "long_name": "base-state Exner function",
            "standard_name": "dimensionless_exner_function"},
    "rho0": {"units": "kg m-3", "long_name": "base-state air density",
             "standard_name": "air_density"},
    "prspert": {"units": "Pa", "long_name": "pressure perturbation"},
    "buoyancy": {"units": "m s-2", "long_name": "buoyancy"},
}

#: Dimensions of each contract variable, without the leading time/ensemble dims.
VARIABLE_DIMS: dict[str, tuple[str, ...]] = {
    "u": ("zh", "yh", "xf"),
    "v": ("zh", "yf", "xh"),
    "w": ("zf", "yh", "xh"),
    "th": ("zh", "yh", "xh"),
    "qv": ("zh", "yh", "xh"),
    "pipert": ("zh", "yh", "xh"),
    "thpert": ("zh", "yh", "xh"),
    "qvpert": ("zh", "yh", "xh"),
    "thrho": ("zh", "yh", "xh"),
    "prspert": ("zh", "yh", "xh"),
    "buoyancy": ("zh", "yh", "xh"),
    "th0": ("zh",),
    "qv0": ("zh",),
    "pi0": ("zh",),
    "rho0": ("zh",),
}

PROGNOSTIC = ("u", "v", "w", "th", "qv")
BASE_STATE = ("th0", "qv0", "pi0", "rho0")

#: Spellings accepted for each contract unit (compared with a ``units``
#: attribute stripped of surrounding blanks).
UNIT_ALIASES: dict[str, set[str]] = {
    "m s-1": {"m s-1", "m/s", "m s**-1", "m s^-1", "meters per second"},
    "K": {"K", "kelvin", "degK"},
    "kg kg-1": {"kg kg-1", "kg/kg", "1", "kg kg**-1", "kg kg^-1"},
    "1": {"1", "", "dimensionless", "nondimensional"},
}
#: Length units of coordinates, in metres per unit (CM1 writes km).
LENGTH_UNITS: dict[str, float] = {
    "km": 1000.0, "kilometer": 1000.0, "kilometers": 1000.0, "kilometre": 1000.0,
    "kilometres": 1000.0, "m": 1.0, "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0}
#: Spellings of metres, the unit of the contract's coordinates.
METRES: tuple[str, ...] = tuple(u for u, f in LENGTH_UNITS.items() if f == 1.0)


def units_of(name: str) -> str:
    """The contract's units of variable ``name`` (e.g. ``"m s-1"`` for ``"u"``)."""
    return VARIABLE_ATTRS[name]["units"]


def annotate(ds):
    """Return a copy of ``ds`` with the contract's CF attributes on every known name.

    Attributes already present are kept unless the table sets them; the input
    is never modified. Coordinates are marked to be written without a
    ``_FillValue`` (xarray adds NaN to floats otherwise), which CF forbids on
    coordinate variables.
    """
    out = ds.copy(deep=False)
    for name, attrs in COORDINATE_ATTRS.items():
        if name in out.coords:
            out[name] = out[name].copy(deep=False)
            out[name].attrs = {**out[name].attrs, **attrs}
            out[name].encoding = {**out[name].encoding, "_FillValue": None}
    for name, attrs in VARIABLE_ATTRS.items():
        if name in out.data_vars:
            out[name] = out[name].copy(deep=False)
            out[name].attrs = {**out[name].attrs, **attrs}
    out.attrs.setdefault("Conventions", "CF-1.11")
    return out
