"""Triggers: each turns the outside world into :class:`TriggerEvent` objects.

The daemon's own triggers (``schedule``, ``file``, ...) push events; a polled
trigger of your own subclasses :class:`AsyncBaseTrigger` (see ``base``).
Names are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from checkpointd._lazy import lazy_exports

if TYPE_CHECKING:
    from checkpointd.events import TriggerEvent
    from checkpointd.triggers.base import AsyncBaseTrigger, AsyncTrigger

__all__ = ["AsyncBaseTrigger", "AsyncTrigger", "TriggerEvent"]

_LAZY: dict[str, str] = {
    "AsyncBaseTrigger": "checkpointd.triggers.base",
    "AsyncTrigger": "checkpointd.triggers.base",
    "TriggerEvent": "checkpointd.events",
}


# Hidden from type checkers, which see the imports above instead: a typo in
# `from checkpointd import Chekpoint` is then a type error, not Any.
if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
