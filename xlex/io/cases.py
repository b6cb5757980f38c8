"""Case builders: initial states as CF-annotated Datasets in the xlex contract."""

from __future__ import annotations

import functools
import inspect
import math

import jax
import numpy as np

from xlex import initial
from xlex.errors import OptionError, OptionTypeError
from xlex.grid import Grid
from xlex.io.convert import coordinates, states_to_dataset


def _number(name, value, *, positive=True):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise OptionTypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        raise OptionError(f"{name} must be a {'positive ' if positive else ''}finite number, "
                          f"got {value!r}")
    return value


def _cells(length, spacing, axis):
    n = length / spacing
    if abs(n - round(n)) > 1e-9 * n or round(n) < 1:
        raise OptionError(f"d{axis}={spacing:g} m does not divide the domain length in {axis} "
                          f"({axis}_length={length:g} m gives {n:.6g} cells); choose a spacing "
                          "that divides it")
    return int(round(n))


def _keyword_options(builder):
    """Refuse positional and unknown keyword arguments with an OptionTypeError
    naming them (a misspelt option must not pass silently or as a bare TypeError)."""
    names = set(inspect.signature(builder).parameters)

    @functools.wraps(builder)
    def checked(*args, **kwargs):
        if args:
            raise OptionTypeError(f"{builder.__name__} takes keyword arguments only, got "
                                  f"{len(args)} positional; write e.g. theta_c=5.0")
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise OptionTypeError(f"unknown option(s) {unknown} for {builder.__name__}; its "
                                  f"options are {sorted(names)}")
        return builder(**kwargs)

    return checked


@_keyword_options
def warm_bubble(*, theta_c=5.0, dx=100.0, dy=None, dz=None, x_length=24000.0,
                y_length=24000.0, z_length=12000.0, x_centre=12000.0, y_centre=12000.0,
                z_centre=2000.0, x_radius=2000.0, y_radius=2000.0, z_radius=2000.0,
                theta0=300.0, relative_humidity=0.1, surface_pressure=1.0e5,
                keep_relative_humidity=True):
    """The moist warm bubble of the paper (section 2.1.3) as an initial Dataset.

    A neutral (constant th0) hydrostatic atmosphere at rest with relative
    humidity ``relative_humidity`` everywhere (Bolton 1980 saturation), and a
    bubble th' = theta_c cos^2(pi L / 2) for L <= 1, with
    L^2 = ((x - xc)/xr)^2 + ((y - yc)/yr)^2 + ((z - zc)/zr)^2.

    Parameters
    ----------
    theta_c : float
        Bubble amplitude [K] (the paper validates 1 and 5 K, trains on 0.5-3 K).
    dx : float
        Horizontal grid spacing in x [m] (paper: 100 m).
    dy, dz : float, optional
        Spacing in y and z [m]; default ``dx``.
    x_length, y_length, z_length : float
        Domain size [m] (24 x 24 x 12 km).
    x_centre, y_centre, z_centre : float
        Bubble centre [m] (12, 12, 2 km).
    x_radius, y_radius, z_radius : float
        Bubble radii [m] (2 km).
    theta0 : float
        Base-state potential temperature [K].
    relative_humidity : float
        Initial relative humidity, a fraction (0.1 = 10 %).
    surface_pressure : float
        Pressure at the ground [Pa].
    keep_relative_humidity : bool
        Raise qv inside the bubble so RH stays ``relative_humidity`` (as the CM1
        reference run does); otherwise qv = qv0 there.

    Returns
    -------
    xarray.Dataset
        The initial state with a length-1 ``time`` axis at 0 s, base state and
        every parameter recorded in the global attributes.

    Raises
    ------
    OptionError, OptionTypeError
        For a non-positive or non-numeric parameter, or a spacing that does
        not divide the domain.

    Examples
    --------
    >>> ds0 = xlex.cases.warm_bubble(theta_c=5.0, dx=400.0)
    >>> ds0.sizes["xh"], ds0.sizes["zf"]
    (60, 31)
    """
    theta_c = _number("theta_c", theta_c, positive=False)
    if theta_c < 0:
        raise OptionError(f"theta_c must be >= 0 K (a warm bubble), got {theta_c!r}")
    dx = _number("dx", dx)
    dy = dx if dy is None else _number("dy", dy)
    dz = dx if dz is None else _number("dz", dz)
    lengths = {n: _number(n, v) for n, v in (("x_length", x_length), ("y_length", y_length),
                                              ("z_length", z_length))}
    for n, v in (("x_radius", x_radius), ("y_radius", y_radius), ("z_radius", z_radius),
                 ("theta0", theta0), ("surface_pressure", surface_pressure)):
        _number(n, v)
    for n, v in (("x_centre", x_centre), ("y_centre", y_centre), ("z_centre", z_centre)):
        _number(n, v, positive=False)
    if not isinstance(keep_relative_humidity, (bool, np.bool_)):
        raise OptionTypeError(f"keep_relative_humidity must be True or False, got "
                              f"{keep_relative_humidity!r}")
    rh = _number("relative_humidity", relative_humidity, positive=False)
    if not 0 <= rh <= 1:
        raise OptionError(f"relative_humidity is a fraction in [0, 1] (0.1 = 10 %), got {rh!r}")
    grid = Grid(nx=_cells(lengths["x_length"], dx, "x"), ny=_cells(lengths["y_length"], dy, "y"),
                nz=_cells(lengths["z_length"], dz, "z"), dx=dx, dy=dy, dz=dz)
    with jax.enable_x64(True):  # the initial Dataset is float64 whatever the run's precision
        base = initial.moist_base_state(grid, theta=float(theta0), relative_humidity=rh,
                                        surface_pressure=float(surface_pressure))
        state = initial.warm_bubble_state(
            grid, base, theta_c, x_centre=float(x_centre), y_centre=float(y_centre),
            z_centre=float(z_centre), x_radius=float(x_radius), y_radius=float(y_radius),
            z_radius=float(z_radius), relative_humidity=rh,
            keep_relative_humidity=bool(keep_relative_humidity))
        fields = {k: np.asarray(getattr(state, k))[None]
                  for k in ("u", "v", "w", "th", "qv", "pi")}
        base_np = {k: np.asarray(getattr(base, k)) for k in ("th0", "qv0", "pi0")}
    attrs = {"case": "warm_bubble", "case_theta_c": theta_c, "case_dx": dx, "case_dy": dy,
             "case_dz": dz, "case_x_length": lengths["x_length"],
             "case_y_length": lengths["y_length"], "case_z_length": lengths["z_length"],
             "case_x_centre": float(x_centre), "case_y_centre": float(y_centre),
             "case_z_centre": float(z_centre), "case_x_radius": float(x_radius),
             "case_y_radius": float(y_radius), "case_z_radius": float(z_radius),
             "case_theta0": float(theta0), "case_relative_humidity": rh,
             "case_keep_relative_humidity": int(bool(keep_relative_humidity)),
             "surface_pressure": float(surface_pressure),
             "title": f"xlex moist warm bubble, theta_c = {theta_c:g} K, {grid.describe()}"}
    return states_to_dataset(fields, base_np, coordinates(grid), [0.0], attrs=attrs)
