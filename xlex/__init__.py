"""xlex: a differentiable, GPU-ready large-eddy simulation model in JAX, driven from xarray.

Importing xlex registers the ``ds.lex`` Dataset accessor.
"""

import os as _os

# Streamed stores are appended to while notebooks read them: HDF5's file locks
# would make either side fail, so (unless the user chose) they are off.
_os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")

__version__ = "0.1.0"

from xlex import accessor as _accessor  # noqa: E402,F401  (registers ds.lex)
from xlex import cases, datasets  # noqa: E402
from xlex.config import ModelConfig  # noqa: E402
from xlex.driver import resume  # noqa: E402
from xlex.errors import (  # noqa: E402
    BlowUpError,
    CFLError,
    DatasetError,
    GridMismatchError,
    OptionError,
    OptionTypeError,
    XlexError,
)
from xlex.grid import Grid  # noqa: E402
from xlex.io.cm1 import open_cm1  # noqa: E402

__all__ = ["cases", "datasets", "open_cm1", "resume", "ModelConfig", "Grid", "XlexError",
           "DatasetError", "OptionError", "OptionTypeError", "GridMismatchError", "CFLError",
           "BlowUpError"]
