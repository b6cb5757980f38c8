"""The physics of a call to ``integrate``: scheme objects, string shorthands and
what a Dataset records, resolved to one :class:`xlex.core.model.Physics`.

A Dataset written by xlex records its physics as one JSON attribute,
:data:`PHYSICS_ATTR` (``{"schema": 1, "physics": {...}}``); files written by
xlex 0.1 recorded flat ``xlex_<option>`` attributes, which are read here too.
"""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np

from xlex.core.dynamics.numerics import SOLVERS, Advection, PressureSolver
from xlex.core.errors import OptionError, OptionTypeError, XlexError
from xlex.core.model import SLOT_TYPES, Physics
from xlex.core.physics.constant_viscosity import ConstantViscosity
from xlex.core.physics.dynamic_smagorinsky import DynamicSmagorinsky
from xlex.core.physics.rotation import FPlane
from xlex.core.physics.scheme import PhysicsScheme, from_dict
from xlex.core.physics.smagorinsky import Smagorinsky
from xlex.core.physics.surface import BulkSurface

#: The Dataset attribute that records a run's physics.
PHYSICS_ATTR = "xlex_physics"
#: Version of the JSON written to :data:`PHYSICS_ATTR`.
PHYSICS_SCHEMA = 1

#: Scheme names accepted as string shorthands, by slot ("none": no scheme).
SCHEME_NAMES = {
    "sgs": {"none": None, "smagorinsky": Smagorinsky, "dynamic": DynamicSmagorinsky,
            "constant": ConstantViscosity},
    "surface": {"none": None, "bulk": BulkSurface},
}

#: Shorthand keyword -> (slot, field of the slot's scheme).
SHORTHANDS = {
    "cs": ("sgs", "cs"),
    "prandtl": ("sgs", "prandtl"),
    "stability": ("sgs", "stability"),
    "filter_ratio": ("sgs", "filter_ratio"),
    "nu": ("sgs", "nu"),
    "kappa": ("sgs", "kappa"),
    "surface_temperature": ("surface", "surface_temperature"),
    "surface_potential_temperature": ("surface", "surface_potential_temperature"),
    "roughness_length": ("surface", "roughness_length"),
    "scalar_roughness_length": ("surface", "scalar_roughness_length"),
    "moisture_availability": ("surface", "moisture_availability"),
    "minimum_wind_speed": ("surface", "minimum_wind_speed"),
    "coriolis": ("rotation", "f"),
    "geostrophic_u": ("rotation", "geostrophic_wind"),
    "geostrophic_v": ("rotation", "geostrophic_wind"),
    "solver": ("pressure", "method"),
    "tolerance": ("pressure", "tolerance"),
    "max_iterations": ("pressure", "max_iterations"),
    "momentum_advection": ("advection", "momentum"),
    "vertical_order": ("advection", "vertical_order"),
    "weno_epsilon": ("advection", "weno_epsilon"),
    "weno_regularisation": ("advection", "weno_regularisation"),
    "positive_moisture": ("advection", "positive_moisture"),
}
#: The slots of :class:`Physics`, which ``integrate`` takes as keywords.
SLOTS = ("advection", "pressure", "rotation", "sgs", "surface", "sponge")


def _slot_kwargs(slot, shorthand, current=None):
    """The scheme fields of ``slot`` named by the shorthand keywords; a geostrophic
    component not named keeps its value in ``current`` (the scheme changed)."""
    out = {}
    for name, value in shorthand.items():
        target, field = SHORTHANDS[name]
        if target != slot:
            continue
        if name in ("geostrophic_u", "geostrophic_v"):
            continue
        out[field] = value
    if slot == "rotation" and ({"geostrophic_u", "geostrophic_v"} & set(shorthand)):
        ug, vg = current.geostrophic_wind if current is not None else (0.0, 0.0)
        out["geostrophic_wind"] = (shorthand.get("geostrophic_u", ug),
                                   shorthand.get("geostrophic_v", vg))
    return out


def _fields_of(cls, slot, kwargs):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        inverse = {v[1]: k for k, v in SHORTHANDS.items() if v[0] == slot}
        shown = [inverse.get(n, n) for n in unknown]
        verb = "is not an option" if len(shown) == 1 else "are not options"
        raise OptionError(f"{', '.join(shown)} {verb} of {cls.__name__} (the {slot} scheme)")


def scheme_from_name(slot, name, kwargs):
    """The scheme of ``slot`` called ``name`` (a shorthand) built with ``kwargs``."""
    names = SCHEME_NAMES[slot]
    if not isinstance(name, str):
        raise OptionTypeError(f"{slot} must be a scheme object, one of {tuple(names)} or None, "
                              f"got {type(name).__name__} {name!r}")
    if name not in names:
        raise OptionError(f"{slot}={name!r} is not known; choose one of {tuple(names)} or pass "
                          "a scheme object (e.g. xlex.Smagorinsky(cs=0.2))")
    cls = names[name]
    if cls is None:
        if kwargs:
            raise OptionError(f"{sorted(kwargs)[0]} is set but {slot}='none'; choose a {slot} "
                              "scheme to use it")
        return None
    _fields_of(cls, slot, kwargs)
    return cls(**kwargs)


def _update(obj, slot, kwargs):
    """``obj`` (a recorded or default scheme) with some fields changed."""
    if not kwargs:
        return obj
    if obj is None:
        if slot == "rotation":
            if "f" not in kwargs:
                raise OptionError("geostrophic_u / geostrophic_v are set but this run has no "
                                  "rotation; pass coriolis=... [s-1] too (or "
                                  "rotation=xlex.FPlane(f=..., geostrophic_wind=(ug, vg)))")
            return FPlane(**kwargs)
        example = "sgs='smagorinsky'" if slot == "sgs" else "surface='bulk'"
        raise OptionError(f"{sorted(kwargs)[0]} is an option of a {slot} scheme, and this run "
                          f"has none; pass {slot}=... (e.g. {example})")
    _fields_of(type(obj), slot, kwargs)
    temperatures = {"surface_temperature", "surface_potential_temperature"}
    if slot == "surface" and temperatures & set(kwargs):
        kwargs = {**{t: None for t in temperatures}, **kwargs}  # one replaces the other
    return dataclasses.replace(obj, **kwargs)


def resolve_physics(recorded: Physics | None = None, *, physics=None, shorthand=None,
                    **slots) -> Physics:
    """The physics of a run.

    ``recorded`` (what the Dataset records, or None) supplies what the call does
    not name; ``physics`` (a :class:`Physics`) replaces it whole. A slot given as a
    scheme object, a shorthand name or None replaces the recorded one; shorthand
    options (``cs=0.2``) configure the slot's named scheme or, when the slot is
    not named, change those fields of the recorded scheme.
    """
    shorthand = dict(shorthand or {})
    unknown = sorted(set(shorthand) - set(SHORTHANDS))
    if unknown:
        raise OptionTypeError(f"unknown option(s) {unknown} for integrate; the options are "
                              f"{sorted(set(SHORTHANDS) | set(SLOTS) | {'physics'})}")
    if physics is not None:
        if not isinstance(physics, Physics):
            raise OptionTypeError(f"physics must be an xlex.Physics, got "
                                  f"{type(physics).__name__}")
        named = sorted(set(slots) | set(shorthand))
        if named:
            raise OptionError(f"physics=... is given with {named}; put those schemes in the "
                              "Physics object instead")
        return physics
    base = recorded if recorded is not None else Physics()
    chosen = {}
    for slot in SLOTS:
        try:
            chosen[slot] = _choose(slot, base, slots, shorthand)
        except XlexError as err:
            raise _naming_shorthands(err, slot, shorthand) from None
    if chosen["rotation"] is not None and "rotation" not in slots and \
            "coriolis" in shorthand and shorthand["coriolis"] == 0:
        chosen["rotation"] = None  # coriolis=0: no rotation
    return Physics(**chosen)


def _naming_shorthands(err, slot, shorthand):
    """``err`` of a scheme built from shorthand options, saying which option the
    user wrote (``solver``) when the message names only the field (``method``)."""
    given = [k for k in shorthand if SHORTHANDS[k][0] == slot]
    if not given or any(re.search(rf"\b{k}\b", str(err)) for k in given):
        return err
    culprits = [k for k in given if re.search(rf"\b{SHORTHANDS[k][1]}\b", str(err))] or given
    return type(err)(f"option {', '.join(culprits)}: {err}")


def _choose(slot, base, slots, shorthand):
    """The scheme of one slot (see :func:`resolve_physics`)."""
    if slot not in slots:
        kwargs = _slot_kwargs(slot, shorthand, getattr(base, slot))
        return _update(getattr(base, slot), slot, kwargs)
    kwargs = _slot_kwargs(slot, shorthand)
    value = slots[slot]
    if isinstance(value, str) and slot in SCHEME_NAMES:
        return scheme_from_name(slot, value, kwargs)
    if not (isinstance(value, PhysicsScheme) or value is None):
        raise OptionTypeError(f"{slot} must be a scheme object (e.g. "
                              f"xlex.{SLOT_TYPES[slot][0].__name__}(...)) or None, got "
                              f"{value!r}")
    if kwargs:
        options = ", ".join(sorted(k for k in shorthand if SHORTHANDS[k][0] == slot))
        if value is None:
            raise OptionError(f"{options} is set but {slot}=None")
        name = type(value).__name__
        raise OptionError(f"{options} given with {slot}={name}(...); set it in the object "
                          f"instead, e.g. {name}(...)")
    return value


def physics_attrs(physics: Physics) -> dict:
    """The attribute recording ``physics`` (:data:`PHYSICS_ATTR`)."""
    doc = {"schema": PHYSICS_SCHEMA, "physics": physics.to_dict()}
    return {PHYSICS_ATTR: json.dumps(doc, sort_keys=True, separators=(",", ":"))}


def recorded_physics(attrs) -> Physics | None:
    """The physics recorded in a Dataset's attributes, or None when none is.

    Reads :data:`PHYSICS_ATTR` and, for files of xlex 0.1, the flat
    ``xlex_<option>`` attributes (whose advection is the 0.1 scheme: absolute
    WENO regularisation, no moisture limiter).
    """
    if PHYSICS_ATTR in attrs:
        try:
            doc = json.loads(str(attrs[PHYSICS_ATTR]))
            if doc.get("schema") != PHYSICS_SCHEMA:
                raise OptionError(f"schema {doc.get('schema')!r} is not {PHYSICS_SCHEMA}, the "
                                  "one this xlex reads")
            if '"NeuralSGS"' in str(attrs[PHYSICS_ATTR]):
                import xlex.ml.neural_sgs  # noqa: F401  (registers the scheme; needs flax)
            physics = from_dict(doc["physics"])
        except XlexError as err:
            raise type(err)(f"{err} (from the Dataset's {PHYSICS_ATTR} attribute; pass the "
                            "scheme to integrate to override it)") from None
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise OptionError(
                f"the Dataset's {PHYSICS_ATTR} attribute cannot be read ({err}); delete it to "
                "run with the default physics, or pass physics=xlex.Physics(...)") from None
        if not isinstance(physics, Physics):
            raise OptionError(f"the Dataset's {PHYSICS_ATTR} attribute holds a "
                              f"{type(physics).__name__}, not a Physics")
        return physics
    legacy = legacy_options(attrs)
    if not legacy:
        return None
    legacy.setdefault("weno_regularisation", "absolute")
    legacy.setdefault("positive_moisture", False)
    slots = {s: legacy.pop(s) for s in ("sgs", "surface") if s in legacy}
    try:
        return resolve_physics(None, shorthand=legacy, **slots)
    except XlexError as err:
        culprits = [n for n in legacy if re.search(rf"\b{n}\b", str(err))]
        where = f"xlex_{culprits[0]}" if culprits else "xlex_*"
        raise type(err)(f"{err} (from the Dataset's {where} attribute; pass "
                        f"{culprits[0] if culprits else 'the option'}=... to integrate to "
                        "override it)") from None


#: Flat attributes of xlex 0.1 and their types.
LEGACY_OPTIONS = {
    "solver": str, "tolerance": float, "max_iterations": int, "vertical_order": int,
    "momentum_advection": str, "weno_epsilon": float, "coriolis": float,
    "geostrophic_u": float, "geostrophic_v": float, "sgs": str, "cs": float,
    "prandtl": float, "stability": bool, "surface": str, "surface_temperature": float,
    "surface_potential_temperature": float, "roughness_length": float,
    "scalar_roughness_length": float, "moisture_availability": float,
    "minimum_wind_speed": float,
}


def _legacy_value(key, kind, value):
    """``value`` of the attribute ``key`` as ``kind``, or an OptionError naming it
    ("False" is not True, "five" is not a number, an array is not one value)."""
    if np.ndim(value) == 1 and np.size(value) == 1:
        value = np.asarray(value).reshape(())
    value = value.item() if isinstance(value, (np.generic, np.ndarray)) and np.ndim(value) == 0 \
        else value
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is bool and isinstance(value, str) and value in ("True", "False"):
        return value == "True"
    if isinstance(value, str) and value == "none":
        return value
    if kind is str:
        ok = isinstance(value, str)
    elif kind is bool:
        ok = isinstance(value, bool) or (number and value in (0, 1))
    else:
        ok = number and (kind is float or float(value).is_integer())
    if not ok:
        wanted = {str: "a string", bool: "True or False", int: "a whole number",
                  float: "a number"}[kind]
        raise OptionError(f"the Dataset's attribute {key} is {value!r}, not {wanted}; restore "
                          "the value xlex wrote, or delete the attribute and pass the option "
                          "to integrate")
    return kind(value)


def legacy_options(attrs) -> dict:
    """The options of xlex 0.1 recorded as ``xlex_<name>`` attributes, typed back."""
    out = {}
    for name, kind in LEGACY_OPTIONS.items():
        key = f"xlex_{name}"
        if key not in attrs:
            continue
        value = _legacy_value(key, kind, attrs[key])
        if isinstance(value, str) and value == "none" and kind is not str:
            continue
        out[name] = value
    # 0.1 recorded every option: keep those of the schemes the run used
    unused = []
    if out.get("sgs", "none") == "none":
        unused += ["cs", "prandtl", "stability"]
    elif out["sgs"] == "dynamic":
        unused.append("cs")
    if out.get("surface", "none") == "none":
        unused += [n for n, (slot, _) in SHORTHANDS.items() if slot == "surface"]
    if out.get("coriolis", 0.0) == 0.0:
        unused += ["coriolis", "geostrophic_u", "geostrophic_v"]
    for name in unused:
        out.pop(name, None)
    return out


__all__ = ["resolve_physics", "recorded_physics", "physics_attrs", "PHYSICS_ATTR",
           "SHORTHANDS", "SLOTS", "SOLVERS", "Advection", "PressureSolver"]
