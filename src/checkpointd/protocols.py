"""The interfaces between checkpointd's parts, in one place.

They are ``typing.Protocol``s: anything with the right methods fits, so test
doubles and user plug-ins need no inheritance.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from checkpointd.checkpoints.result import CheckpointResult
    from checkpointd.events import TriggerEvent


@runtime_checkable
class RunnableCheckpoint(Protocol):
    """Something the pool can run: a name and a run that never raises.

    ``run_async`` returns a result whose status says what happened; it
    re-raises only ``asyncio.CancelledError``.
    """

    @property
    def name(self) -> str: ...

    async def run_async(self, event: TriggerEvent | None = None) -> CheckpointResult: ...


class RunJournal(Protocol):
    """The durable journal the runner writes through (implemented by daemon.store.Store)."""

    async def journal_accept(self, event: TriggerEvent, checkpoint: str) -> bool:
        """Record an accepted event for one checkpoint; False when its key was seen before."""
        ...

    async def journal_mark_running(self, event: TriggerEvent, checkpoint: str) -> None:
        """Note that the run of an accepted event started. May return before this is
        durable (it commits no later than the run's result): a crash between leaves the
        row ``accepted``, which recovery treats as it treats ``running``."""
        ...

    async def save_results(
        self, items: Sequence[tuple[CheckpointResult, TriggerEvent | None]]
    ) -> None:
        """Store results (and their validator rows) and mark their journal rows done,
        in one transaction."""
        ...


class ResultSink(Protocol):
    """Where finished results go after the bounded result queue."""

    async def handle(
        self, items: Sequence[tuple[CheckpointResult, TriggerEvent | None]]
    ) -> None: ...


Emit = Callable[["TriggerEvent"], Awaitable[bool]]
"""How a trigger hands over an event. It returns once the event is journaled (True) or refused
as a duplicate of a key already journaled (False); it may wait while the pool is full — that wait
is the backpressure a trigger feels. It raises when it cannot take the event (the journal
failed, the daemon is stopping, the checkpoint is gone): the trigger must then not acknowledge
it. Only after it returns may the trigger acknowledge its source (commit a Kafka offset,
remember a file as seen)."""


class TriggerSource(Protocol):
    """A daemon trigger: a long-running task that turns the outside world into events."""

    @property
    def name(self) -> str:
        """Unique and stable across restarts, e.g. ``orders_quality/schedule[0]``."""
        ...

    async def run(self, emit: Emit) -> None:
        """Run until cancelled, calling ``emit`` for every event."""
        ...


class StateStore(Protocol):
    """Small durable key-value state for triggers (implemented by daemon.store.Store)."""

    async def get_state(self, namespace: str, key: str) -> str | None: ...

    async def set_state(self, namespace: str, key: str, value: str) -> None: ...

    async def has_seen(self, namespace: str, key: str) -> bool: ...

    async def mark_seen(self, namespace: str, keys: Sequence[str]) -> None: ...


class RunMetrics(Protocol):
    """What the runtime and the triggers it builds tell the metrics (``daemon.metrics.Metrics``).

    The runtime only says what happened; how it is exported is the daemon's business.
    """

    def run_in_flight(self) -> AbstractContextManager[None]:
        """Count a run as in flight for the duration of the ``with`` block."""
        ...

    def run_skipped(self, reason: str) -> None:
        """Count a run that was not started; ``reason`` is a short fixed word."""
        ...

    def schedule_misfire(self) -> None:
        """Count a scheduled fire time that was missed."""
        ...

    def file_trigger_refused(self, reason: str) -> None:
        """Count a file the file trigger refused (outside the directory, too large, ...)."""
        ...
