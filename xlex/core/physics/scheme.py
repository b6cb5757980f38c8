"""The protocol of a physics scheme, and the decorator that makes one a pytree.

A scheme is a frozen, keyword-only dataclass validated when built. Its float
parameters (declared with :func:`parameter`) are the leaves of a pytree, so a
step that takes the scheme as an argument can be differentiated, vmapped and
jitted with respect to them; every other field is a static choice, part of the
tree's structure (a new choice is a new compiled step, a new value of a
parameter is not).

A scheme provides what it needs of:

``check(grid)``
    Grid-dependent validation, called when a step is built, before compiling.
``prepare(state, base, grid) -> prepared``
    Work done once per step from the state at its start and held over the
    Runge-Kutta stages (an eddy viscosity, surface fluxes).
``tendency(state, prepared, base, grid) -> State``
    A term of the explicit tendency, added before the pressure projection so
    that the divergence stays at the solver's tolerance.
``correct(state, base, grid) -> State``
    A change of the state after a whole step (the seam for a learned
    correction); the model projects the winds again if ``projects_correction``.
``diagnose(state, base, grid) -> dict``
    Output fields at an output time, declared with their dims and attributes
    in the class attribute ``outputs``.

:func:`xlex.core.model.make_step` sums them in one place.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import ClassVar

import jax
import numpy as np

from xlex.core.errors import OptionError, OptionTypeError

#: Every scheme class by name, for reading a recorded physics back.
REGISTRY: dict[str, type] = {}


def parameter(default=dataclasses.MISSING, **kwargs):
    """A dataclass field holding a float parameter (or a tuple of them): a leaf of
    the scheme's pytree."""
    return dataclasses.field(default=default, metadata={"parameter": True}, **kwargs)


def component(default_factory=None, **kwargs):
    """A dataclass field holding another scheme (or None): a subtree of the pytree."""
    if default_factory is None:
        return dataclasses.field(default=None, metadata={"parameter": True}, **kwargs)
    return dataclasses.field(default_factory=default_factory, metadata={"parameter": True},
                             **kwargs)


def _leaf_names(cls):
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("parameter"))


def scheme(cls):
    """Make ``cls`` a frozen keyword-only dataclass registered as a pytree whose
    :func:`parameter` fields are children and whose other fields are static."""
    cls = dataclasses.dataclass(frozen=True, kw_only=True)(cls)
    leaves = _leaf_names(cls)
    static = tuple(f.name for f in dataclasses.fields(cls) if f.name not in leaves)

    def flatten(obj):
        children = [(jax.tree_util.GetAttrKey(n), getattr(obj, n)) for n in leaves]
        return children, tuple(getattr(obj, n) for n in static)

    def unflatten(aux, children):
        # no __init__: tracers and placeholders must not meet the validation
        obj = object.__new__(cls)
        for name, value in zip(leaves, children, strict=True):
            object.__setattr__(obj, name, value)
        for name, value in zip(static, aux, strict=True):
            object.__setattr__(obj, name, value)
        return obj

    jax.tree_util.register_pytree_with_keys(cls, flatten, unflatten)
    name = registry_name(cls)
    if name in REGISTRY and REGISTRY[name].__qualname__ != cls.__qualname__:
        raise TypeError(f"a scheme named {name!r} is already registered")
    REGISTRY[name] = cls
    return cls


def registry_name(cls) -> str:
    """The name a scheme class is recorded under: its bare name for xlex's own
    schemes, ``module.QualName`` for any other (so a user's class never takes the
    place of a built-in one of the same name)."""
    if cls.__module__.split(".")[0] == "xlex":
        return cls.__name__
    return f"{cls.__module__}.{cls.__qualname__}"


def is_concrete_number(value) -> bool:
    """A value the constructor can check (a Python or numpy number, not a tracer)."""
    return isinstance(value, (int, float, np.number)) or (
        isinstance(value, np.ndarray) and value.ndim == 0)


def check_number(owner, name, value, *, low=None, high=None, low_open=False, unit=""):
    """Refuse a parameter that is not a finite number in [low, high] (or (low, high]
    with ``low_open``); tracers and arrays pass unchecked (they come from jax)."""
    if isinstance(value, bool) or not (is_concrete_number(value) or hasattr(value, "shape")):
        raise OptionTypeError(f"{owner}({name}=...) must be a number{unit and ' [' + unit + ']'}"
                              f", got {type(value).__name__} {value!r}")
    if not is_concrete_number(value):
        return
    value = float(value)
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"<= {high:g}")
    bad = not math.isfinite(value) or (
        low is not None and (value <= low if low_open else value < low)) or (
        high is not None and value > high)
    if bad:
        raise OptionError(f"{owner}({name}={value!r}) is out of range: {name} must be finite"
                          + (f" and {' and '.join(bounds)}" if bounds else "")
                          + (f" [{unit}]" if unit else ""))


def check_choice(owner, name, value, choices):
    """Refuse a static option that is not one of ``choices``."""
    if isinstance(value, bool) or value not in choices:
        kind = OptionError if isinstance(value, type(choices[0])) else OptionTypeError
        raise kind(f"{owner}({name}={value!r}) is not known; choose one of {tuple(choices)}")


def check_flag(owner, name, value):
    """Refuse a non-bool switch (``"False"`` is not False)."""
    if not isinstance(value, (bool, np.bool_)):
        raise OptionTypeError(f"{owner}({name}=...) must be True or False, got {value!r}")


class PhysicsScheme:
    """Base class of the physics schemes (see the module docstring).

    The defaults do nothing, so a scheme implements only what it needs.
    """

    #: Output fields: name -> (dims after ``time``, CF attributes).
    outputs: ClassVar[dict] = {}
    #: Whether the model projects the winds onto the constraint after ``correct``.
    projects_correction: ClassVar[bool] = False

    def check(self, grid):
        """Grid-dependent validation, before anything compiles."""

    def prepare(self, state, base, grid):
        """Work held over the Runge-Kutta stages of one step."""
        return None

    def tendency(self, state, prepared, base, grid):
        """A term of the explicit tendency (a State), or None."""
        return None

    def correct(self, state, base, grid):
        """The state after the whole step's correction (default: unchanged)."""
        return state

    def diagnose(self, state, base, grid) -> dict:
        """Output fields at an output time (see ``outputs``)."""
        return {}

    def to_dict(self) -> dict:
        """The scheme as JSON-safe data: its class name and every field."""
        out = {"scheme": registry_name(type(self))}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = _jsonable(value)
        return out


def implements(obj, method: str) -> bool:
    """Whether ``obj`` overrides ``method`` of :class:`PhysicsScheme`."""
    return getattr(type(obj), method, None) is not getattr(PhysicsScheme, method)


def _jsonable(value):
    if isinstance(value, PhysicsScheme):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if hasattr(value, "shape") and getattr(value, "ndim", 1) == 0:
        return float(value)
    return value


def from_dict(data):
    """Rebuild (and so validate) a scheme written by :meth:`PhysicsScheme.to_dict`."""
    if data is None:
        return None
    if not isinstance(data, dict) or "scheme" not in data:
        raise OptionError(f"a recorded scheme must be a mapping with a 'scheme' key, got "
                          f"{data!r}")
    name = data["scheme"]
    cls = REGISTRY.get(name)
    if cls is None:
        raise OptionError(f"recorded scheme {name!r} is not known to this xlex; known: "
                          f"{sorted(REGISTRY)}")
    if hasattr(cls, "from_record"):  # a scheme recorded by reference (e.g. to a file)
        return cls.from_record(data)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names - {"scheme"})
    if unknown:
        raise OptionError(f"recorded scheme {name} has unknown fields {unknown}")
    kwargs = {}
    for key, value in data.items():
        if key == "scheme":
            continue
        if isinstance(value, dict) and "scheme" in value:
            value = from_dict(value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def dumps(obj) -> str:
    """``obj.to_dict()`` as compact, key-sorted JSON."""
    return json.dumps(obj.to_dict(), sort_keys=True, separators=(",", ":"))
