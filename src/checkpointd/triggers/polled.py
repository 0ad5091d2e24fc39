"""A polled trigger as a trigger source: the one trigger model for user plug-ins.

Every trigger reaches a run the same way: a :class:`~checkpointd.protocols.TriggerSource`
whose ``run(emit)`` hands events over. A polled trigger (``AsyncBaseTrigger``, or anything
with ``should_trigger_async``) is asked for an event every ``interval`` seconds;
:class:`PolledSource` is the loop that asks and emits, so the runner runs a user's polled
trigger exactly as it runs the daemon's schedule, file and Kafka sources.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from checkpointd.errors import RunnerError
from checkpointd.protocols import Emit
from checkpointd.triggers.base import AsyncTrigger

__all__ = ["PolledSource"]

OnError = Callable[[str, str, Exception], None]
"""Told what failed (``"trigger poll failed"``, ``"trigger event not accepted"``), the
trigger's name, and why."""


class PolledSource:
    """``ManagedSource`` over a polled trigger: poll, emit what it returns, wait, again.

    A poll that raises, or an event the runner does not accept, is reported to
    ``on_error`` and polling goes on; an emit refused because the runner is stopping ends
    the source.
    """

    def __init__(self, trigger: AsyncTrigger, *, interval: float, on_error: OnError) -> None:
        self.trigger = trigger
        self._interval = interval
        self._on_error = on_error

    @property
    def name(self) -> str:
        return self.trigger.name

    async def start(self) -> None:
        await self.trigger.start()

    async def stop(self) -> None:
        await self.trigger.stop()

    async def run(self, emit: Emit) -> None:
        while True:
            try:
                event = await self.trigger.should_trigger_async()
            except Exception as exc:
                self._on_error("trigger poll failed", self.name, exc)
                event = None
            if event is not None:
                try:
                    await emit(event)
                except RunnerError:
                    return  # the runner is stopping
                except Exception as exc:
                    self._on_error("trigger event not accepted", self.name, exc)
            await asyncio.sleep(self._interval)
