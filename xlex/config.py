"""Model options: frozen, keyword-only, validated when built."""

from __future__ import annotations

import dataclasses
import math

from xlex.errors import OptionError, OptionTypeError

PRECISIONS = ("float32", "float64")
SOLVERS = ("pcg", "bicgstab")
SGS_SCHEMES = ("none", "smagorinsky")
MOMENTUM_SCHEMES = ("weno5", "upwind5")

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
    sgs : {'none', 'smagorinsky'}
        Subgrid turbulence scheme. 'none' leaves the implicit dissipation of
        the upwind advection; 'smagorinsky' is Smagorinsky-Lilly, its eddy
        viscosity computed once per step from the state at the step's start.
    cs : float
        Smagorinsky constant (0.18).
    prandtl : float
        Turbulent Prandtl number, K_h = K_m / prandtl (1/3, as LEX uses).
    stability : bool
        Include the N^2 / prandtl stability correction of the eddy viscosity.
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

    @property
    def dtype(self):
        """The numpy dtype of the run."""
        import numpy as np
        return np.dtype(self.precision)

    def as_attrs(self) -> dict:
        """The options as NetCDF-safe global attributes (prefixed ``xlex_``)."""
        return {f"xlex_{k}": (int(v) if isinstance(v, bool) else v)
                for k, v in dataclasses.asdict(self).items()}
