"""Progress on long commands: an elapsed-time spinner on a TTY, silence elsewhere.

Only a terminal gets the spinner: in a pipe, a log file or CI output the
carriage returns would be noise, so there nothing is written at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

_FRAMES = "|/-\\"
_CLEAR_LINE = "\r\033[K"


def is_tty(stream: TextIO) -> bool:
    """True when ``stream`` is an open terminal."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    """``async with Progress("running orders") as progress:`` shows, after ``delay``
    seconds on a TTY, a spinner with the label, the current :attr:`phase` and the
    elapsed time, redrawn every ``every`` seconds; its line is cleared when the
    block ends. Does nothing when ``stream`` is not a TTY.

    Quick commands finish within ``delay`` and never show a spinner at all.
    """

    def __init__(
        self,
        label: str,
        *,
        stream: TextIO = sys.stderr,
        delay: float = 0.5,
        every: float = 0.2,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._label = label
        self._stream = stream
        self._delay = delay
        self._every = every
        self._monotonic = monotonic
        self._task: asyncio.Task[None] | None = None
        self._shown = False
        #: What is happening now (e.g. "retrying in 2.0s"); shown after the label when set.
        self.phase = ""

    @property
    def active(self) -> bool:
        """True inside the block on a TTY (the spinner runs or is about to)."""
        return self._task is not None and not self._task.done()

    def line(self, elapsed: float, frame: int = 0) -> str:
        """The text of one redraw (without the leading line clear)."""
        what = f"{self._label}: {self.phase}" if self.phase else self._label
        return f"{_FRAMES[frame % len(_FRAMES)]} {what} … {elapsed:.1f}s"

    async def __aenter__(self) -> Progress:
        if is_tty(self._stream):
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
            self._task = None
        if self._shown:
            self._stream.write(_CLEAR_LINE)
            self._stream.flush()
            self._shown = False

    async def _spin(self) -> None:
        start = self._monotonic()
        await asyncio.sleep(self._delay)
        frame = 0
        while True:
            # Clearing first matters when the phase gets shorter than the last one.
            self._stream.write(_CLEAR_LINE + self.line(self._monotonic() - start, frame))
            self._stream.flush()
            self._shown = True
            frame += 1
            await asyncio.sleep(self._every)
