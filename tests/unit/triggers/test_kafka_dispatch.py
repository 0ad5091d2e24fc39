"""Routing consumed messages to checkpoints, and when their offsets become committable.

The dispatcher is exercised with an in-memory emit and journal: the real consumer
and daemon around it are covered by tests/integration/test_kafka_trigger.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from checkpointd.config.models import KafkaFilter
from checkpointd.events import TriggerEvent
from checkpointd.triggers.kafka_decode import Rejected
from checkpointd.triggers.kafka_dispatch import Dispatcher
from checkpointd.triggers.kafka_filter import MessageFilter, TopicSelector
from checkpointd.triggers.kafka_metrics import KafkaMetrics
from checkpointd.triggers.kafka_route import KafkaMessage, Route

TOPIC = "orders"
TP = (TOPIC, 0)


class Journal:
    """An in-memory journal: keys per checkpoint, refusing duplicates like the real one."""

    def __init__(self) -> None:
        self.keys: set[tuple[str, str]] = set()
        self.events: list[TriggerEvent] = []

    async def accept(self, event: TriggerEvent) -> bool:
        assert event.checkpoint is not None
        pair = (event.key, event.checkpoint)
        if pair in self.keys:
            return False
        self.keys.add(pair)
        self.events.append(event)
        return True

    async def journaled(self, key: str, checkpoint: str) -> bool:
        return (key, checkpoint) in self.keys

    async def last_batch_offset(self, checkpoint: str, topic: str, partition: int) -> int | None:
        prefix = f"kafka:{topic}:{partition}:"
        lasts = [
            int(key[len(prefix) :].rpartition("-")[2])
            for key, cp in self.keys
            if cp == checkpoint and key.startswith(prefix)
        ]
        return max(lasts) if lasts else None


class Harness:
    def __init__(self, *, dead_letter: bool = False) -> None:
        self.journal = Journal()
        self.registry = CollectorRegistry()
        self.metrics = KafkaMetrics(self.registry)
        self.failures: list[tuple[tuple[str, int], float]] = []
        self.dead: list[tuple[int, str]] = []
        self.now = 0.0
        self.dispatcher = Dispatcher(
            journal=self.journal,
            metrics=self.metrics,
            max_message_bytes=1000,
            dead_letter=self._dead_letter if dead_letter else None,
            on_failure=lambda tp, delay: self.failures.append((tp, delay)),
        )

    async def _dead_letter(self, message: KafkaMessage, rejected: Rejected) -> None:
        self.dead.append((message.offset, rejected.reason))

    def route(
        self,
        checkpoint: str,
        *,
        emit: Any = None,
        batch: tuple[int, float] | None = None,
        **spec: Any,
    ) -> Route:
        route = Route(
            name=f"{checkpoint}/kafka[0]",
            checkpoint=checkpoint,
            selector=TopicSelector(topic=TOPIC),
            message_filter=MessageFilter(KafkaFilter.model_validate(spec) if spec else None),
            emit=emit or self.journal.accept,
            batch=batch,
        )
        self.dispatcher.attach(route)
        return route

    async def feed(self, values: Iterable[Any], start: int = 0, partition: int = 0) -> None:
        messages = [
            KafkaMessage(
                TOPIC,
                partition,
                start + i,
                None,
                v if isinstance(v, bytes) or v is None else json.dumps(v).encode(),
                timestamp_ms=1_700_000_000_000,
            )
            for i, v in enumerate(values)
        ]
        self.dispatcher.dispatch(messages, self.now)
        await self.dispatcher.settle()

    def position(self, tp: tuple[str, int] = TP) -> int | None:
        state = self.dispatcher.tracker.get(tp)
        return None if state is None else state.position

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


async def test_each_message_becomes_one_keyed_event_per_matching_checkpoint() -> None:
    h = Harness()
    h.route("all")
    h.route("orders_only", field="dataset", equals="orders")

    await h.feed([{"dataset": "orders", "path": "a"}, {"dataset": "refunds"}])

    by_checkpoint = sorted((e.checkpoint, e.key) for e in h.journal.events)
    assert by_checkpoint == [
        ("all", "kafka:orders:0:0"),
        ("all", "kafka:orders:0:1"),
        ("orders_only", "kafka:orders:0:0"),
    ]
    first = next(e for e in h.journal.events if e.checkpoint == "orders_only")
    assert first.type == "kafka"
    assert first.params["path"] == "a"
    assert first.fired_at.timestamp() == 1_700_000_000  # the message's own timestamp
    assert h.position() == 2
    assert h.sample("checkpointd_kafka_messages_total", topic=TOPIC) == 2


async def test_a_message_no_checkpoint_wants_still_advances_the_partition() -> None:
    h = Harness()
    h.route("orders_only", field="dataset", equals="orders")

    await h.feed([{"dataset": "refunds"}] * 3)

    assert h.journal.events == []
    assert h.position() == 3


async def test_the_offset_waits_until_every_matching_checkpoint_journaled_it() -> None:
    h = Harness()
    gate = asyncio.Event()

    async def slow(event: TriggerEvent) -> bool:
        await gate.wait()
        return await h.journal.accept(event)

    h.route("fast")
    h.route("slow", emit=slow)
    h.dispatcher.dispatch([KafkaMessage(TOPIC, 0, 0, None, b"{}")], 0.0)
    await asyncio.sleep(0.01)  # the fast checkpoint's emit has returned by now

    assert h.dispatcher.in_flight == 1
    assert h.position() is None  # nothing committable while "slow" has not journaled

    gate.set()
    await h.dispatcher.settle()
    assert h.position() == 1
    assert h.dispatcher.in_flight == 0


async def test_a_duplicate_the_journal_holds_is_committed_past() -> None:
    h = Harness()
    h.route("cp")
    await h.feed([{}, {}])

    h.dispatcher.rewound(TP, None)  # read the same offsets again, as after a crash
    await h.feed([{}, {}])

    assert len(h.journal.events) == 2
    assert h.position() == 2
    assert h.failures == []


async def test_a_refusal_the_journal_does_not_back_is_never_committed_past() -> None:
    h = Harness()

    async def draining(event: TriggerEvent) -> bool:
        return False  # what a stopping daemon answers

    h.route("cp", emit=draining)
    await h.feed([{}, {}])

    assert h.position() is None
    assert [tp for tp, _ in h.failures] == [TP]
    assert TP in h.dispatcher.held


async def test_an_emit_that_raises_holds_the_partition_and_asks_for_a_rewind() -> None:
    h = Harness()
    calls = 0

    async def flaky(event: TriggerEvent) -> bool:
        nonlocal calls
        calls += 1
        if event.key.endswith(":1"):
            raise OSError("disk full")
        return await h.journal.accept(event)

    h.route("cp", emit=flaky)
    await h.feed([{}, {}, {}])

    assert h.position() == 1  # offset 0 journaled; 1 failed; 2 cannot be committed past 1
    assert h.failures
    assert h.failures[0][0] == TP
    assert h.failures[0][1] > 0  # with a backoff

    await h.feed([{}], start=3)  # held: not dispatched until the rewind
    assert calls == 3

    h.dispatcher.rewound(TP, h.position())
    assert TP not in h.dispatcher.held


async def test_malformed_messages_are_counted_and_skipped() -> None:
    h = Harness()
    h.route("cp")

    await h.feed([{"ok": 1}, b"not json", b"[1]", None, {"pad": "x" * 2000}, {"ok": 2}])

    assert [e.key for e in h.journal.events] == ["kafka:orders:0:0", "kafka:orders:0:5"]
    assert h.position() == 6  # a bad record never blocks the partition
    for reason in ("not_json", "not_object", "no_value", "too_large"):
        assert h.sample("checkpointd_kafka_messages_rejected_total", reason=reason) == 1


async def test_malformed_messages_go_to_the_dead_letter_topic_before_their_offset_commits() -> None:
    h = Harness(dead_letter=True)
    h.route("cp")

    await h.feed([b"oops", {"ok": 1}])

    assert h.dead == [(0, "not_json")]
    assert h.position() == 2
    assert h.sample("checkpointd_kafka_dead_letters_total", outcome="sent") == 1


async def test_a_failed_dead_letter_send_still_advances_the_offset() -> None:
    h = Harness(dead_letter=True)

    async def broken(message: KafkaMessage, rejected: Rejected) -> None:
        raise TimeoutError("broker away")

    h.dispatcher._dead_letter = broken
    h.route("cp")
    await h.feed([b"oops"])

    assert h.position() == 1
    assert h.sample("checkpointd_kafka_dead_letters_total", outcome="failed") == 1


async def test_a_batch_route_emits_full_batches_with_their_records() -> None:
    h = Harness()
    h.route("batched", batch=(3, 60.0))
    await h.dispatcher.ensure_marks([TP])

    await h.feed([{"i": i} for i in range(7)])

    keys = [e.key for e in h.journal.events]
    assert keys == ["kafka:orders:0:0-2", "kafka:orders:0:3-5"]
    assert h.journal.events[0].records == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert h.journal.events[0].params["count"] == "3"
    assert h.position() == 6  # offset 6 waits in the open batch

    h.now = 60.0
    h.dispatcher.flush_due(h.now)
    await h.dispatcher.settle()
    assert [e.key for e in h.journal.events][-1] == "kafka:orders:0:6-6"
    assert h.position() == 7


async def test_a_batch_route_skips_what_a_batch_of_its_checkpoint_already_covered() -> None:
    h = Harness()
    h.journal.keys.add(("kafka:orders:0:0-4", "batched"))  # journaled before a crash
    h.route("batched", batch=(3, 60.0))
    await h.dispatcher.ensure_marks([TP])

    await h.feed([{"i": i} for i in range(8)])  # replayed from offset 0, cut differently

    assert [e.key for e in h.journal.events] == ["kafka:orders:0:5-7"]
    assert h.position() == 8


async def test_detaching_a_batch_route_returns_the_partitions_to_rewind() -> None:
    h = Harness()
    route = h.route("batched", batch=(10, 60.0))
    await h.dispatcher.ensure_marks([TP])
    await h.feed([{}, {}])

    assert h.dispatcher.detach(route) == [TP]
    assert h.position() is None  # the dropped batch's offsets are still held


async def test_revoked_partitions_are_forgotten_and_late_emits_change_nothing() -> None:
    h = Harness()
    gate = asyncio.Event()

    async def slow(event: TriggerEvent) -> bool:
        await gate.wait()
        return await h.journal.accept(event)

    h.route("cp", emit=slow)
    h.dispatcher.dispatch([KafkaMessage(TOPIC, 0, 0, None, b"{}")], 0.0)
    assert not await h.dispatcher.settle(within=0.01)

    h.dispatcher.forget([TP])
    gate.set()
    assert await h.dispatcher.settle(within=1.0)
    assert h.dispatcher.tracker.get(TP) is None


async def test_cancel_stops_emits_without_releasing_their_offsets() -> None:
    h = Harness()

    async def stuck(event: TriggerEvent) -> bool:
        await asyncio.Event().wait()
        return True

    h.route("cp", emit=stuck)
    h.dispatcher.dispatch([KafkaMessage(TOPIC, 0, 0, None, b"{}")], 0.0)
    await asyncio.sleep(0)

    await h.dispatcher.cancel()

    assert h.dispatcher.in_flight == 0
    assert h.position() is None


def test_two_routes_with_one_name_cannot_attach() -> None:
    h = Harness()
    h.route("cp")
    with pytest.raises(ValueError, match="already attached"):
        h.route("cp")


async def test_routes_attached_or_detached_between_polls_see_exactly_the_later_messages() -> None:
    h = Harness()
    first = h.route("first")
    await h.feed([{}])
    second = Route(
        name="second/kafka[0]",
        checkpoint="second",
        selector=TopicSelector(pattern="ord.*"),
        message_filter=MessageFilter(None),
        emit=h.journal.accept,
    )
    h.dispatcher.attach(second)
    await h.feed([{}], start=1)
    h.dispatcher.detach(first)
    await h.feed([{}], start=2)

    assert sorted((e.checkpoint, e.key) for e in h.journal.events) == [
        ("first", "kafka:orders:0:0"),
        ("first", "kafka:orders:0:1"),
        ("second", "kafka:orders:0:1"),
        ("second", "kafka:orders:0:2"),
    ]


async def test_each_topic_is_routed_to_its_own_checkpoints_and_counted_on_its_own() -> None:
    h = Harness()
    h.route("orders_cp")
    refunds = Route(
        name="refunds_cp/kafka[0]",
        checkpoint="refunds_cp",
        selector=TopicSelector(topic="refunds"),
        message_filter=MessageFilter(None),
        emit=h.journal.accept,
    )
    h.dispatcher.attach(refunds)

    h.dispatcher.dispatch(
        [
            KafkaMessage(TOPIC, 0, 0, None, b"{}"),
            KafkaMessage("refunds", 0, 0, None, b"{}"),
            KafkaMessage("refunds", 0, 1, None, b"oops"),
            KafkaMessage(TOPIC, 0, 1, None, b"{}"),
            KafkaMessage("other", 0, 0, None, b"{}"),
        ],
        0.0,
    )
    await h.dispatcher.settle()

    assert sorted((e.checkpoint, e.key) for e in h.journal.events) == [
        ("orders_cp", "kafka:orders:0:0"),
        ("orders_cp", "kafka:orders:0:1"),
        ("refunds_cp", "kafka:refunds:0:0"),
    ]
    assert h.sample("checkpointd_kafka_messages_total", topic=TOPIC) == 2
    assert h.sample("checkpointd_kafka_messages_total", topic="refunds") == 2  # good or bad
    assert h.sample("checkpointd_kafka_messages_total", topic="other") == 1
    assert h.position(("refunds", 0)) == 2
    assert h.position(("other", 0)) == 1  # wanted by nobody, done at once


async def test_checkpoints_fired_by_one_message_get_the_same_params() -> None:
    h = Harness()
    h.route("a")
    h.route("b")

    await h.feed([{"path": "x.csv", "size": 3, "ok": True, "ratio": 0.5, "nested": {"n": 1}}])

    params = [dict(e.params) for e in h.journal.events]
    assert len(params) == 2
    assert params[0] == params[1]
    assert params[0] == {
        "path": "x.csv",
        "size": "3",
        "ok": "true",
        "ratio": "0.5",
        "topic": TOPIC,
        "partition": "0",
        "offset": "0",
        "timestamp": "1700000000000",
    }


async def test_settling_one_partition_does_not_wait_for_another() -> None:
    h = Harness()
    gate = asyncio.Event()

    async def slow_on_partition_1(event: TriggerEvent) -> bool:
        if event.params["partition"] == "1":
            await gate.wait()
        return await h.journal.accept(event)

    h.route("cp", emit=slow_on_partition_1)
    h.dispatcher.dispatch(
        [KafkaMessage(TOPIC, p, o, None, b"{}") for o in range(3) for p in (0, 1)], 0.0
    )

    assert h.dispatcher.in_flight == 6
    assert await h.dispatcher.settle([(TOPIC, 0)], within=1.0)
    assert not await h.dispatcher.settle([(TOPIC, 1)], within=0.01)
    assert h.dispatcher.in_flight == 3

    gate.set()
    assert await h.dispatcher.settle(within=1.0)
    assert h.dispatcher.in_flight == 0
    assert (h.position((TOPIC, 0)), h.position((TOPIC, 1))) == (3, 3)
