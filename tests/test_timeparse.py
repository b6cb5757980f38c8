"""Durations for ``duration``, ``dt`` and ``output_every``: numbers, strings, timedelta64."""

import numpy as np
import pytest

from xlex.core.errors import OptionError, OptionTypeError, XlexError
from xlex.timeparse import to_seconds, whole_multiple


@pytest.mark.parametrize(
    "value, seconds",
    [
        ("20min", 1200.0),
        ("1h30min", 5400.0),
        ("1h 30min", 5400.0),
        (90, 90.0),
        (90.5, 90.5),
        (np.int64(7), 7.0),
        (np.float32(2.5), 2.5),
        ("12 s", 12.0),
        ("12", 12.0),
        ("  45s  ", 45.0),
        ("1.5h", 5400.0),
        ("2 minutes", 120.0),
        ("1 day", 86400.0),
        ("20MIN", 1200.0),
        (np.timedelta64(2, "m"), 120.0),
        (np.timedelta64(1500, "ms"), 1.5),
    ],
)
def test_to_seconds_accepts(value, seconds):
    result = to_seconds(value, "duration")
    assert isinstance(result, float)
    assert result == pytest.approx(seconds, rel=1e-12)


@pytest.mark.parametrize(
    "value, error",
    [
        ("", OptionError),
        ("   ", OptionError),
        ("abc", OptionError),
        ("20 parsecs", OptionError),
        ("20ms", OptionError),  # milliseconds are not silently read as minutes
        ("-5s", OptionError),
        (-5, OptionError),
        (0, OptionError),
        (0.0, OptionError),
        ("0min", OptionError),
        (float("nan"), OptionError),
        (float("inf"), OptionError),
        (np.timedelta64("NaT"), OptionError),
        (np.timedelta64(-3, "s"), OptionError),
        (True, OptionTypeError),
        (None, OptionTypeError),
        ([20], OptionTypeError),
    ],
)
def test_to_seconds_rejects_with_the_option_name(value, error):
    with pytest.raises(error) as info:
        to_seconds(value, "output_every")
    assert isinstance(info.value, XlexError)
    assert "output_every" in str(info.value)


def test_type_errors_are_also_type_errors_and_value_errors_value_errors():
    # user code catching the builtin families keeps working
    with pytest.raises(TypeError):
        to_seconds(None, "dt")
    with pytest.raises(ValueError):
        to_seconds("abc", "dt")


def test_malformed_number_is_rejected():
    with pytest.raises(OptionError):
        to_seconds("1.5.3", "dt")


def test_nonlinear_timedelta_unit_is_an_xlex_error():
    with pytest.raises(XlexError, match="dt"):
        to_seconds(np.timedelta64(1, "M"), "dt")


def test_whole_multiple():
    assert whole_multiple(1200.0, 60.0, "duration", "output_every") == 20
    assert whole_multiple(0.3, 0.1, "duration", "output_every") == 3  # float rounding
    with pytest.raises(OptionError, match="duration.*output_every"):
        whole_multiple(150.0, 60.0, "duration", "output_every")
    with pytest.raises(OptionError, match="output_every.*dt"):
        whole_multiple(30.0, 60.0, "output_every", "dt")


def _message(*args):
    with pytest.raises(OptionError) as info:
        whole_multiple(*args)
    return str(info.value)


def test_suggestions_divide_and_never_shorten_the_run():
    msg = _message(600.0, 420.0, "duration", "output_every")
    assert "output_every=150, 200 or 300 s" in msg
    assert "duration=840 s" in msg          # the longer run, never 420 s
    assert "duration=420" not in msg and "=420 s" not in msg


@pytest.mark.parametrize("big, small", [(60.0, 25.0), (60.0, 7.0), (1200.0, 3.7), (30.0, 60.0),
                                        (0.3, 0.7)])
def test_dt_suggestions_divide_the_interval(big, small):
    import re
    msg = _message(big, small, "output_every", "dt")
    listed = re.search(r"dt=([0-9., or]+) s", msg).group(1)
    values = [float(v) for v in re.split(r",\s*|\s+or\s+", listed)]
    assert values and small not in values
    for v in values:
        assert abs(big / v - round(big / v)) < 1e-9


def test_absurd_dt_is_refused_clearly():
    msg = _message(60.0, 1e-9, "output_every", "dt")
    assert "out of reach" in msg and "seconds" in msg
