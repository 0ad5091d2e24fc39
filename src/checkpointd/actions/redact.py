"""Keeping secrets out of logs, errors, metrics and the store.

Three tools, used together:

- :func:`secrets_of`: every secret string one action config holds (webhook
  URLs and their paths, signing secrets, routing keys, custom header values).
- :class:`Scrubber`: replaces any of those strings, wherever they occur in a
  text, with ``***``; a last line of defence for messages built from foreign
  exceptions.
- :func:`describe_exception`: a secret-free description of an HTTP client
  error. aiohttp puts the full URL into many of its messages (``InvalidURL``,
  ``ClientResponseError``), so the message is never used as is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from checkpointd.config.models import (
    ActionConfig,
    KafkaConfig,
    PagerDutyAction,
    SlackAction,
    WebhookAction,
)
from checkpointd.logs import REDACTED, redact_url

__all__ = [
    "REDACTED",
    "Scrubber",
    "describe_exception",
    "mask_headers",
    "redact_url",
    "secrets_of",
]

_MIN_SECRET = 4  # shorter strings would mask ordinary words
_PUBLIC_HEADERS: Final = frozenset(
    {"content-type", "user-agent", "accept", "idempotency-key", "x-checkpointd-delivery",
     "x-checkpointd-notification", "x-checkpointd-previous-status", "x-checkpointd-signature"}
)  # fmt: skip
_SLACK_URL = re.compile(r"https?://hooks\.slack\.com[^\s\"'<>]*", re.IGNORECASE)


def _url_secrets(url: str) -> list[str]:
    """The URL, and its path/query/user-info parts: any of them may be the credential."""
    found = [url]
    try:
        parts = urlsplit(url)
    except ValueError:
        return found
    if parts.path not in ("", "/"):
        found.append(parts.path)
        # The longest path segment alone (Slack's last segment is the token).
        found.extend(seg for seg in parts.path.split("/") if len(seg) >= 8)
    if parts.query:
        found.append(parts.query)
        # Each long value alone too, as for path segments: a foreign error may quote a
        # token without its name (``token=...``).
        found.extend(value for _name, value in parse_qsl(parts.query) if len(value) >= 8)
    if parts.username:
        found.append(parts.username)
    if parts.password:
        found.append(parts.password)
    return found


def secrets_of(action: ActionConfig, kafka: KafkaConfig | None = None) -> list[str]:
    """Every string in ``action`` (and the Kafka section) that must never be shown."""
    found: list[str] = []
    if isinstance(action, WebhookAction):
        found += _url_secrets(action.url)
        if action.secret is not None:
            found.append(action.secret.get_secret_value())
        found += list(action.headers.values())
    elif isinstance(action, SlackAction):
        found += _url_secrets(action.webhook_url.get_secret_value())
    elif isinstance(action, PagerDutyAction):
        found.append(action.routing_key.get_secret_value())
        found += _url_secrets(action.url)[1:]
    if kafka is not None and kafka.sasl_plain_password is not None:
        found.append(kafka.sasl_plain_password.get_secret_value())
    return [s for s in found if len(s) >= _MIN_SECRET]


class Scrubber:
    """Masks known secret strings (and any Slack webhook URL) in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        unique = sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)
        # Longest first, so a URL is masked whole before its path is.
        self._pattern = re.compile("|".join(map(re.escape, unique))) if unique else None

    def __call__(self, text: str) -> str:
        """``text`` with every known secret replaced by ``***``."""
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        return _SLACK_URL.sub(lambda m: redact_url(m.group(0)), text)


def mask_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers for display: values of anything but well-known public headers masked."""
    return {k: v if k.lower() in _PUBLIC_HEADERS else REDACTED for k, v in headers.items()}


def describe_exception(exc: BaseException, destination: str) -> str:
    """A short, secret-free account of a client-side failure reaching ``destination``.

    Only the exception's type and, for OS-level errors, the errno text are
    used: they never carry the URL.
    """
    kind = type(exc).__name__
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and os_error.strerror:
        return f"{kind} reaching {destination}: {os_error.strerror}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{kind} reaching {destination}: {exc.strerror}"
    return f"{kind} reaching {destination}"
