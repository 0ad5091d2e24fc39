"""Retry policy of deliveries, as pure functions: which answers are worth retrying,
how long to wait, and what ``Retry-After`` says.

- 2xx: delivered.
- 408, 425, 429 and every 5xx: retryable (the receiver may manage later).
- other 4xx and 3xx: not retryable; the delivery is dead at once. A redirect
  is refused on purpose: following it could leave the host allow-list.
- Waits: exponential from ``backoff.initial`` by ``backoff.multiplier``, capped
  at ``backoff.max``, with full jitter (:func:`checkpointd.asyncutils.backoff_delay`).
  A ``Retry-After`` on a 429 or 503 replaces the drawn wait (capped at
  ``retry_after_max``, so a hostile header cannot park a delivery for a year).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Final

from checkpointd.asyncutils import backoff_delay
from checkpointd.config.models import BackoffConfig
from checkpointd.errors import DeliveryError

__all__ = [
    "RETRY_AFTER_STATUSES",
    "HttpStatusError",
    "classify_status",
    "parse_retry_after",
    "retry_delay",
]

RETRYABLE_4XX: Final = frozenset({408, 425, 429})
RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
"""Statuses whose ``Retry-After`` header is honoured."""


class HttpStatusError(DeliveryError):
    """A receiver answered with a status that is not 2xx; ``status_code`` says which."""

    def __init__(
        self, message: str, *, status_code: int, retryable: bool, retry_after: float | None
    ) -> None:
        super().__init__(message, retryable=retryable, retry_after=retry_after)
        self.status_code = status_code


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from ``now`` a ``Retry-After`` value asks for (delta-seconds or HTTP date).

    None when absent or unreadable; never negative.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def classify_status(
    status: int, headers: Mapping[str, str], now: datetime, *, what: str
) -> HttpStatusError | None:
    """None for a 2xx answer, else the DeliveryError it amounts to.

    ``what`` names the destination (secret-free) in the message.
    """
    if 200 <= status < 300:
        return None
    retry_after = None
    if status in RETRY_AFTER_STATUSES:
        retry_after = parse_retry_after(headers.get("Retry-After"), now)
    retryable = status >= 500 or status in RETRYABLE_4XX
    if 300 <= status < 400:
        message = f"{what} answered HTTP {status} (a redirect); redirects are not followed"
    else:
        message = f"{what} answered HTTP {status}"
    if retry_after is not None:
        message += f" with Retry-After {retry_after:g}s"
    return HttpStatusError(
        message, status_code=status, retryable=retryable, retry_after=retry_after
    )


def retry_delay(
    attempt: int,
    backoff: BackoffConfig,
    *,
    retry_after: float | None = None,
    retry_after_max: float = 3600.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1 = the first try).

    ``retry_after`` (from the receiver) wins over the drawn backoff, capped at
    ``retry_after_max``.
    """
    if retry_after is not None:
        return min(max(0.0, retry_after), retry_after_max)
    return backoff_delay(
        attempt,
        backoff.initial.total_seconds(),
        backoff.multiplier,
        max_delay=backoff.max.total_seconds(),
        jitter=True,
        rng=rng,
    )
