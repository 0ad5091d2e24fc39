"""Polled triggers: asked every ``trigger_poll_interval`` whether a run is due.

The runner calls ``await trigger.should_trigger_async()`` on its own schedule
and runs the trigger's checkpoint for every :class:`TriggerEvent` returned.
``start()`` is awaited once before the first poll and ``stop()`` once when the
runner stops. (The daemon's own schedule, Kafka and file triggers push events
instead; see ``protocols.TriggerSource``.)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from checkpointd.clock import SYSTEM_CLOCK, Clock
from checkpointd.events import TriggerEvent

__all__ = ["AsyncBaseTrigger", "AsyncTrigger"]


@runtime_checkable
class AsyncTrigger(Protocol):
    """What the runner needs from a polled trigger."""

    @property
    def name(self) -> str: ...

    @property
    def trigger_type(self) -> str: ...

    async def should_trigger_async(self) -> TriggerEvent | None:
        """An event when a run is due now, else None. May wait (e.g. for a message)."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class AsyncBaseTrigger(ABC):
    """Base class for polled triggers: implement :meth:`should_trigger_async`.

    :meth:`event` builds a :class:`TriggerEvent` stamped with this trigger's
    type and the injected clock's time.
    """

    trigger_type: str = "custom"

    def __init__(self, name: str | None = None, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.name: str = name or self.trigger_type
        self.clock = clock

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    @abstractmethod
    async def should_trigger_async(self) -> TriggerEvent | None:
        """An event when a run is due now, else None; errors are counted and logged."""

    async def start(self) -> None:
        """Called once before the first poll (open connections here)."""
        return None

    async def stop(self) -> None:
        """Called once when the runner stops (close connections here)."""
        return None

    def event(
        self,
        key: str,
        params: Mapping[str, str] | None = None,
        *,
        checkpoint: str | None = None,
        records: Sequence[Mapping[str, Any]] | None = None,
    ) -> TriggerEvent:
        """A new event from this trigger; ``key`` must identify the firing for deduplication."""
        return TriggerEvent(
            type=self.trigger_type,
            key=key,
            fired_at=self.clock.now(),
            checkpoint=checkpoint,
            params=dict(params or {}),
            records=records,
        )
