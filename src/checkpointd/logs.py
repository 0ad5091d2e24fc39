"""Structured logging: one structlog pipeline for checkpointd and the libraries it uses.

``configure_logging`` sets up structlog so that every line

- is a JSON object when the stream is not a terminal (``fmt="auto"``), and
  the human console format on a terminal;
- carries an ISO 8601 UTC ``timestamp`` and ``level``;
- carries ``run_id`` and ``checkpoint`` when emitted inside :func:`bind_run`
  (contextvars, so it follows the run across ``await`` and into tasks it
  starts);
- has secrets masked (:func:`redact_event`) before it is rendered.

Standard-library loggers (aiohttp, aiokafka, apscheduler) are routed through
the same processors and renderer at warning level and above, so an operator
sees one format, not two.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal, TextIO
from urllib.parse import urlsplit

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

LogFormat = Literal["auto", "json", "console"]

REDACTED = "***"
"""What a masked value is replaced with."""

# Key names whose values are secrets wherever they appear (also nested, and
# as part of longer names such as ``hook_secret`` or ``x-api-key``).
_SECRET_KEY = re.compile(
    r"secret|token|passw(or)?d|authorization|webhook_url|routing_key|api[_-]?key|cookie",
    re.IGNORECASE,
)
# A Slack incoming-webhook URL is itself the credential: mask its path
# wherever it shows up, e.g. inside an aiohttp error message.
_SLACK_HOOK_URL = re.compile(r"https?://hooks\.slack\.com[^\s\"'<>]*", re.IGNORECASE)

_LEVELS: Mapping[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def redact_url(url: str) -> str:
    """Keep ``scheme://host[:port]`` of a URL; mask user info, path, query and fragment.

    ``https://hooks.slack.com/services/T0/B0/XYZ`` becomes
    ``https://hooks.slack.com/***``. Text that is not an absolute URL is
    masked whole, since it cannot be shown safely in part.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return REDACTED
    if not parts.scheme or not host:
        return REDACTED
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    origin = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    if parts.username or parts.password or parts.query or parts.fragment:
        return f"{origin}/{REDACTED}"
    if parts.path in ("", "/"):
        return origin + parts.path
    return f"{origin}/{REDACTED}"


def _redact_value(key: str | None, value: Any) -> Any:
    if key is not None and _SECRET_KEY.search(key) and value not in (None, ""):
        if isinstance(value, str) and "://" in value:
            # A URL-valued secret (webhook_url) keeps its host, so operators
            # still see which service failed; if nothing of it would be
            # masked, mask it whole.
            shown = redact_url(value)
            return shown if shown != value else REDACTED
        return REDACTED
    if isinstance(value, str):
        return _SLACK_HOOK_URL.sub(lambda m: redact_url(m.group(0)), value)
    if isinstance(value, Mapping):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(None, v) for v in value)
    return value


def redact_event(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secret-named keys and Slack webhook URLs.

    Values of keys named like secret, token, password, authorization,
    webhook_url, routing_key or api_key are replaced (URLs keep their
    ``scheme://host``); any ``hooks.slack.com`` URL inside any string,
    including the message and a formatted traceback, has its path masked.
    """
    for key, value in list(event_dict.items()):
        event_dict[key] = _redact_value(key, value)
    return event_dict


def _shared_processors() -> list[Processor]:
    """Steps every line takes, from structlog or from stdlib logging, before rendering."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        # Tracebacks become a string here, before redaction, so a secret in an
        # exception message is masked too.
        structlog.processors.format_exc_info,
        redact_event,
    ]


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):  # closed or detached stream
        return False


def _renderer(fmt: LogFormat, stream: TextIO) -> Processor:
    if fmt == "auto":
        fmt = "console" if _is_tty(stream) else "json"
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=_is_tty(stream))
    return structlog.processors.JSONRenderer(sort_keys=False)


class _CheckpointdHandler(logging.StreamHandler[TextIO]):
    """Marks the root handler configure_logging installed, so a re-configure replaces it."""


def configure_logging(level: str, fmt: LogFormat = "auto", stream: TextIO | None = None) -> None:
    """Set up structlog and route stdlib logging through it; safe to call again on reload.

    ``level`` is one of debug, info, warning, error (case-insensitive).
    ``stream`` defaults to ``sys.stdout`` at call time.
    """
    try:
        min_level = _LEVELS[level.lower()]
    except KeyError:
        raise ValueError(
            f"log level must be one of {', '.join(_LEVELS)}, found {level!r}"
        ) from None
    out = sys.stdout if stream is None else stream
    renderer = _renderer(fmt, out)

    structlog.configure(
        processors=[*_shared_processors(), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(min_level),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        # Not cached: a reload may change the level or format, and loggers
        # created at import time must pick that up.
        cache_logger_on_first_use=False,
    )

    handler = _CheckpointdHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *_shared_processors()],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _CheckpointdHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Libraries log chatty details at info/debug; only their warnings matter here.
    root.setLevel(max(min_level, logging.WARNING))


def reset_logging() -> None:
    """Undo :func:`configure_logging`: structlog defaults, stdlib root as Python starts it."""
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _CheckpointdHandler)]:
        root.removeHandler(old)
    root.setLevel(logging.WARNING)


def get_logger(**initial_values: Any) -> FilteringBoundLogger:
    """A structlog logger, typed for mypy, optionally with bound values."""
    logger: FilteringBoundLogger = structlog.get_logger(**initial_values)
    return logger


@contextmanager
def bind_run(run_id: str, checkpoint: str) -> Iterator[None]:
    """Every line logged inside the block (and in tasks it starts) names the run."""
    with structlog.contextvars.bound_contextvars(run_id=run_id, checkpoint=checkpoint):
        yield
