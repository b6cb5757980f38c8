"""Model options: frozen, keyword-only, validated when built."""

from __future__ import annotations

import dataclasses
import math

from xlex.errors import OptionError, OptionTypeError

PRECISIONS = ("float32", "float64")
SOLVERS = ("pcg", "bicgstab")
SGS_SCHEMES = ("none", "smagorinsky", "dynamic")
SURFACE_SCHEMES = ("none", "bulk")
MOMENTUM_SCHEMES = ("weno5", "upwind5")

#: Physics options by group. A Dataset's ``xlex_*`` attributes (a case's
#: physics, or the options of the run that wrote it) supply the physics options
#: the call to ``integrate`` does not name; naming a group's scheme (``sgs``,
#: ``surface``) replaces the whole group with the call's options and defaults.
PHYSICS_GROUPS = {
    "sgs": ("sgs", "cs", "prandtl", "stability"),
    "rotation": ("coriolis", "geostrophic_u", "geostrophic_v"),
    "surface": ("surface", "surface_temperature", "surface_potential_temperature",
                "roughness_length", "scalar_roughness_length", "moisture_availability",
                "minimum_wind_speed"),
}

#: Default relative residual of the pressure solve, by precision.
DEFAULT_TOLERANCE = {"float32": 1e-5, "float64": 1e-10}
#: Default iteration cap of each solver.
DEFAULT_MAX_ITERATIONS = {"pcg": 100, "bicgstab": 5000}


def _check_number(name, value, *, positive=False, allow_zero=True):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OptionTypeError(f"option {name} must be a number, got {type(value).__name__} "
                              f"{value!r}")
    if not math.isfinite(value):
        raise OptionError(f"option {name} must be finite, got {value!r}")
    if positive and (value < 0 or (value == 0 and not allow_zero)):
        raise OptionError(f"option {name} must be {'> 0' if not allow_zero else '>= 0'}, "
                          f"got {value!r}")


def _check_choice(name, value, choices):
    if not isinstance(value, str):
        raise OptionTypeError(f"option {name} must be one of {choices}, got {value!r}")
    if value not in choices:
        raise OptionError(f"option {name}={value!r} is not known; choose one of {choices}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Numerical and physical options of the model.

    Parameters
    ----------
    solver : {'pcg', 'bicgstab'}
        Pressure solver: FFT-tridiagonal preconditioned CG (default) or the
        unpreconditioned BiCGSTAB of the original LEX code.
    tolerance : float, optional
        Relative residual ||b - A x|| / ||b|| at which the pressure solve stops
        (default 1e-5 in float32, 1e-10 in float64).
    max_iterations : int, optional
        Iteration cap of the pressure solve (default 100 for pcg, 5000 for bicgstab).
    vertical_order : {5, 3}
        Order of the vertical WENO advection (horizontal is always WENO5).
        Default 5: it agrees better with CM1, whose vertical advection is also
        fifth order (correlation of theta' with CM1 at 5 min 0.9998 with
        WENO5, 0.9957 with WENO3).
    momentum_advection : {'weno5', 'upwind5'}
        Scheme for u, v, w: WENO (as for the scalars) or the linear upwind
        scheme of the same order (WENO's optimal weights). Default 'upwind5',
        as CM1 uses for velocities: against the CM1 warm bubble (5 K, 400 m)
        it raises the correlation of theta' at 10 min from 0.970 to 0.9996.
    weno_epsilon : float
        Jiang-Shu regularisation of the WENO smoothness indicators.
    coriolis : float
        Coriolis parameter f [s-1].
    geostrophic_u, geostrophic_v : float
        Geostrophic wind [m s-1] balancing the Coriolis force of the mean flow.
    precision : {'float32', 'float64'}
        Floating-point precision of the run.
    sgs : {'none', 'smagorinsky', 'dynamic'}
        Subgrid turbulence scheme. 'none' leaves the implicit dissipation of
        the upwind advection; 'smagorinsky' is Smagorinsky-Lilly; 'dynamic'
        is the dynamic Smagorinsky model (Germano identity, Lilly's least
        squares, test filter 2 Delta, coefficient averaged over horizontal
        planes, negative viscosity clipped). Eddy viscosities are computed
        once per step from the state at the step's start.
    cs : float
        Smagorinsky constant (0.18); not used by 'dynamic'.
    prandtl : float
        Turbulent Prandtl number, K_h = K_m / prandtl (1/3, as LEX uses).
    stability : bool
        Include the N^2 / prandtl stability correction of the eddy viscosity.
    surface : {'none', 'bulk'}
        Surface scheme. 'none': free-slip, insulated ground. 'bulk': bulk
        fluxes of momentum, heat and moisture with Monin-Obukhov transfer
        coefficients (Neale et al. 2010), computed once per step.
    surface_temperature : float, optional
        Prescribed ground temperature [K] (for ``surface='bulk'``; give this or
        ``surface_potential_temperature``).
    surface_potential_temperature : float, optional
        Prescribed ground potential temperature [K].
    roughness_length : float
        Roughness length for momentum z0 [m] (0.1, short vegetation; about
        2e-4 over the sea).
    scalar_roughness_length : float, optional
        Roughness length for heat and moisture z0h [m] (default: z0).
    moisture_availability : float
        Fraction beta in [0, 1] of the saturation deficit the ground supplies:
        1 is a saturated (water) surface, 0 a dry one.
    minimum_wind_speed : float
        Floor on the wind speed in the bulk formulas [m s-1] (1.0); keeps the
        exchange going in free convection.
    """

    solver: str = "pcg"
    tolerance: float | None = None
    max_iterations: int | None = None
    vertical_order: int = 5
    momentum_advection: str = "upwind5"
    weno_epsilon: float = 1e-6
    coriolis: float = 0.0
    geostrophic_u: float = 0.0
    geostrophic_v: float = 0.0
    precision: str = "float32"
    sgs: str = "none"
    cs: float = 0.18
    prandtl: float = 1.0 / 3.0
    stability: bool = True
    surface: str = "none"
    surface_temperature: float | None = None
    surface_potential_temperature: float | None = None
    roughness_length: float = 0.1
    scalar_roughness_length: float | None = None
    moisture_availability: float = 1.0
    minimum_wind_speed: float = 1.0

    def __post_init__(self):
        _check_choice("solver", self.solver, SOLVERS)
        _check_choice("precision", self.precision, PRECISIONS)
        if self.tolerance is None:
            object.__setattr__(self, "tolerance", DEFAULT_TOLERANCE[self.precision])
        _check_number("tolerance", self.tolerance, positive=True, allow_zero=False)
        if not self.tolerance < 1:
            raise OptionError(f"option tolerance must be < 1, got {self.tolerance!r}")
        if self.max_iterations is None:
            object.__setattr__(self, "max_iterations", DEFAULT_MAX_ITERATIONS[self.solver])
        if isinstance(self.max_iterations, bool) or not isinstance(self.max_iterations, int):
            raise OptionTypeError(f"option max_iterations must be an integer, got "
                                  f"{self.max_iterations!r}")
        if self.max_iterations < 1:
            raise OptionError(f"option max_iterations must be >= 1, got {self.max_iterations}")
        if self.vertical_order not in (3, 5) or isinstance(self.vertical_order, bool):
            raise OptionError(f"option vertical_order must be 3 or 5 (WENO3 or WENO5), got "
                              f"{self.vertical_order!r}")
        _check_choice("momentum_advection", self.momentum_advection, MOMENTUM_SCHEMES)
        _check_number("weno_epsilon", self.weno_epsilon, positive=True, allow_zero=False)
        for name in ("coriolis", "geostrophic_u", "geostrophic_v"):
            _check_number(name, getattr(self, name))
        _check_choice("sgs", self.sgs, SGS_SCHEMES)
        _check_number("cs", self.cs, positive=True)
        _check_number("prandtl", self.prandtl, positive=True, allow_zero=False)
        if not isinstance(self.stability, bool):
            raise OptionTypeError(f"option stability must be True or False, got "
                                  f"{self.stability!r}")
        self._check_surface()

    def _check_surface(self):
        _check_choice("surface", self.surface, SURFACE_SCHEMES)
        temps = {n: getattr(self, n) for n in ("surface_temperature",
                                               "surface_potential_temperature")}
        given = {n: v for n, v in temps.items() if v is not None}
        for name, value in given.items():
            _check_number(name, value, positive=True, allow_zero=False)
        _check_number("roughness_length", self.roughness_length, positive=True,
                      allow_zero=False)
        if self.scalar_roughness_length is not None:
            _check_number("scalar_roughness_length", self.scalar_roughness_length,
                          positive=True, allow_zero=False)
        _check_number("moisture_availability", self.moisture_availability, positive=True)
        if self.moisture_availability > 1:
            raise OptionError(f"option moisture_availability is a fraction in [0, 1] (1 = "
                              f"saturated water surface), got {self.moisture_availability!r}")
        _check_number("minimum_wind_speed", self.minimum_wind_speed, positive=True,
                      allow_zero=False)
        if self.surface == "bulk" and len(given) != 1:
            raise OptionError(
                "surface='bulk' needs exactly one of surface_temperature (K) and "
                f"surface_potential_temperature (K); got {sorted(given) or 'neither'}")
        if self.surface == "none" and given:
            raise OptionError(f"{sorted(given)[0]} is set but surface='none'; pass "
                              "surface='bulk' to use it")

    @property
    def scalar_roughness(self) -> float:
        """z0h [m]: ``scalar_roughness_length`` or, if unset, ``roughness_length``."""
        if self.scalar_roughness_length is None:
            return self.roughness_length
        return self.scalar_roughness_length

    @property
    def dtype(self):
        """The numpy dtype of the run."""
        import numpy as np
        return np.dtype(self.precision)

    def as_attrs(self) -> dict:
        """The options as NetCDF-safe global attributes (prefixed ``xlex_``)."""
        def safe(v):
            return int(v) if isinstance(v, bool) else ("none" if v is None else v)
        return {f"xlex_{k}": safe(v) for k, v in dataclasses.asdict(self).items()}
