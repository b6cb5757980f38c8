"""Durations given as seconds or strings such as ``"20min"`` or ``"1h 30min"``."""

from __future__ import annotations

import math
import re

import numpy as np

from xlex.core.errors import OptionError, OptionTypeError

_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
          "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0, "m": 60.0,
          "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
          "d": 86400.0, "day": 86400.0, "days": 86400.0}
_TOKEN = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z]*)")


def to_seconds(value, name: str) -> float:
    """A duration in seconds from a number [s], a ``numpy.timedelta64`` or a string
    like ``"20min"``, ``"90 s"``, ``"1h30min"``; must be positive and finite."""
    if isinstance(value, bool):
        raise OptionTypeError(f"{name} must be a duration (seconds or a string like '20min'), "
                              f"got {value!r}")
    if isinstance(value, np.timedelta64):
        try:
            seconds = float(value / np.timedelta64(1, "s"))
        except TypeError:
            raise OptionError(f"{name}={value!r} has a calendar unit (months or years) with no "
                              "fixed length; give seconds or e.g. '30d'") from None
    elif isinstance(value, (int, float, np.integer, np.floating)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        pos, seconds, tokens = 0, 0.0, 0
        if not text:
            raise OptionError(f"{name} is an empty string; give e.g. '20min' or 1200")
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            unit = m.group(2).lower() if m else None
            tokens += 1
            # a bare number is allowed alone ("90"), never as part of a longer text
            bare = m is not None and not unit and (tokens > 1 or m.end() < len(text))
            if not m or (unit and unit not in _UNITS) or bare:
                raise OptionError(
                    f"{name}={value!r} is not a duration I can read; write seconds (1200) or "
                    f"a number with a unit such as '20min', '90s', '1h30min'")
            seconds += float(m.group(1)) * _UNITS.get(unit, 1.0)
            pos = m.end()
    else:
        raise OptionTypeError(f"{name} must be a duration (seconds or a string like '20min'), "
                              f"got {type(value).__name__} {value!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise OptionError(f"{name} must be a positive duration, got {value!r}")
    return seconds


MAX_STEPS = 10**8
"""The most steps (or records) one ratio of durations may ask for; beyond it a
value is almost surely a typo (dt=1e-9) and integer step counts would overflow."""


def _divisors_near(big: float, small: float, count: int = 3) -> list[float]:
    """Up to ``count`` values that divide ``big`` whole, nearest to ``small`` first
    (whole seconds when ``big`` is whole, else ``big / k``), never ``small`` itself."""
    if abs(big - round(big)) < 1e-9 * max(1.0, big) and round(big) <= 10**7:
        b = int(round(big))
        divs = set()
        for k in range(1, int(math.isqrt(b)) + 1):
            if b % k == 0:
                divs.update((k, b // k))
        cands = [float(d) for d in divs if d < b or small > b]
    else:
        cands = [big / k for k in range(1, 1000)]
    cands = [c for c in cands if abs(c - small) > 1e-9 * max(1.0, small)]
    return sorted(sorted(cands, key=lambda c: (abs(math.log(c / small)), c))[:count])


def _words(values: list[float], name: str) -> str:
    text = [f"{v:g}" for v in values]
    if len(text) > 1:
        text = [", ".join(text[:-1]) + " or " + text[-1]]
    return f"{name}={text[0]} s"


def whole_multiple(big: float, small: float, big_name: str, small_name: str) -> int:
    """``big / small`` as an integer, or an error naming both options.

    The error suggests values of ``small`` that divide ``big`` and the nearest
    longer ``big``; it never suggests the rejected values, nor a shorter ``big``
    (which would cut a run short)."""
    ratio = big / small
    if not math.isfinite(ratio) or ratio > MAX_STEPS:
        raise OptionError(f"{big_name} ({big:g} s) / {small_name} ({small:g} s) = {ratio:g} "
                          f"steps is out of reach (at most {MAX_STEPS:.0e}); is {small_name} in "
                          f"seconds? Choose a larger {small_name}")
    n = round(ratio)
    if n < 1 or abs(ratio - n) > 1e-9 * max(1.0, ratio):
        longer = math.ceil(ratio) * small
        raise OptionError(
            f"{big_name} ({big:g} s) must be a whole multiple of {small_name} ({small:g} s); "
            f"the ratio is {ratio:.6g}. Choose e.g. "
            f"{_words(_divisors_near(big, small), small_name)} (dividing {big_name}), "
            f"or {big_name}={longer:g} s")
    return int(n)
