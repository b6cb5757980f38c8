"""The exception family of xlex: every user error is an :class:`XlexError`.

Messages name the offending variable or option, what was expected, what was
found, and how to fix it.
"""


class XlexError(Exception):
    """Base class of every error xlex raises for bad input or a failed run."""


class DatasetError(XlexError, ValueError):
    """A Dataset does not meet the xlex contract (names, dims, sizes, units, values)."""


class OptionError(XlexError, ValueError):
    """An option has a bad value (out of range, inconsistent with others)."""


class OptionTypeError(XlexError, TypeError):
    """An option has the wrong type."""


class GridMismatchError(XlexError, ValueError):
    """Two Datasets compared with each other do not share grid or times."""


class CFLError(OptionError):
    """The time step breaks the advective CFL limit."""


class BlowUpError(XlexError, FloatingPointError):
    """A run produced non-finite values or exceeded the CFL limit.

    Attributes
    ----------
    time : float
        Model time [s] of the first bad output.
    variable : str
        The variable that went bad.
    location : dict
        Coordinates of the worst point.
    outputs : xarray.Dataset or None
        Every output completed before the failure.
    """

    def __init__(self, message, *, time=None, variable=None, location=None, outputs=None):
        super().__init__(message)
        self.time = time
        self.variable = variable
        self.location = location
        self.outputs = outputs
