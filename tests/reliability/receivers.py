"""Webhook receivers that misbehave on cue: real HTTP servers for the reliability suite.

A receiver decides its answer to each request from the request's ``Idempotency-Key`` and
how many requests with that key it has seen so far (a :data:`Behaviour`), and records every
request it got as a :class:`Hit`: which key, which attempt, what it answered, and when
(``time.monotonic()`` of the test process, so a test can tell which daemon process sent it).

Two kinds of server, because no single one can do everything:

- :class:`HttpReceiver`: an aiohttp server; answers 200, 500, 503, 429 (with or without
  ``Retry-After``) or hangs until the client gives up.
- :class:`RawReceiver`: a plain asyncio socket server that speaks just enough HTTP/1.1 and
  can also reset the connection (a TCP RST after the request headers, via ``SO_LINGER``
  0), which aiohttp cannot.

:class:`ReceiverHost` runs any number of them on one event loop in a thread of its own, so
the test's thread stays free to start, kill and query the daemon.

"Acknowledged" means the receiver answered 2xx; it records that before it writes the
answer, so a daemon killed after the receiver accepted but before it read the answer
still counts as acknowledged here (that is the window at-least-once delivery is about).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from aiohttp import web

__all__ = [
    "Answer",
    "Behaviour",
    "Hit",
    "HttpReceiver",
    "RawReceiver",
    "Receiver",
    "ReceiverHost",
    "Switch",
    "always",
    "chaos",
    "scripted",
]

T = TypeVar("T")


class Answer(StrEnum):
    """What a receiver does with one request."""

    ACK = "ack"  # 200
    ERROR = "500"
    UNAVAILABLE = "503"
    LIMITED = "429"  # no Retry-After: the sender's own backoff applies
    LIMITED_RETRY_AFTER = "429+retry-after"  # Retry-After: 1
    HANG = "hang"  # no answer until the client gives up
    RESET = "reset"  # TCP RST after the request headers (RawReceiver only)


Behaviour = Callable[[str, int], Answer]
"""(idempotency key, attempt number of that key as this receiver counts them, from 1) →
what to answer."""

_STATUS: Mapping[Answer, tuple[int, str, str]] = {
    Answer.ACK: (200, "OK", ""),
    Answer.ERROR: (500, "Internal Server Error", ""),
    Answer.UNAVAILABLE: (503, "Service Unavailable", ""),
    Answer.LIMITED: (429, "Too Many Requests", ""),
    Answer.LIMITED_RETRY_AFTER: (429, "Too Many Requests", "Retry-After: 1\r\n"),
}


def always(answer: Answer) -> Behaviour:
    """The same answer to every request."""
    return lambda _key, _attempt: answer


def scripted(*answers: Answer, then: Answer = Answer.ACK) -> Behaviour:
    """Attempt n of each key gets ``answers[n - 1]``; later attempts get ``then``."""
    return lambda _key, attempt: answers[attempt - 1] if attempt <= len(answers) else then


def chaos(seed: int, weights: Mapping[Answer, float]) -> Behaviour:
    """A random answer drawn with ``weights``, reproducible per (seed, key, attempt).

    Seeding per request rather than per receiver keeps each key's fate the same whatever
    order concurrent requests arrive in.
    """
    answers = list(weights)
    cumulative = list(weights.values())

    def decide(key: str, attempt: int) -> Answer:
        rng = random.Random(f"{seed}:{key}:{attempt}")
        return rng.choices(answers, weights=cumulative)[0]

    return decide


class Switch:
    """A receiver that is up (200) or down (``down_answer``) as the test flips it."""

    def __init__(self, down_answer: Answer = Answer.UNAVAILABLE) -> None:
        self.down = False
        self.down_answer = down_answer

    def __call__(self, _key: str, _attempt: int) -> Answer:
        return self.down_answer if self.down else Answer.ACK


@dataclass(frozen=True, slots=True)
class Hit:
    """One request a receiver got."""

    receiver: str
    key: str
    attempt: int
    answer: Answer
    at: float
    """``time.monotonic()`` when the receiver decided (for an ACK: before answering)."""
    path: str


class Receiver(ABC):
    """What both server kinds share: the behaviour, the per-key counts, the record."""

    def __init__(self, name: str, behaviour: Behaviour, *, hang_limit: float = 30.0) -> None:
        self.name = name
        self.behaviour = behaviour
        self.hang_limit = hang_limit
        """The longest a HANG waits for the client to give up."""
        self.port = 0
        self._hits: list[Hit] = []
        self._attempts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def decide(self, key: str, path: str) -> Answer:
        """Count the request, pick the answer, record it."""
        with self._lock:
            self._attempts[key] += 1
            attempt = self._attempts[key]
            answer = self.behaviour(key, attempt)
            self._hits.append(Hit(self.name, key, attempt, answer, time.monotonic(), path))
        return answer

    def hits(self) -> list[Hit]:
        """Every request so far (a copy; safe from any thread)."""
        with self._lock:
            return list(self._hits)

    @abstractmethod
    async def start(self) -> None:
        """Listen on ``self.port`` (on the host's loop)."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop listening and close every connection."""


class HttpReceiver(Receiver):
    """An aiohttp server; every path is the same hook.

    With ``echo``, every answer's body repeats the request's path, query and headers, as
    careless receivers do in their error pages: a sender must never store or log it.
    """

    _runner: web.AppRunner | None = None

    def __init__(
        self, name: str, behaviour: Behaviour, *, hang_limit: float = 30.0, echo: bool = False
    ) -> None:
        super().__init__(name, behaviour, hang_limit=hang_limit)
        self.echo = echo

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        answer = self.decide(request.headers.get("Idempotency-Key", ""), request.path)
        if answer is Answer.RESET:
            raise AssertionError(f"{self.name}: an aiohttp receiver cannot reset; use RawReceiver")
        if answer is Answer.HANG:
            # Hold the request until the client closes the connection (its timeout), then
            # answer something that is not an acknowledgement to nobody.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.hang_limit
            while loop.time() < deadline:
                transport = request.transport
                if transport is None or transport.is_closing():
                    break
                await asyncio.sleep(0.05)
            return web.Response(status=503, text="gave up waiting")
        status, _reason, extra = _STATUS[answer]
        headers = {"Retry-After": "1"} if extra else {}
        text = "ok"
        if self.echo:
            text = f"{request.method} {request.path_qs}\n" + "".join(
                f"{k}: {v}\n" for k, v in request.headers.items()
            )
        return web.Response(status=status, text=text, headers=headers)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=0.5
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class RawReceiver(Receiver):
    """A socket server speaking minimal HTTP/1.1 (one request per connection); can reset."""

    _server: asyncio.Server | None = None

    def __init__(self, name: str, behaviour: Behaviour, *, hang_limit: float = 30.0) -> None:
        super().__init__(name, behaviour, hang_limit=hang_limit)
        self._writers: set[asyncio.StreamWriter] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        # The daemon may go away mid-request (killed, or it gave up waiting), or a hang may
        # reach its limit: either way there is nothing left to answer.
        gone = (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError)
        try:
            with contextlib.suppress(*gone, TimeoutError):
                await self._one(reader, writer)
        finally:
            self._writers.discard(writer)
            if not writer.is_closing():
                writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
        request_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        parts = request_line.split(" ")
        path = parts[1] if len(parts) > 1 else ""
        answer = self.decide(headers.get("idempotency-key", ""), path)
        if answer is Answer.RESET:
            # The body is still unread and SO_LINGER is 0: the kernel sends RST, not FIN.
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        await reader.readexactly(int(headers.get("content-length") or 0))
        if answer is Answer.HANG:
            # Wait for the client to give up (EOF), never answering.
            await asyncio.wait_for(reader.read(), timeout=self.hang_limit)
            return
        status, reason, extra = _STATUS[answer]
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
            f"Connection: close\r\n{extra}\r\nok".encode()
        )
        await writer.drain()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await self._server.wait_closed()


class ReceiverHost:
    """Runs receivers on one event loop in a background thread. Use as a context manager."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="reliability-receivers", daemon=True
        )
        self._thread.start()
        self._receivers: list[Receiver] = []

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def add(self, receiver: Receiver) -> Receiver:
        """Start ``receiver`` (on a free port unless its ``port`` is set); returns it."""
        self._call(receiver.start())
        self._receivers.append(receiver)
        return receiver

    def close(self) -> None:
        """Stop every receiver and the loop."""
        for receiver in self._receivers:
            with contextlib.suppress(Exception):
                self._call(receiver.stop())
        self._receivers.clear()

        async def settle() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self._call(settle())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> ReceiverHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
