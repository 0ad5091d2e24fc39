"""Progress on long commands: an elapsed-time spinner on a TTY, silence elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from types import TracebackType
from typing import TextIO

_FRAMES = "|/-\\"


class Progress:
    """``async with Progress("running orders")``: after ``delay`` seconds on a TTY, shows a
    spinner with the elapsed time; clears its line when done. Does nothing when not a TTY."""

    def __init__(
        self, label: str, *, stream: TextIO = sys.stderr, delay: float = 0.5, every: float = 0.2
    ) -> None:
        self._label = label
        self._stream = stream
        self._delay = delay
        self._every = every
        self._task: asyncio.Task[None] | None = None
        self._shown = False

    async def __aenter__(self) -> Progress:
        if self._stream.isatty():
            self._task = asyncio.get_running_loop().create_task(self._spin())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._shown:
            self._stream.write("\r\033[K")
            self._stream.flush()

    async def _spin(self) -> None:
        start = time.monotonic()
        await asyncio.sleep(self._delay)
        frame = 0
        while True:
            elapsed = time.monotonic() - start
            self._stream.write(f"\r{_FRAMES[frame % 4]} {self._label} … {elapsed:.1f}s")
            self._stream.flush()
            self._shown = True
            frame += 1
            await asyncio.sleep(self._every)
