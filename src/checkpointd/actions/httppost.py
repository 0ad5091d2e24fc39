"""One HTTP POST for the HTTP channels (webhook, Slack, PagerDuty), with every rule applied.

- the URL is checked first (scheme, allow-list, link-local; see ``guard``);
- timeouts: ``connect`` for the TCP/TLS connect, ``timeout`` for each socket
  read (aiohttp's ``sock_read``) and for the whole request, so a receiver that
  accepts the connection and then never answers is cut off too;
- redirects are not followed; TLS is verified unless ``verify_tls`` is false;
- the answer is classified by ``retry.classify_status`` (``Retry-After`` kept);
- every error message names the destination in its redacted form and never
  includes the URL, the body or the receiver's answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
from multidict import CIMultiDict

from checkpointd.actions.channel import ChannelContext, DeliveryOutcome
from checkpointd.actions.host_policy import LinkLocalRefused, check_url
from checkpointd.actions.redact import describe_exception
from checkpointd.actions.retry import classify_status
from checkpointd.errors import DeliveryError

__all__ = ["HttpTarget", "post"]

USER_AGENT = "checkpointd"
_MAX_ANSWER = 64 * 1024  # the answer is read (to reuse the connection) but never stored


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """Where and how one channel POSTs."""

    url: str
    destination: str
    """Secret-free name of the destination, for messages."""
    timeout: timedelta
    verify_tls: bool = True


async def post(
    context: ChannelContext,
    target: HttpTarget,
    body: bytes,
    headers: Mapping[str, str],
) -> DeliveryOutcome:
    """POST ``body``; a DeliveryOutcome on 2xx, else DeliveryError (retryable or not)."""
    check_url(target.url, context.settings, what=target.destination)
    seconds = target.timeout.total_seconds()
    connect = min(seconds, context.settings.connect_timeout.total_seconds())
    timeout = aiohttp.ClientTimeout(
        total=seconds, connect=connect, sock_connect=connect, sock_read=seconds
    )
    sent_headers = {"User-Agent": USER_AGENT, **headers}
    try:
        async with context.session().post(
            target.url,
            data=body,
            headers=sent_headers,
            timeout=timeout,
            allow_redirects=False,
            ssl=target.verify_tls,
        ) as response:
            await response.content.read(_MAX_ANSWER)
            status = response.status
            answer_headers = CIMultiDict(response.headers)  # Retry-After in any case
    except TimeoutError:
        raise DeliveryError(
            f"{target.destination}: no answer within the {seconds:g}s timeout "
            f"(connect limit {connect:g}s)",
            retryable=True,
        ) from None
    except aiohttp.ClientConnectorError as exc:
        refused = isinstance(exc.os_error, LinkLocalRefused)
        raise DeliveryError(
            describe_exception(exc, target.destination), retryable=not refused
        ) from None
    except aiohttp.InvalidURL:
        raise DeliveryError(
            f"{target.destination}: the configured URL is invalid", retryable=False
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise DeliveryError(describe_exception(exc, target.destination), retryable=True) from None
    error = classify_status(status, answer_headers, context.clock.now(), what=target.destination)
    if error is not None:
        raise error
    return DeliveryOutcome(status_code=status, detail=f"HTTP {status}")
