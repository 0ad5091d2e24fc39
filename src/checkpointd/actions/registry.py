"""From an action's config to its channel: one factory per ``type``.

Channel modules are imported on demand, so a daemon without Kafka actions
never imports the Kafka channel. An action whose channel cannot be built
(a module that fails to import, a template that does not compile) becomes a
:class:`BrokenChannel`: its deliveries are still written to the outbox and
end dead with the reason, so nothing vanishes silently.
"""

from __future__ import annotations

import importlib
from typing import Any

from checkpointd.actions.channel import Channel, ChannelContext, Delivery, DeliveryOutcome, Preview
from checkpointd.config.models import ActionConfig
from checkpointd.errors import DeliveryError

__all__ = ["BrokenChannel", "build_channel"]

_MODULES = {
    "webhook": "checkpointd.actions.webhook",
    "slack": "checkpointd.actions.slack",
    "pagerduty": "checkpointd.actions.pagerduty",
    "python": "checkpointd.actions.python",
    "kafka": "checkpointd.actions.kafka",
}


class BrokenChannel:
    """Stands for an action whose channel could not be built; every send fails for good."""

    def __init__(self, name: str, action_type: str, reason: str) -> None:
        self.name = name
        self.action_type = action_type
        self.destination = f"{action_type}:unavailable"
        self.reason = reason

    async def send(self, delivery: Delivery) -> DeliveryOutcome:
        raise DeliveryError(self.reason, retryable=False)

    def preview(self, delivery: Delivery) -> Preview:
        return Preview(self.destination, "none", {}, f"(cannot be sent: {self.reason})")

    async def close(self) -> None:
        return None


def build_channel(action: ActionConfig, context: ChannelContext, name: str) -> Channel:
    """The channel for ``action``; a BrokenChannel (with the reason) when it cannot be built."""
    module_name = _MODULES[action.type]
    try:
        module: Any = importlib.import_module(module_name)
        channel: Channel = module.build_channel(action, context, name)
    except Exception as exc:
        # The message is about code or config, never the URL: the factories
        # do not put secrets into their errors.
        return BrokenChannel(
            name,
            action.type,
            f"{action.type} action {name!r} cannot be set up: {type(exc).__name__}: {exc}",
        )
    return channel
