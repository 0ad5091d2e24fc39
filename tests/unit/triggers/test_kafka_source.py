"""A kafka trigger as a daemon TriggerSource: checked when built, attached while it runs."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from checkpointd.config.loader import parse_config
from checkpointd.config.models import KafkaBatchSource, KafkaTrigger
from checkpointd.errors import ConfigError
from checkpointd.triggers.kafka_route import Route
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


KAFKA_CONFIG = """
kafka: {{bootstrap_servers: "127.0.0.1:9092", group_id: g}}
checkpoints:
  - name: cp
    data_source: {{type: inline, rows: [{{id: 1}}]}}
    validators: [{{type: not_null, columns: [id]}}]
    triggers:
      - {{type: manual}}
      - {trigger}
"""


@pytest.mark.parametrize(
    ("trigger_yaml", "message"),
    [
        ('{type: kafka, topic: t, filter: {equals: "x"}}', "needs field"),
        ("{type: kafka, topic: t, filter: {field: a, equals: 1, in: [1]}}", "not both"),
        ('{type: kafka, topic: t, filter: {header_equals: "x"}}', "needs header"),
        ("{type: kafka, topic: t, filter: {field: a..b}}", "invalid field path"),
        ('{type: kafka, pattern: "orders[."}', "invalid topic pattern"),
    ],
)
def test_a_kafka_trigger_that_cannot_work_is_a_config_error_naming_it(
    trigger_yaml: str, message: str
) -> None:
    # `checkpointd check` says so, not only a starting daemon.
    with pytest.raises(ConfigError, match=message) as info:
        parse_config(KAFKA_CONFIG.format(trigger=trigger_yaml), source="c.yaml")
    assert "checkpoints[0].triggers[1]" in str(info.value)


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
