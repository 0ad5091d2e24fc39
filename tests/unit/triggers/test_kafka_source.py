"""A kafka trigger as a daemon TriggerSource: checked when built, attached while it runs."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from checkpointd.config.models import KafkaBatchSource, KafkaTrigger
from checkpointd.errors import ConfigError
from checkpointd.triggers.kafka_dispatch import Route
from checkpointd.triggers.kafka_source import KafkaSource


class RecordingHub:
    """Stands in for KafkaHub: records what attaches and detaches."""

    def __init__(self) -> None:
        self.attached: list[Route] = []
        self.detached: list[Route] = []

    def attach(self, route: Route) -> None:
        self.attached.append(route)

    def detach(self, route: Route) -> None:
        self.detached.append(route)


def trigger(**spec: Any) -> KafkaTrigger:
    return KafkaTrigger.model_validate({"type": "kafka", "topic": "orders", **spec})


def test_a_filter_that_cannot_work_is_a_config_error_naming_the_trigger() -> None:
    with pytest.raises(ConfigError, match=r"checkpoints\.cp\.triggers\[2\].*needs field"):
        KafkaSource("cp", 2, trigger(filter={"equals": "x"}), hub=RecordingHub())  # type: ignore[arg-type]


async def test_running_attaches_a_route_until_cancelled() -> None:
    hub = RecordingHub()
    batch = KafkaBatchSource(type="kafka_batch", max_messages=50, max_wait=timedelta(seconds=2))
    source = KafkaSource("cp", 0, trigger(), hub=hub, batch=batch)  # type: ignore[arg-type]

    async def emit(event: Any) -> bool:
        return True

    task = asyncio.create_task(source.run(emit))
    await asyncio.sleep(0)
    (route,) = hub.attached
    assert source.name == "cp/kafka[0]"
    assert (route.name, route.checkpoint, route.emit) == ("cp/kafka[0]", "cp", emit)
    assert route.selector.matches("orders")
    assert route.buffer is not None
    assert (route.buffer.max_messages, route.buffer.max_wait) == (50, 2.0)
    assert hub.detached == []

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert hub.detached == [route]
