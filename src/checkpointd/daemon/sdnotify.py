"""Telling systemd how the daemon is doing: the ``sd_notify`` protocol, without libsystemd.

Under ``Type=notify`` systemd passes a datagram socket in ``$NOTIFY_SOCKET``
(a filesystem path, or ``@name`` for an abstract socket) and waits for
``READY=1`` before it considers the service started. With ``WatchdogSec=``
it also sets ``$WATCHDOG_USEC`` and restarts the service when no
``WATCHDOG=1`` arrives in time.

Notification is best effort by design: the daemon must run the same with or
without systemd, so :class:`SdNotifier` is a no-op when ``$NOTIFY_SOCKET`` is
unset and never raises; a failed send is logged once, not on every ping.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping

from checkpointd.logs import get_logger

_log = get_logger(component="sdnotify")


def _monotonic_usec() -> int:
    # systemd compares MONOTONIC_USEC with its own CLOCK_MONOTONIC reading.
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class SdNotifier:
    """Sends ``sd_notify`` messages to ``$NOTIFY_SOCKET``.

    ``environ`` defaults to ``os.environ``, read once at construction; tests
    pass their own mapping.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = self._parse_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_interval = self._parse_watchdog(
            env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        )
        self._failed = False

    @staticmethod
    def _parse_address(value: str) -> str | None:
        if not value:
            return None
        if value.startswith("@"):
            return "\0" + value[1:]  # Linux abstract namespace
        return value

    @staticmethod
    def _parse_watchdog(usec: str, pid: str) -> float | None:
        if pid:
            try:
                if int(pid) != os.getpid():
                    return None  # the watchdog is meant for another process
            except ValueError:
                return None
        try:
            value = int(usec)
        except ValueError:
            return None
        if value <= 0:
            return None
        # systemd's advice: ping at half the timeout.
        return value / 2 / 1_000_000

    @property
    def enabled(self) -> bool:
        """True when systemd asked for notifications (``$NOTIFY_SOCKET`` is set)."""
        return self._address is not None

    def notify(self, message: str) -> bool:
        """Send one raw message (``KEY=value`` lines); True if it was handed to the socket."""
        if self._address is None:
            return False
        try:
            # A fresh socket per message, as libsystemd does: nothing to close
            # at shutdown, and a socket systemd re-created is found again.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never block the event loop: a full receive queue is a failed
                # send, not a stall.
                sock.setblocking(False)
                sock.sendto(message.encode(), self._address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                _log.warning(
                    "sd_notify failed; further failures are not logged",
                    socket=self._address.replace("\0", "@", 1),
                    error=str(exc),
                )
            return False
        return True

    def ready(self) -> bool:
        """The daemon is up: config loaded, HTTP listening, triggers started."""
        return self.notify("READY=1")

    def reloading(self) -> bool:
        """A reload has begun; send :meth:`ready` when it has finished."""
        return self.notify(f"RELOADING=1\nMONOTONIC_USEC={_monotonic_usec()}")

    def stopping(self) -> bool:
        """Shutdown has begun (draining)."""
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        """A one-line status shown by ``systemctl status``."""
        return self.notify("STATUS=" + " ".join(text.splitlines()))

    def watchdog(self) -> bool:
        """Keep-alive ping for ``WatchdogSec=``."""
        return self.notify("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of ``WATCHDOG_USEC``), or None when off.

        None also when ``WATCHDOG_PID`` names another process.
        """
        return self._watchdog_interval

    async def watchdog_loop(
        self, is_healthy: Callable[[], bool], interval: float | None = None
    ) -> None:
        """Ping the watchdog every interval, but only while ``is_healthy()`` is true.

        An unhealthy daemon stops pinging so systemd restarts it. Returns at
        once when the watchdog is off; otherwise runs until cancelled.
        ``interval`` overrides :meth:`watchdog_interval` (tests).
        """
        period = self._watchdog_interval if interval is None else interval
        if period is None or self._address is None:
            return
        while True:
            if self._healthy(is_healthy):
                self.watchdog()
            await asyncio.sleep(period)

    @staticmethod
    def _healthy(is_healthy: Callable[[], bool]) -> bool:
        try:
            return bool(is_healthy())
        except Exception as exc:
            # A broken health check counts as unhealthy: systemd restarts us,
            # which is the point of the watchdog.
            _log.error("health check raised; withholding the watchdog ping", error=repr(exc))
            return False
