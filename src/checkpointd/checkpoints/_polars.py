"""Small helpers around polars shared by the data sources and the validators."""

from __future__ import annotations

from collections.abc import Iterable

from polars.exceptions import PanicException

POLARS_FAILURES: tuple[type[BaseException], ...] = (Exception, PanicException)
"""What a polars call may raise on bad data or a bad plan.

Polars raises its own ``PolarsError`` subclasses, but also ``OSError``,
``ValueError`` and, on data it cannot decode, a Rust panic surfaced as
``PanicException`` (a ``BaseException``): all of them mean "this failed".
"""

_MAX_ERROR_CHARS = 300
_MAX_LISTED = 10


def brief_error(exc: BaseException) -> str:
    """The useful first paragraph of an exception's text (polars appends plans and hints)."""
    text = str(exc).strip() or type(exc).__name__
    text = " ".join(text.split("\n\n", 1)[0].split())
    if len(text) > _MAX_ERROR_CHARS:
        text = text[: _MAX_ERROR_CHARS - 3] + "..."
    return text


def list_names(names: Iterable[str], limit: int = _MAX_LISTED) -> str:
    """``a, b, c``: at most ``limit`` names, then how many more there are."""
    items = list(names)
    shown = ", ".join(items[:limit]) or "none"
    return shown if len(items) <= limit else f"{shown}, ... ({len(items) - limit} more)"
