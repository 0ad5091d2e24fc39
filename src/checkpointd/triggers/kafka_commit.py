"""Committing what is journaled: every ``commit_interval``, and whenever partitions change hands.

The commit position of a partition moves only over the contiguous prefix of
offsets whose events are journaled (or that no checkpoint wanted, or that were
malformed: ``kafka_offsets``), never before. The :class:`Committer` sends it to
the group:

- every ``commit_interval`` while connected (:meth:`Committer.run`);
- before the subscription changes or the consumer disconnects
  (:meth:`Committer.drain`): in-flight emits get ``settle_timeout`` to finish and
  are cancelled after it;
- when the group revokes partitions (:class:`RebalanceListener`): open batches
  of the revoked partitions are dropped, their in-flight emits are given up to
  ``settle_timeout`` to finish, what is journaled is committed, and the
  partitions are forgotten.

A failed commit (``CommitFailedError`` after the group moved on, a broker
outage) is logged and counted; the next owner re-reads from the last commit,
and the journal refuses what this daemon already ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from checkpointd.triggers.kafka_dispatch import Dispatcher
from checkpointd.triggers.kafka_metrics import KafkaMetrics
from checkpointd.triggers.kafka_route import TP, partition_names

__all__ = ["Committer", "RebalanceListener"]

log = structlog.get_logger("checkpointd.trigger.kafka")


class Committer:
    """Commits the journaled prefix of each assigned partition on the live consumer.

    ``live`` returns the hub's consumer while it is connected (None once it lets go):
    commits go to it unless a caller names the consumer it is closing.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        metrics: KafkaMetrics,
        *,
        live: Callable[[], Any],
        request_timeout: float,
        settle_timeout: float,
    ) -> None:
        self._dispatcher = dispatcher
        self._metrics = metrics
        self._live = live
        self._request_timeout = request_timeout
        self._settle_timeout = settle_timeout

    async def commit(self, only: Iterable[TP] | None = None, consumer: Any = None) -> None:
        """Commit what is journaled on ``only`` (default: every assigned partition)."""
        from aiokafka.errors import CommitFailedError, KafkaError
        from aiokafka.structs import TopicPartition

        consumer = consumer if consumer is not None else self._live()
        if consumer is None:
            return
        tracker = self._dispatcher.tracker
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        offsets = {
            tp: position for tp, position in tracker.to_commit(only).items() if tp in assigned
        }
        if not offsets:
            return
        try:
            async with asyncio.timeout(self._request_timeout):
                await consumer.commit({TopicPartition(*tp): pos for tp, pos in offsets.items()})
        except CommitFailedError as exc:
            self._metrics.commit_failed()
            log.warning("kafka commit refused: the group rebalanced", error=str(exc))
        except (KafkaError, TimeoutError) as exc:
            self._metrics.commit_failed()
            log.warning("kafka commit failed; retrying with the next one", error=repr(exc))
        else:
            tracker.committed(offsets)
            self._metrics.committed()

    async def run(self, consumer: Any, *, every: float) -> None:
        """Commit each ``every`` seconds until cancelled (the hub runs it per connection)."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.commit(consumer=consumer)
            except Exception as exc:  # never let commits stop for good
                self._metrics.commit_failed()
                log.error("kafka commit crashed; retrying", error=repr(exc))

    async def drain(self, assignment: Iterable[Any], consumer: Any = None) -> None:
        """Finish what is in flight, commit it: before a resubscribe or a disconnect."""
        dispatcher = self._dispatcher
        tps = [(tp.topic, tp.partition) for tp in assignment]
        for tp in tps:
            dispatcher.hold(tp)
        if not await dispatcher.settle(within=self._settle_timeout):
            log.warning("kafka emits still running after settle_timeout; cancelling them")
            await dispatcher.cancel()
        await self.commit(tps, consumer)
        dispatcher.forget(tps)

    async def revoked(self, tps: list[TP]) -> None:
        """The group takes ``tps`` away: settle their emits, commit, forget them."""
        if not tps:
            return
        dispatcher = self._dispatcher
        for tp in tps:
            dispatcher.hold(tp)  # drops open batches; later fetches are not dispatched
        settled = await dispatcher.settle(tps, within=self._settle_timeout)
        await self.commit(tps)
        dispatcher.forget(tps)
        log.info("kafka partitions revoked", partitions=partition_names(tps), settled=settled)


class RebalanceListener:  # a ConsumerRebalanceListener: the hub registers it as one
    """The group's callbacks: partitions revoked are committed, partitions assigned start fresh."""

    def __init__(self, committer: Committer, dispatcher: Dispatcher, metrics: KafkaMetrics) -> None:
        self._committer = committer
        self._dispatcher = dispatcher
        self._metrics = metrics

    async def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        await self._committer.revoked([(tp.topic, tp.partition) for tp in revoked])

    async def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        tps = [(tp.topic, tp.partition) for tp in assigned]
        self._metrics.rebalanced()
        self._dispatcher.assigned(tps)
        try:
            await self._dispatcher.ensure_marks(tps)
        except Exception as exc:  # the poll loop loads them again before dispatching
            log.warning("could not read batch marks from the journal yet", error=repr(exc))
        log.info("kafka partitions assigned", partitions=partition_names(tps))
