"""The model grid: shape, spacing and topology, static under ``jit``.

Staggering convention (Arakawa C), written once here and used everywhere:

* arrays are ordered ``(..., z, y, x)``; any leading axes are batch axes;
* scalars (th, qv, pi') sit at cell centres: ``(nz, ny, nx)``;
* ``u[k, j, i]`` sits on the *west* face of cell ``(k, j, i)``, at ``x = i dx``;
  ``v[k, j, i]`` on the *south* face, at ``y = j dy``; both ``(nz, ny, nx)``,
  because x and y are periodic (the east face of the last cell is face 0);
* ``w[k, j, i]`` sits on the *bottom* face of cell ``k``, at ``z = k dz``:
  ``(nz + 1, ny, nx)``, with ``w[0]`` and ``w[nz]`` on the rigid walls (always 0).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from xlex.core.errors import OptionError, OptionTypeError

#: Smallest number of cells along a periodic axis: the WENO5 stencil spans 6.
MIN_HORIZONTAL_CELLS = 6
#: Smallest number of levels (the vertical stencils shrink near the walls).
MIN_VERTICAL_CELLS = 2


@dataclasses.dataclass(frozen=True)
class Grid:
    """A uniform Arakawa C grid, periodic in x and y, bounded by rigid walls in z.

    Parameters
    ----------
    nx, ny, nz : int
        Number of cells in x, y and z.
    dx, dy, dz : float
        Cell size [m].
    """

    nx: int
    ny: int
    nz: int
    dx: float
    dy: float
    dz: float

    def __post_init__(self):
        for name in ("nx", "ny", "nz"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise OptionTypeError(f"Grid {name} must be an integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("nx", "ny"):
            if getattr(self, name) < MIN_HORIZONTAL_CELLS:
                raise OptionError(
                    f"Grid {name}={getattr(self, name)} is too small: the periodic WENO5 "
                    f"stencil needs at least {MIN_HORIZONTAL_CELLS} cells; use a finer spacing")
        if self.nz < MIN_VERTICAL_CELLS:
            raise OptionError(f"Grid nz={self.nz} is too small: at least "
                              f"{MIN_VERTICAL_CELLS} levels are needed")
        for name in ("dx", "dy", "dz"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating,
                                                                 np.integer)):
                raise OptionTypeError(f"Grid {name} must be a number in metres, got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise OptionError(f"Grid {name} must be a positive spacing in metres, "
                                  f"got {value!r}")
            object.__setattr__(self, name, float(value))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of a cell-centred field, ``(nz, ny, nx)``."""
        return (self.nz, self.ny, self.nx)

    @property
    def w_shape(self) -> tuple[int, int, int]:
        """Shape of ``w``, ``(nz + 1, ny, nx)``."""
        return (self.nz + 1, self.ny, self.nx)

    @property
    def lengths(self) -> tuple[float, float, float]:
        """Domain size ``(Lz, Ly, Lx)`` [m]."""
        return (self.nz * self.dz, self.ny * self.dy, self.nx * self.dx)

    @property
    def points(self) -> int:
        """Number of cells."""
        return self.nx * self.ny * self.nz

    def centres(self, axis: str) -> np.ndarray:
        """Cell-centre coordinates along ``axis`` ('x', 'y' or 'z') [m]."""
        n, d = self._axis(axis)
        return (np.arange(n) + 0.5) * d

    def faces(self, axis: str) -> np.ndarray:
        """Face coordinates along ``axis`` [m]: n west/south faces, or nz + 1 z faces."""
        n, d = self._axis(axis)
        return np.arange(n + (axis == "z")) * d

    def _axis(self, axis):
        try:
            return {"x": (self.nx, self.dx), "y": (self.ny, self.dy),
                    "z": (self.nz, self.dz)}[axis]
        except KeyError:
            raise OptionError(f"axis must be 'x', 'y' or 'z', got {axis!r}") from None

    def describe(self) -> str:
        """Short text such as ``'60x60x30 at 400x400x400 m'``."""
        return (f"{self.nx}x{self.ny}x{self.nz} at "
                f"{self.dx:g}x{self.dy:g}x{self.dz:g} m")
