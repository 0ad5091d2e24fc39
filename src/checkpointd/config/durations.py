"""Durations as operators write them: ``500ms``, ``30s``, ``5m``, ``1h``, ``1d``."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_COMPOUND = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_MAX_SECONDS = 10_000 * 86400.0


def parse_duration(value: Any) -> timedelta:
    """Parse ``500ms``/``30s``/``5m``/``1h``/``1d``, ``1h30m``, or a number of seconds.

    Raises ValueError with the accepted forms when the value is not a duration.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(_explain(value))
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, found {value}")
        return _seconds(float(value), value)
    if not isinstance(value, str):
        raise ValueError(_explain(value))
    text = value.strip().lower()
    match = _PATTERN.match(text)
    if match:
        return _seconds(float(match.group(1)) * _UNITS[match.group(2)], value)
    parts = _COMPOUND.findall(text)
    if parts and "".join(n + u for n, u in parts) == text.replace(" ", ""):
        return _seconds(sum(float(n) * _UNITS[u] for n, u in parts), value)
    raise ValueError(_explain(value))


def _seconds(seconds: float, original: Any) -> timedelta:
    # YAML reads ".inf" and ".nan" as floats, and timedelta raises
    # OverflowError (which pydantic would not turn into a config error).
    if not math.isfinite(seconds) or seconds > _MAX_SECONDS:
        raise ValueError(f"a duration must be finite and under 10000 days, found {original!r}")
    return timedelta(seconds=seconds)


def _explain(value: Any) -> str:
    return (
        f"expected a duration like 500ms, 30s, 5m, 1h or 1h30m (or a number of seconds), "
        f"found {value!r}"
    )


def format_duration(value: timedelta) -> str:
    """The shortest operator-style spelling of a duration."""
    seconds = value.total_seconds()
    if 0 < seconds < 1 and (seconds * 1000).is_integer():
        return f"{int(seconds * 1000)}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:.6f}".rstrip("0").rstrip(".") + "s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]
