"""Where deliveries may go: the host allow-list and the link-local refusal.

A notification URL comes from a config file, but ``${ENV}`` interpolation and
templated configs make it easy for a wrong value to point the daemon at
``http://169.254.169.254/`` (the cloud metadata service) and leak its answer
into an error message. So:

- with ``daemon.actions.allow_hosts`` set, only those hosts may be contacted
  (``hooks.example.com`` exactly, ``*.example.com`` for its subdomains);
- link-local addresses (169.254.0.0/16, fe80::/10) are refused unless
  ``allow_link_local`` is set. Literal addresses are checked before the
  request; names are checked after resolution by :class:`GuardedResolver`,
  so DNS cannot smuggle a metadata address in.

Refusals are :class:`~checkpointd.errors.DeliveryError` with ``retryable=False``:
the delivery is dead at once and says why.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from checkpointd.config.models import DaemonActionsConfig
from checkpointd.errors import DeliveryError

__all__ = ["GuardedResolver", "LinkLocalRefused", "check_url", "host_allowed", "is_link_local"]


def host_allowed(host: str, allow_hosts: Sequence[str] | None) -> bool:
    """Whether ``host`` is on the allow-list (None: every host is)."""
    if allow_hosts is None:
        return True
    host = host.lower().rstrip(".")
    for entry in allow_hosts:
        pattern = entry.lower().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and host != pattern[2:]:
                return True
        elif host == pattern:
            return True
    return False


def is_link_local(host: str) -> bool:
    """True for a literal link-local IPv4/IPv6 address (names are not resolved here)."""
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_link_local
    return address.is_link_local


def check_url(url: str, settings: DaemonActionsConfig, *, what: str) -> str:
    """The URL's host, after checking scheme, allow-list and link-local; else DeliveryError.

    ``what`` names the action (secret-free) in the message.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host = None
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise DeliveryError(f"{what}: the URL is not an absolute http(s) URL", retryable=False)
    if not host_allowed(host, settings.allow_hosts):
        raise DeliveryError(
            f"{what}: host {host!r} is not in daemon.actions.allow_hosts", retryable=False
        )
    if not settings.allow_link_local and is_link_local(host):
        raise DeliveryError(
            f"{what}: host {host} is link-local (cloud metadata range); refused unless "
            "daemon.actions.allow_link_local is true",
            retryable=False,
        )
    return host


class LinkLocalRefused(OSError):
    """A name resolved to a link-local address and link-local is not allowed."""


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that refuses names resolving to link-local addresses."""

    def __init__(self, inner: AbstractResolver | None = None, *, allow_link_local: bool) -> None:
        self._inner = inner or DefaultResolver()
        self._allow_link_local = allow_link_local

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if not self._allow_link_local:
            bad = [r for r in found if is_link_local(str(r["host"]))]
            if bad:
                raise LinkLocalRefused(0, "the name resolves to a link-local address (refused)")
        return found

    async def close(self) -> None:
        await self._inner.close()
