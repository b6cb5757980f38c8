"""Case builders: initial states as CF-annotated Datasets in the xlex contract."""

from __future__ import annotations

import functools
import inspect
import math

import jax
import numpy as np

from xlex.core import constants, initial
from xlex.core.errors import OptionError, OptionTypeError
from xlex.core.grid import MIN_HORIZONTAL_CELLS, Grid
from xlex.core.model import Physics
from xlex.core.physics.constant_viscosity import ConstantViscosity
from xlex.core.physics.scheme import PhysicsScheme
from xlex.core.physics.surface import BulkSurface
from xlex.io.convert import MIN_DOMAIN, MIN_SPACING, coordinates, states_to_dataset
from xlex.options import physics_attrs, scheme_from_name


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


def check_plausible_lengths(spacings: dict, lengths: dict) -> None:
    """Refuse spacings under :data:`~xlex.io.convert.MIN_SPACING` (1 m) or domain sides
    under :data:`~xlex.io.convert.MIN_DOMAIN` (100 m): not an LES grid, nearly always
    kilometres given where metres are meant. ``spacings`` and ``lengths`` map option
    names (``dx``, ``x_length``) to values [m].

    The same limits refuse such coordinates in a Dataset (``dataset_to_inputs``).

    Raises :class:`~xlex.core.errors.OptionError` asking about units, with the
    values times 1000 as an example."""
    small = {n: v for n, v in spacings.items() if v < MIN_SPACING}
    short = {n: v for n, v in lengths.items() if v < MIN_DOMAIN}
    if not small and not short:
        return
    parts = []
    for value in dict.fromkeys(small.values()):  # dx = dy = dz = 0.4 m
        parts.append(" = ".join(n for n, v in small.items() if v == value) + f" = {value:g} m")
    if len(short) == 1:
        (name, value), = short.items()
        parts.append(f"a {value:g} m wide domain ({name})")
    elif short:
        parts.append(f"a {' x '.join(f'{v:g}' for v in short.values())} m domain "
                     f"({', '.join(short)})")
    # spacings that default to dx repeat its value: suggest it once
    first = {n: v for n, v in small.items() if n == next(k for k in small if small[k] == v)}
    example = ", ".join(f"{n}={v * 1000:.1f}" for n, v in {**first, **short}.items())
    plural = len(parts) > 1 or len(small) > 1
    raise OptionError(
        f"{' and '.join(parts)} {'are' if plural else 'is'} implausible for an LES (spacings "
        f"of at least {MIN_SPACING:g} m, domains of at least {MIN_DOMAIN:g} m); lengths are "
        f"in metres \u2014 did you give kilometres? e.g. {example}")


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


LARGE_GRID_CELLS = 2_000_000
"""Above this many cells a case builder warns about the cost of the grid."""

BYTES_PER_CELL = 8 * 6 * 4
"""Rough memory one cell needs to be built and integrated: six float64 fields,
about four copies of them (Runge-Kutta stages, solver work, output)."""


def _physical_memory() -> int | None:
    try:
        import os
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_grid_size(grid, *, memory: int | None = None) -> None:
    """Refuse a grid whose rough memory need exceeds the machine's memory, before
    anything is allocated; warn when it is large enough to be slow.

    Raises :class:`~xlex.core.errors.OptionError` naming the cells and the bytes."""
    import warnings
    cells = grid.nx * grid.ny * grid.nz
    need = cells * BYTES_PER_CELL
    memory = _physical_memory() if memory is None else memory
    shape = f"{grid.nx} x {grid.ny} x {grid.nz} = {cells:,} cells"
    if memory is not None and need > memory:
        raise OptionError(
            f"the grid ({shape} at dx={grid.dx:g}, dy={grid.dy:g}, dz={grid.dz:g} m) needs "
            f"about {need / 2**30:,.1f} GiB to build and integrate, more than this machine's "
            f"{memory / 2**30:,.1f} GiB; choose a coarser spacing or a smaller domain")
    if cells > LARGE_GRID_CELLS:
        warnings.warn(f"a large grid: {shape} (about {need / 2**30:.1f} GiB); each step costs "
                      f"{cells / 108_000:.0f} times the README's 400 m run (60 x 60 x 30): "
                      "on a laptop CPU expect minutes per simulated minute. Pass dx=400.0 "
                      "for a quick run.", UserWarning, stacklevel=3)


@_keyword_options
def warm_bubble(*, theta_c=5.0, dx=400.0, dy=None, dz=None, x_length=24000.0,
                y_length=24000.0, z_length=12000.0, x_centre=12000.0, y_centre=12000.0,
                z_centre=2000.0, x_radius=2000.0, y_radius=2000.0, z_radius=2000.0,
                theta0=300.0, relative_humidity=0.1, surface_pressure=1.0e5,
                keep_relative_humidity=True):
    """The moist warm bubble of the paper (section 2.1.3) as an initial Dataset.

    A neutral (constant th0) hydrostatic atmosphere at rest with relative
    humidity ``relative_humidity`` everywhere (Bolton 1980 saturation; since qv0
    falls with height, so does th_rho, slightly: N^2 < 0, which Smagorinsky
    with ``stability=True`` mixes even at rest), and a
    bubble th' = theta_c cos^2(pi L / 2) for L <= 1, with
    L^2 = ((x - xc)/xr)^2 + ((y - yc)/yr)^2 + ((z - zc)/zr)^2.

    Ensembles: ``xlex.cases.warm_bubble`` takes a list for ``theta_c``, the
    centre or the radii and returns one member per entry along a ``member``
    dim, e.g. ``warm_bubble(theta_c=[1.0, 3.0, 5.0])`` (see :mod:`xlex.cases`).

    Parameters
    ----------
    theta_c : float
        Bubble amplitude [K] (the paper validates 1 and 5 K, trains on 0.5-3 K).
    dx : float
        Horizontal grid spacing in x [m]. Default 400 m (60 x 60 x 30 cells, the
        README's run and the packaged CM1 reference). The paper's 100 m
        (240 x 240 x 120 = 6.9 M cells, 64 times as many) is slow on a CPU: a
        grid over 2 M cells warns, and one that cannot fit in memory is refused
        before anything is allocated.
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
        For a non-positive or non-numeric parameter, a spacing that does
        not divide the domain, a spacing under 1 m or a domain under 100 m
        (kilometres given as metres), or a grid too large for the machine's memory.

    Warns
    -----
    UserWarning
        For a grid over 2 million cells (e.g. the paper's 100 m).

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
    check_plausible_lengths({"dx": dx, "dy": dy, "dz": dz}, lengths)
    grid = Grid(nx=_cells(lengths["x_length"], dx, "x"), ny=_cells(lengths["y_length"], dy, "y"),
                nz=_cells(lengths["z_length"], dz, "z"), dx=dx, dy=dy, dz=dz)
    check_grid_size(grid)
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


@_keyword_options
def convective_boundary_layer(*, dx=100.0, dy=None, dz=50.0, x_length=4000.0, y_length=4000.0,
                              z_length=2000.0, theta0=300.0, mixed_layer_height=500.0,
                              lapse_rate=0.003, relative_humidity=0.2, surface_pressure=1.0e5,
                              u=0.0, v=0.0, surface_heating=5.0, roughness_length=0.1,
                              moisture_availability=0.0, sgs="smagorinsky", perturbation=0.1,
                              perturbation_depth=None, seed=0):
    """A convective boundary layer over a heated surface, as an initial Dataset.

    A well-mixed layer of potential temperature ``theta0`` up to
    ``mixed_layer_height``, capped by a stably stratified free atmosphere
    (th increasing at ``lapse_rate``), hydrostatic, with relative humidity
    ``relative_humidity``, a uniform wind (u, v) and uniform random th
    perturbations of +-``perturbation`` K (zero mean on each level) below
    ``perturbation_depth``, reproducible from ``seed``. The ground is held at
    the potential temperature ``theta0 + surface_heating``.

    The physics the case is meant for is recorded in the ``xlex_physics``
    attribute, which :meth:`Dataset.lex.integrate` uses for every scheme the
    call does not name: :class:`xlex.BulkSurface` with
    ``surface_potential_temperature``, ``roughness_length`` and
    ``moisture_availability``, and ``sgs`` (default Smagorinsky). So

    >>> ds0 = xlex.cases.convective_boundary_layer(dx=200.0)
    >>> out = ds0.lex.integrate("1h", dt=10.0, output_every="10min")

    runs the heated boundary layer with bulk surface fluxes and Smagorinsky.

    Ensembles: ``xlex.cases.convective_boundary_layer`` takes a list for ``u``,
    ``v``, ``perturbation``, ``perturbation_depth`` or ``seed`` and returns one
    member per entry along a ``member`` dim, e.g. ``seed=[0, 1, 2]`` (see
    :mod:`xlex.cases`).

    Parameters
    ----------
    dx : float
        Horizontal grid spacing in x [m] (100).
    dy : float, optional
        Spacing in y [m]; default ``dx``.
    dz : float
        Vertical spacing [m] (50).
    x_length, y_length, z_length : float
        Domain size [m] (4 x 4 x 2 km).
    theta0 : float
        Potential temperature of the mixed layer [K].
    mixed_layer_height : float
        Initial depth of the mixed layer [m].
    lapse_rate : float
        d(th)/dz above the mixed layer [K m-1] (>= 0; 0.003 = 3 K/km).
    relative_humidity : float
        Relative humidity of the initial state, a fraction.
    surface_pressure : float
        Pressure at the ground [Pa].
    u, v : float
        Uniform initial wind [m s-1].
    surface_heating : float
        Ground potential temperature minus ``theta0`` [K].
    roughness_length : float
        Roughness length for momentum and scalars [m].
    moisture_availability : float
        Fraction of the saturation deficit the ground supplies (0: dry, 1: water).
    sgs : {'smagorinsky', 'dynamic', 'none'} or scheme object
        Subgrid scheme recorded for the run.
    perturbation : float
        Amplitude of the random th perturbations [K].
    perturbation_depth : float, optional
        Perturbations are put in the cells below this height [m]; default
        ``mixed_layer_height``.
    seed : int
        Seed of the perturbations.

    Returns
    -------
    xarray.Dataset
        The initial state at 0 s, base state (the unperturbed profile), every
        parameter in ``case_*`` attributes and the run's physics in ``xlex_physics``
        attributes.
    """
    dx = _number("dx", dx)
    dy = dx if dy is None else _number("dy", dy)
    dz = _number("dz", dz)
    lengths = {n: _number(n, val) for n, val in (("x_length", x_length),
                                                  ("y_length", y_length),
                                                  ("z_length", z_length))}
    check_plausible_lengths({"dx": dx, "dy": dy, "dz": dz}, lengths)
    for n, val in (("theta0", theta0), ("surface_pressure", surface_pressure),
                   ("mixed_layer_height", mixed_layer_height)):
        _number(n, val)
    for n, val in (("lapse_rate", lapse_rate), ("u", u), ("v", v),
                   ("surface_heating", surface_heating), ("perturbation", perturbation)):
        _number(n, val, positive=False)
    if lapse_rate < 0:
        raise OptionError(f"lapse_rate is d(th)/dz of the free atmosphere and must be >= 0 "
                          f"(stable), got {lapse_rate!r}")
    if perturbation < 0:
        raise OptionError(f"perturbation is an amplitude and must be >= 0, got {perturbation!r}")
    rh = _number("relative_humidity", relative_humidity, positive=False)
    if not 0 <= rh <= 1:
        raise OptionError(f"relative_humidity is a fraction in [0, 1] (0.1 = 10 %), got {rh!r}")
    depth = float(mixed_layer_height) if perturbation_depth is None else _number(
        "perturbation_depth", perturbation_depth)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise OptionTypeError(f"seed must be an integer, got {seed!r}")
    if mixed_layer_height >= lengths["z_length"]:
        raise OptionError(f"mixed_layer_height={mixed_layer_height:g} m must be below the "
                          f"domain top z_length={lengths['z_length']:g} m")
    surface = BulkSurface(surface_potential_temperature=float(theta0) + float(surface_heating),
                          roughness_length=_number("roughness_length", roughness_length),
                          moisture_availability=_number("moisture_availability",
                                                        moisture_availability, positive=False))
    if not isinstance(sgs, PhysicsScheme):
        sgs = scheme_from_name("sgs", sgs, {})
    physics = Physics(sgs=sgs, surface=surface)
    grid = Grid(nx=_cells(lengths["x_length"], dx, "x"), ny=_cells(lengths["y_length"], dy, "y"),
                nz=_cells(lengths["z_length"], dz, "z"), dx=dx, dy=dy, dz=dz)
    if grid.nz < 2 or depth <= 0.5 * dz:
        raise OptionError(f"perturbation_depth={depth:g} m holds no cell centre (lowest at "
                          f"{0.5 * dz:g} m); use a deeper layer or a smaller dz")

    def theta(z):
        return initial.mixed_layer_profile(z, theta=float(theta0),
                                           mixed_layer_height=float(mixed_layer_height),
                                           lapse_rate=float(lapse_rate))

    with jax.enable_x64(True):
        base = initial.moist_base_state(grid, theta=theta, relative_humidity=rh,
                                        surface_pressure=float(surface_pressure))
        state = initial.convective_boundary_layer_state(
            grid, base, u=float(u), v=float(v), perturbation=float(perturbation),
            perturbation_depth=depth, seed=int(seed))
        fields = {k: np.asarray(getattr(state, k))[None]
                  for k in ("u", "v", "w", "th", "qv", "pi")}
        base_np = {k: np.asarray(getattr(base, k)) for k in ("th0", "qv0", "pi0")}
    attrs = {"case": "convective_boundary_layer", "case_dx": dx, "case_dy": dy, "case_dz": dz,
             "case_x_length": lengths["x_length"], "case_y_length": lengths["y_length"],
             "case_z_length": lengths["z_length"], "case_theta0": float(theta0),
             "case_mixed_layer_height": float(mixed_layer_height),
             "case_lapse_rate": float(lapse_rate), "case_relative_humidity": rh,
             "case_u": float(u), "case_v": float(v),
             "case_surface_heating": float(surface_heating),
             "case_perturbation": float(perturbation), "case_perturbation_depth": depth,
             "case_seed": int(seed), "surface_pressure": float(surface_pressure),
             "title": f"xlex convective boundary layer, {grid.describe()}"}
    attrs.update(physics_attrs(physics))
    return states_to_dataset(fields, base_np, coordinates(grid), [0.0], attrs=attrs)


@_keyword_options
def density_current(*, dx=100.0, dz=None, x_length=51200.0, z_length=6400.0, ny=6, dy=None,
                    x_centre=0.0, z_centre=3000.0, x_radius=4000.0, z_radius=2000.0,
                    temperature_perturbation=-15.0, theta0=300.0, surface_pressure=1.0e5,
                    viscosity=75.0, diffusivity=None):
    """The density current of Straka et al. (1993) as an initial Dataset.

    A dry, neutral (constant th0), hydrostatic atmosphere at rest with a cold
    bubble: the temperature perturbation

        dT = temperature_perturbation (cos(pi L) + 1) / 2  for L <= 1,
        L^2 = ((x - xc)/xr)^2 + ((z - zc)/zr)^2,

    added at the base-state pressure, i.e. th' = dT / pi0(z) (Straka et al.
    define the bubble in temperature, not potential temperature). The bubble
    falls, spreads along the free-slip ground and forms two density currents
    with Kelvin-Helmholtz rotors; the benchmark compares them at 900 s.

    The x coordinate runs from ``-x_length/2`` to ``x_length/2`` so that the
    bubble is centred at x = 0 as in the paper (which runs the half domain
    [0, 25.6 km] with a mirror at x = 0; xlex is periodic in x, so it runs the
    whole 51.2 km, and the fronts, near +-15.5 km at 900 s, stay far from the
    periodic boundary). The case is 2-D: ``ny`` identical periodic cells in
    y (at least 6, the width of the WENO5 stencil).

    The physics the case is meant for is recorded in the ``xlex_physics``
    attribute: :class:`xlex.ConstantViscosity` with ``nu = viscosity`` and
    ``kappa = diffusivity`` (Straka et al.: 75 m2 s-1 for both), no surface
    fluxes (free-slip, insulated ground), no rotation.

    Ensembles: ``xlex.cases.density_current`` takes a list for
    ``temperature_perturbation``, the centre or the radii and returns one member
    per entry along a ``member`` dim (see :mod:`xlex.cases`).

    Parameters
    ----------
    dx : float
        Spacing in x [m] (100; the paper compares 400 m to its finest grids).
    dz : float, optional
        Vertical spacing [m]; default ``dx``.
    x_length, z_length : float
        Domain size [m] (51.2 x 6.4 km).
    ny : int
        Number of cells in y (>= 6).
    dy : float, optional
        Spacing in y [m]; default ``dx``.
    x_centre, z_centre : float
        Bubble centre [m] (0, 3 km); x = 0 is the middle of the domain.
    x_radius, z_radius : float
        Bubble radii [m] (4 km, 2 km).
    temperature_perturbation : float
        Temperature perturbation at the bubble centre [K] (-15).
    theta0 : float
        Base-state potential temperature [K] (300).
    surface_pressure : float
        Pressure at the ground [Pa] (1000 hPa).
    viscosity : float
        Constant kinematic viscosity nu [m2 s-1], >= 0 (75).
    diffusivity : float, optional
        Constant diffusivity of th [m2 s-1], >= 0; default ``viscosity``.

    Returns
    -------
    xarray.Dataset
        The initial state at 0 s (qv = 0), base state, every parameter in
        ``case_*`` attributes and the run's physics in ``xlex_physics``.

    Raises
    ------
    OptionError, OptionTypeError
        For a non-numeric or out-of-range parameter, a spacing that does not
        divide the domain, a spacing under 1 m or a domain under 100 m
        (kilometres given as metres), too few cells in y, or a grid too large
        for the machine's memory.

    Examples
    --------
    >>> ds0 = xlex.cases.density_current(dx=200.0)
    >>> ds0.sizes["xh"], ds0.sizes["yh"], ds0.sizes["zh"]
    (256, 6, 32)
    >>> out = ds0.lex.integrate(900.0, dt=4.0, output_every=300.0, precision="float64")
    """
    dx = _number("dx", dx)
    dz = dx if dz is None else _number("dz", dz)
    dy = dx if dy is None else _number("dy", dy)
    x_length = _number("x_length", x_length)
    z_length = _number("z_length", z_length)
    for n, val in (("x_radius", x_radius), ("z_radius", z_radius), ("theta0", theta0),
                   ("surface_pressure", surface_pressure)):
        _number(n, val)
    for n, val in (("x_centre", x_centre), ("z_centre", z_centre),
                   ("temperature_perturbation", temperature_perturbation)):
        _number(n, val, positive=False)
    if isinstance(ny, bool) or not isinstance(ny, (int, np.integer)):
        raise OptionTypeError(f"ny must be an integer number of cells, got {ny!r}")
    if ny < MIN_HORIZONTAL_CELLS:
        raise OptionError(f"ny={ny} is too small: the periodic WENO5 stencil needs at least "
                          f"{MIN_HORIZONTAL_CELLS} cells in y (identical cells: the case is 2-D)")
    nu = _number("viscosity", viscosity, positive=False)
    kappa = nu if diffusivity is None else _number("diffusivity", diffusivity, positive=False)
    if nu < 0 or kappa < 0:
        raise OptionError(f"viscosity and diffusivity must be >= 0 m2 s-1, got {nu!r} and "
                          f"{kappa!r}")
    check_plausible_lengths({"dx": dx, "dy": dy, "dz": dz},
                            {"x_length": x_length, "z_length": z_length})
    if ny * dy < MIN_DOMAIN:  # a Dataset this narrow is refused (dataset_to_inputs)
        raise OptionError(f"the domain is ny * dy = {ny} x {dy:g} m = {ny * dy:g} m wide in y, "
                          f"under the {MIN_DOMAIN:g} m xlex takes for an LES; give more cells "
                          f"(ny={math.ceil(MIN_DOMAIN / dy)}) or a larger dy")
    grid = Grid(nx=_cells(x_length, dx, "x"), ny=int(ny), nz=_cells(z_length, dz, "z"),
                dx=dx, dy=dy, dz=dz)
    check_grid_size(grid)
    physics = Physics(sgs=ConstantViscosity(nu=nu, kappa=kappa))
    x0 = -0.5 * x_length
    coords = coordinates(grid, origin=(x0, 0.0))
    with jax.enable_x64(True):
        base = initial.moist_base_state(grid, theta=float(theta0), relative_humidity=0.0,
                                        surface_pressure=float(surface_pressure))
        base_np = {k: np.asarray(getattr(base, k)) for k in ("th0", "qv0", "pi0")}
    x = coords["xh"][None, None, :]
    z = coords["zh"][:, None, None]
    dist = np.sqrt(((x - float(x_centre)) / float(x_radius)) ** 2
                   + ((z - float(z_centre)) / float(z_radius)) ** 2)
    d_temperature = np.where(dist <= 1.0, float(temperature_perturbation)
                             * (np.cos(np.pi * np.minimum(dist, 1.0)) + 1.0) / 2.0, 0.0)
    th_pert = d_temperature / base_np["pi0"][:, None, None]
    th = np.broadcast_to(base_np["th0"][:, None, None] + th_pert, grid.shape)
    zeros = np.zeros(grid.shape)
    fields = {"u": zeros, "v": zeros, "w": np.zeros(grid.w_shape), "th": th, "qv": zeros,
              "pi": zeros}
    fields = {k: np.array(v, np.float64)[None] for k, v in fields.items()}
    attrs = {"case": "density_current", "case_dx": dx, "case_dy": dy, "case_dz": dz,
             "case_x_length": x_length, "case_z_length": z_length, "case_ny": int(ny),
             "case_x_centre": float(x_centre), "case_z_centre": float(z_centre),
             "case_x_radius": float(x_radius), "case_z_radius": float(z_radius),
             "case_temperature_perturbation": float(temperature_perturbation),
             "case_theta0": float(theta0), "case_viscosity": nu, "case_diffusivity": kappa,
             "surface_pressure": float(surface_pressure),
             "title": f"xlex density current (Straka et al. 1993), {grid.describe()}"}
    attrs.update(physics_attrs(physics))
    return states_to_dataset(fields, base_np, coords, [0.0], attrs=attrs)


def periodic_lorentzian(x, *, centre, half_width, period):
    """The Lorentzian 1 / (1 + (x - centre)^2 / a^2) summed over its periodic
    images x + n ``period`` (all integers n), in closed form:

        (pi a / L) sinh(2 pi a / L) / (cosh(2 pi a / L) - cos(2 pi (x - centre) / L)),

    with a = ``half_width`` and L = ``period`` (all in m; numpy). Its Fourier
    coefficients are (pi a / L) exp(-a abs(k)) for k = 2 pi j / L: smooth and
    periodic, which the Lorentzian cut at the domain's sides is not."""
    r = 2.0 * np.pi * half_width / period
    phase = 2.0 * np.pi * (np.asarray(x, np.float64) - centre) / period
    # sinh(r) / (cosh(r) - cos(phase)), written to stay exact for small r
    return (np.pi * half_width / period) * np.sinh(r) / (
        2.0 * np.sinh(0.5 * r) ** 2 + 2.0 * np.sin(0.5 * phase) ** 2)


@_keyword_options
def gravity_wave(*, dx=1000.0, dz=1000.0, x_length=300000.0, z_length=10000.0, ny=6, dy=None,
                 buoyancy_frequency=0.01, u=20.0, amplitude=0.01, x_centre=100000.0,
                 half_width=5000.0, theta0=300.0, surface_pressure=1.0e5):
    """Gravity waves in a uniformly stratified channel (Skamarock and Klemp 1994)
    as an initial Dataset.

    A dry hydrostatic atmosphere of constant Brunt-Vaisala frequency N,
    th0(z) = theta0 exp(N^2 z / g), moving with a uniform wind ``u``, and a
    small potential-temperature perturbation

        th' = amplitude sin(pi z / H) / (1 + (x - xc)^2 / a^2)

    (H = ``z_length``, a = ``half_width``) that splits into two packets of
    gravity waves running left and right of the point advected with the wind.
    This is the non-hydrostatic inertia-gravity wave test of Skamarock and
    Klemp (1994, Mon. Wea. Rev. 122, 2623-2630) without rotation: 300 x 10 km,
    N = 0.01 s-1, u = 20 m/s, 0.01 K, a = 5 km, xc = 100 km, compared at
    3000 s. The perturbation is small enough for the linear solution to hold
    (see ``tests/test_gravity_waves.py`` and the Validation page).

    xlex is periodic in x, so the Lorentzian is made periodic: summed over its
    images x + n ``x_length``, which changes it by about 1e-3 of
    ``amplitude`` on the 300 km domain and makes its Fourier coefficients
    (pi a / L) exp(-a abs(k)) exact. The case is 2-D: ``ny`` identical periodic
    cells in y (at least 6, the width of the WENO5 stencil). The rigid lid and
    ground reflect the waves (no sponge), as in the linear solution.

    Ensembles: ``xlex.cases.gravity_wave`` takes a list for ``amplitude``,
    ``x_centre``, ``half_width`` or ``u`` and returns one member per entry
    along a ``member`` dim (see :mod:`xlex.cases`).

    Parameters
    ----------
    dx : float
        Spacing in x [m] (1000, the usual grid of this test).
    dz : float
        Vertical spacing [m] (1000: 10 levels); not tied to ``dx``.
    x_length, z_length : float
        Domain size [m] (300 km x 10 km); each must be a whole number of cells.
    ny : int
        Number of cells in y (>= 6).
    dy : float, optional
        Spacing in y [m]; default ``dx``.
    buoyancy_frequency : float
        Brunt-Vaisala frequency N of the base state [s-1], > 0 (0.01).
    u : float
        Uniform wind [m s-1] (20; 0 leaves the packets symmetric about xc).
    amplitude : float
        Amplitude of th' [K] (0.01).
    x_centre : float
        Centre xc of the perturbation [m] (100 km; x runs from 0 to ``x_length``).
    half_width : float
        Half-width a of the perturbation [m] (5 km).
    theta0 : float
        Base-state potential temperature at the ground [K] (300).
    surface_pressure : float
        Pressure at the ground [Pa] (1000 hPa).

    Returns
    -------
    xarray.Dataset
        The initial state at 0 s (qv = 0, v = w = 0, u uniform), base state,
        every parameter in ``case_*`` attributes.

    Raises
    ------
    OptionError, OptionTypeError
        For a non-numeric or out-of-range parameter, a spacing that does not
        divide the domain, a spacing under 1 m or a domain under 100 m
        (kilometres given as metres), too few cells in y, or a grid too large
        for the machine's memory.

    Examples
    --------
    >>> ds0 = xlex.cases.gravity_wave(dx=2000.0)
    >>> ds0.sizes["xh"], ds0.sizes["yh"], ds0.sizes["zh"]
    (150, 6, 10)
    >>> out = ds0.lex.integrate(3000.0, dt=20.0, output_every=3000.0, precision="float64")
    """
    dx = _number("dx", dx)
    dz = _number("dz", dz)
    dy = dx if dy is None else _number("dy", dy)
    x_length = _number("x_length", x_length)
    z_length = _number("z_length", z_length)
    for n, val in (("buoyancy_frequency", buoyancy_frequency), ("half_width", half_width),
                   ("theta0", theta0), ("surface_pressure", surface_pressure)):
        _number(n, val)
    for n, val in (("u", u), ("amplitude", amplitude), ("x_centre", x_centre)):
        _number(n, val, positive=False)
    if isinstance(ny, bool) or not isinstance(ny, (int, np.integer)):
        raise OptionTypeError(f"ny must be an integer number of cells, got {ny!r}")
    if ny < MIN_HORIZONTAL_CELLS:
        raise OptionError(f"ny={ny} is too small: the periodic WENO5 stencil needs at least "
                          f"{MIN_HORIZONTAL_CELLS} cells in y (identical cells: the case is 2-D)")
    check_plausible_lengths({"dx": dx, "dy": dy, "dz": dz},
                            {"x_length": x_length, "z_length": z_length})
    if ny * dy < MIN_DOMAIN:  # a Dataset this narrow is refused (dataset_to_inputs)
        raise OptionError(f"the domain is ny * dy = {ny} x {dy:g} m = {ny * dy:g} m wide in y, "
                          f"under the {MIN_DOMAIN:g} m xlex takes for an LES; give more cells "
                          f"(ny={math.ceil(MIN_DOMAIN / dy)}) or a larger dy")
    grid = Grid(nx=_cells(x_length, dx, "x"), ny=int(ny), nz=_cells(z_length, dz, "z"),
                dx=dx, dy=dy, dz=dz)
    check_grid_size(grid)
    n2_over_g = float(buoyancy_frequency) ** 2 / constants.GRAVITY

    def theta(z):
        return float(theta0) * np.exp(n2_over_g * np.asarray(z, np.float64))

    coords = coordinates(grid)
    with jax.enable_x64(True):
        base = initial.moist_base_state(grid, theta=theta, relative_humidity=0.0,
                                        surface_pressure=float(surface_pressure))
        base_np = {k: np.asarray(getattr(base, k)) for k in ("th0", "qv0", "pi0")}
    # the profile, not the sounding's interpolation of it: N is exactly constant
    base_np["th0"] = theta(coords["zh"])
    x = coords["xh"][None, None, :]
    z = coords["zh"][:, None, None]
    th_pert = float(amplitude) * np.sin(np.pi * z / z_length) * periodic_lorentzian(
        x, centre=float(x_centre), half_width=float(half_width), period=x_length)
    th = np.broadcast_to(base_np["th0"][:, None, None] + th_pert, grid.shape)
    zeros = np.zeros(grid.shape)
    fields = {"u": zeros + float(u), "v": zeros, "w": np.zeros(grid.w_shape), "th": th,
              "qv": zeros, "pi": zeros}
    fields = {k: np.array(v, np.float64)[None] for k, v in fields.items()}
    attrs = {"case": "gravity_wave", "case_dx": dx, "case_dy": dy, "case_dz": dz,
             "case_x_length": x_length, "case_z_length": z_length, "case_ny": int(ny),
             "case_buoyancy_frequency": float(buoyancy_frequency), "case_u": float(u),
             "case_amplitude": float(amplitude), "case_x_centre": float(x_centre),
             "case_half_width": float(half_width), "case_theta0": float(theta0),
             "surface_pressure": float(surface_pressure),
             "title": f"xlex gravity waves (Skamarock and Klemp 1994), {grid.describe()}"}
    return states_to_dataset(fields, base_np, coords, [0.0], attrs=attrs)
