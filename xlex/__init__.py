"""xlex: a differentiable, GPU-ready large-eddy simulation model in JAX, driven from xarray.

Importing xlex registers the ``ds.lex`` Dataset accessor.
"""

__version__ = "0.1.0"

# First of all: the `xlex` command's Ctrl-C handler (importing JAX takes seconds,
# and a Ctrl-C then must not print a traceback or be swallowed)
from xlex import interrupt as _interrupt
_interrupt.install_for_command()

# Before anything compiles: a persistent compilation cache in the user's cache
# directory (XLEX_COMPILATION_CACHE=0 turns it off), so a second process running
# the same configuration loads its programs instead of compiling them again.
from xlex import compilation_cache
compilation_cache.enable_from_environment()

from xlex import accessor as _accessor  # noqa: F401  (registers ds.lex)
from xlex import cases, datasets
from xlex.core.dynamics.numerics import Advection, PressureSolver
from xlex.core.model import Physics, make_step, parameters
from xlex.core.physics.constant_viscosity import ConstantViscosity
from xlex.core.physics.dynamic_smagorinsky import DynamicSmagorinsky
from xlex.core.physics.rotation import FPlane
from xlex.core.physics.smagorinsky import Smagorinsky
from xlex.core.physics.sponge import Sponge
from xlex.core.physics.surface import BulkSurface
from xlex.runner import resume
from xlex.core.errors import (
    BlowUpError,
    CFLError,
    DatasetError,
    GridMismatchError,
    OptionError,
    OptionTypeError,
    XlexError,
)
from xlex.core.grid import Grid
from xlex.io.cm1 import open_cm1


def __getattr__(name):
    # xlex.ml (flax) is imported when first used, not with xlex
    if name == "ml":
        import importlib
        return importlib.import_module("xlex.ml")
    raise AttributeError(f"module 'xlex' has no attribute {name!r}")

__all__ = ["cases", "compilation_cache", "datasets", "open_cm1", "resume", "Physics", "Advection", "PressureSolver",
           "Smagorinsky", "DynamicSmagorinsky", "BulkSurface", "FPlane", "Sponge", "ConstantViscosity", "parameters",
           "make_step", "Grid", "XlexError",
           "DatasetError", "OptionError", "OptionTypeError", "GridMismatchError", "CFLError",
           "BlowUpError"]
