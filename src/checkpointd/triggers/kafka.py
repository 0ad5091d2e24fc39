"""The Kafka trigger: one consumer per daemon, messages in, offsets committed once journaled.

Every ``{type: kafka}`` trigger of every checkpoint is a
:class:`~.kafka_source.KafkaSource` (the daemon's ``TriggerSource``); running,
it attaches a route to the daemon's one :class:`KafkaHub`. The hub owns one
``AIOKafkaConsumer`` in one consumer group (``kafka.group_id``), subscribed to
the union of the routes' topics and patterns, and hands every message to the
:class:`~.kafka_dispatch.Dispatcher`, which routes it through the filters to the
matching checkpoints. The hub is made of parts, each in its own module, and
only they touch aiokafka's consumer: ``kafka_commit`` (commits, rebalances),
``kafka_partitions`` (backpressure pauses, rewinds), ``kafka_health``
(readiness, lag).

Delivery: at-least-once in, and each offset (or batch of offsets) run at most
once to completion per checkpoint, because its journal key
(``kafka:{topic}:{partition}:{offset}``) is refused the second time.

- ``enable_auto_commit`` is always off. The commit position of a partition moves
  only over the contiguous prefix of offsets whose events are journaled (or
  that no checkpoint wanted, or that were malformed), never before. Records polled
  while triggers attach or detach (a reload, shutdown) are put back and read again
  once the loop has caught up: routed to a trigger that just left, they would count
  as wanted by nobody and be committed unseen.
- The poll loop never waits for a run: when runs cannot keep up, partitions are
  paused and the loop keeps polling (``kafka_partitions``).
- On revoke, in-flight emits of the revoked partitions get up to
  ``settle_timeout`` to finish and what is journaled is committed
  (``kafka_commit``); a failed commit is logged and counted, and the journal
  refuses what the next owner re-reads.
- Broker down: the consumer reconnects by itself (and is rebuilt with backoff
  when it cannot start); :attr:`KafkaHub.ready` turns False while the broker
  does not answer, and consumption resumes from the committed offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine, Iterable
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from checkpointd.asyncutils import backoff_delay
from checkpointd.clock import SYSTEM_CLOCK, Clock
from checkpointd.config.models import KafkaConfig
from checkpointd.protocols import KafkaJournal
from checkpointd.triggers.kafka_commit import Committer, RebalanceListener
from checkpointd.triggers.kafka_decode import Rejected
from checkpointd.triggers.kafka_dispatch import Dispatcher
from checkpointd.triggers.kafka_filter import Subscription, subscription
from checkpointd.triggers.kafka_health import BrokerHealth
from checkpointd.triggers.kafka_journal import JournalLookup, StoreJournalLookup
from checkpointd.triggers.kafka_logs import quiet_aiokafka_repeats
from checkpointd.triggers.kafka_metrics import KafkaMetrics
from checkpointd.triggers.kafka_partitions import PartitionControl
from checkpointd.triggers.kafka_route import TP, KafkaMessage, Route

# aiokafka (~3 MiB of RSS) is imported where it is used, all of it once a route is
# attached: a daemon without kafka triggers holds an idle hub and never loads it.

__all__ = ["KafkaHub", "client_options"]

log = structlog.get_logger("checkpointd.trigger.kafka")


def client_options(config: KafkaConfig) -> dict[str, Any]:
    """Connection settings shared by the consumer, the dead-letter producer and the action."""
    options: dict[str, Any] = {
        "bootstrap_servers": config.bootstrap_servers,
        "client_id": config.client_id,
        "security_protocol": config.security_protocol,
    }
    if config.sasl_mechanism is not None:
        options["sasl_mechanism"] = config.sasl_mechanism
    if config.sasl_plain_username is not None:
        options["sasl_plain_username"] = config.sasl_plain_username
    if config.sasl_plain_password is not None:
        options["sasl_plain_password"] = config.sasl_plain_password.get_secret_value()
    if config.security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context(
            cafile=config.ssl_cafile, certfile=config.ssl_certfile, keyfile=config.ssl_keyfile
        )
    return options


class KafkaHub:
    """The daemon's one Kafka consumer; routes attach and detach while it runs.

    Build it with the store's journal lookup, ``await start()`` it before the
    trigger sources start and ``await stop()`` it after they stopped. With no
    route attached it holds no connection.
    """

    def __init__(
        self,
        config: KafkaConfig,
        *,
        journal: JournalLookup,
        metrics: KafkaMetrics,
        clock: Clock = SYSTEM_CLOCK,
        max_in_flight: int = 512,
        poll_records: int = 500,
        commit_interval: float = 0.2,
        probe_interval: float = 2.0,
        settle_timeout: float = 10.0,
        request_timeout: float = 5.0,
        max_backoff: float = 30.0,
    ) -> None:
        self.config = config
        self.metrics = metrics
        quiet_aiokafka_repeats()
        self._poll_records = poll_records
        self._commit_interval = commit_interval
        self._probe_interval = probe_interval
        self._settle_timeout = settle_timeout
        self._request_timeout = request_timeout
        self._max_backoff = max_backoff
        self.dispatcher = Dispatcher(
            journal=journal,
            metrics=metrics,
            max_message_bytes=config.max_message_bytes,
            dead_letter=self._send_dead_letter if config.dead_letter_topic else None,
            on_failure=self._rewind_later,
            clock=clock,
            max_failure_delay=max_backoff,
        )
        self._consumer: Any = None
        self._producer: Any = None
        self._committer = Committer(
            self.dispatcher,
            metrics,
            live=self._live_consumer,
            request_timeout=request_timeout,
            settle_timeout=settle_timeout,
        )
        self._listener = RebalanceListener(self._committer, self.dispatcher, metrics)
        self._partitions = PartitionControl(
            self.dispatcher,
            metrics,
            max_in_flight=max_in_flight,
            live=self._live_consumer,
            spawn=self._helper,
        )
        self._health = BrokerHealth(
            self.dispatcher.tracker, metrics, request_timeout=request_timeout
        )
        self._subscribed = Subscription()
        self._routes_changed = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._poll: asyncio.Future[Any] | None = None
        self._helpers: set[asyncio.Task[None]] = set()

    @classmethod
    def for_daemon(
        cls,
        config: KafkaConfig | None,
        *,
        store: KafkaJournal,
        registry: CollectorRegistry,
        clock: Clock = SYSTEM_CLOCK,
    ) -> KafkaHub:
        """The daemon's hub: ``kafka:`` settings (defaults when absent), journal, metrics.

        ``store`` is the daemon's ``Store`` (it answers the journal questions); the
        Kafka metrics go on ``registry``.
        """
        return cls(
            config or KafkaConfig(),
            journal=StoreJournalLookup(store),
            metrics=KafkaMetrics(registry),
            clock=clock,
        )

    # ------------------------------------------------------------ public

    @property
    def ready(self) -> bool:
        """False while Kafka triggers exist but the broker does not answer."""
        return self._health.connected or not self.dispatcher.routes

    @property
    def connected(self) -> bool:
        return self._health.connected

    @property
    def paused(self) -> bool:
        """Whether backpressure has paused consumption right now."""
        return self._partitions.overloaded

    def attach(self, route: Route) -> None:
        self.dispatcher.attach(route)
        self._routes_changed.set()
        log.info("kafka trigger attached", trigger=route.name, topics=route.selector.describe())

    def detach(self, route: Route) -> None:
        for tp in self.dispatcher.detach(route):
            self._partitions.rewind_later(tp, 0.0)
        self._routes_changed.set()

    async def start(self) -> None:
        """Start the consume loop (it connects once a route is attached)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="kafka-consumer")

    async def stop(self) -> None:
        """Finish in-flight emits (up to ``settle_timeout``), commit, disconnect."""
        self._stopping = True
        self._routes_changed.set()
        if self._poll is not None and not self._poll.done():
            self._poll.cancel()
        if self._task is not None:
            await self._task
            self._task = None

    # ------------------------------------------------------------ the loop

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            if not self.dispatcher.routes:
                self._routes_changed.clear()
                await self._routes_changed.wait()
                continue
            try:
                await self._connect()
                failures = 0
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.error("kafka consumer failed; reconnecting", error=repr(exc), attempt=failures)
            finally:
                await self._disconnect()
            if failures and not self._stopping:
                delay = backoff_delay(
                    failures, delay=0.5, backoff=2.0, max_delay=self._max_backoff, jitter=True
                )
                self._routes_changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        while not self._stopping:
                            await self._routes_changed.wait()
                            self._routes_changed.clear()

    async def _connect(self) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener

        ConsumerRebalanceListener.register(RebalanceListener)
        options = client_options(self.config)
        consumer_options = {
            **options,
            "group_id": self.config.group_id,
            # A new group must not skip what was produced before it first joined.
            "auto_offset_reset": "earliest",
            # Revocation waits for in-flight emits; give members time to rejoin.
            "rebalance_timeout_ms": 60_000,
            "max_poll_records": self._poll_records,
            **self.config.options,
            "enable_auto_commit": False,
        }
        consumer = AIOKafkaConsumer(**consumer_options)
        self._consumer = consumer
        await consumer.start()
        if self.config.dead_letter_topic:
            producer = AIOKafkaProducer(**options, acks="all", enable_idempotence=True)
            self._producer = producer
            await producer.start()
        self._health.set_connected(True)
        self._subscribed = Subscription()
        self._routes_changed.set()
        self._helper(self._committer.run(consumer, every=self._commit_interval), "kafka-commit")
        self._helper(self._health.run(consumer, every=self._probe_interval), "kafka-probe")
        log.info("kafka consumer connected", bootstrap=self.config.bootstrap_servers)

    async def _consume(self) -> None:
        consumer = self._consumer
        dispatcher = self.dispatcher
        while not self._stopping:
            if self._routes_changed.is_set():
                self._routes_changed.clear()
                wanted = subscription(r.selector for r in dispatcher.routes)
                if wanted.empty:
                    return
                if wanted != self._subscribed:
                    await self._resubscribe(wanted)
            self._partitions.apply(consumer)
            # Never take more than there is room for: what is not taken stays prefetched.
            room = self._partitions.room(self._poll_records)
            poll = asyncio.ensure_future(
                consumer.getmany(timeout_ms=self._partitions.poll_timeout(), max_records=room)
            )
            self._poll = poll
            try:
                await asyncio.wait({poll})
            except asyncio.CancelledError:
                poll.cancel()
                raise
            finally:
                self._poll = None
            if poll.cancelled():
                return  # stop() interrupted the wait
            polled = poll.result()
            now = time.monotonic()
            if polled:
                if not self._health.connected:  # records arrived: the broker is back
                    log.info("kafka broker answering again")
                    self._health.set_connected(True)
                await dispatcher.ensure_marks((tp.topic, tp.partition) for tp in polled)
                # A rebalance may have taken partitions away while the marks were read.
                ours = consumer.assignment()
                if self._stopping or self._routes_changed.is_set():
                    # Triggers attached or detached while this poll was out: its records
                    # may be meant for a trigger that is gone (routed to nobody, they would
                    # count as done and be committed unseen) or one not attached yet. They
                    # are read again once the loop has caught up with the change.
                    _put_back(consumer, polled, ours)
                    continue
                dispatcher.dispatch(
                    (_message(r) for tp, records in polled.items() if tp in ours for r in records),
                    now,
                )
            dispatcher.flush_due(now)

    async def _resubscribe(self, wanted: Subscription) -> None:
        consumer = self._consumer
        if not self._subscribed.empty:
            # Commit while the old assignment is still ours: once the subscription
            # changes, aiokafka no longer accepts commits for it.
            await self._committer.drain(consumer.assignment())
        if not self._subscribed.empty and (wanted.pattern is None) != (
            self._subscribed.pattern is None
        ):
            consumer.unsubscribe()  # aiokafka cannot switch between a list and a pattern
        if wanted.pattern is not None:
            consumer.subscribe(pattern=wanted.pattern, listener=self._listener)
        else:
            consumer.subscribe(topics=sorted(wanted.topics), listener=self._listener)
        self._subscribed = wanted
        log.info("kafka subscription", topics=sorted(wanted.topics), pattern=wanted.pattern)

    async def _disconnect(self) -> None:
        from aiokafka.errors import KafkaError

        for task in list(self._helpers):
            task.cancel()
        if self._helpers:
            await asyncio.wait(list(self._helpers))
        consumer, producer = self._consumer, self._producer
        self._consumer = self._producer = None
        try:
            if consumer is not None and not self._subscribed.empty:
                await self._committer.drain(consumer.assignment(), consumer)
            elif not await self.dispatcher.settle(within=self._settle_timeout):
                await self.dispatcher.cancel()
        finally:
            self.dispatcher.forget(self.dispatcher.tracker.partitions())
            self._subscribed = Subscription()
            self._partitions.reset()
            self.metrics.set_lag({})
            for client in (consumer, producer):
                if client is not None:
                    try:
                        async with asyncio.timeout(self._settle_timeout):
                            await client.stop()
                    except (KafkaError, TimeoutError, OSError) as exc:
                        log.warning("kafka client did not stop cleanly", error=repr(exc))
            self._health.set_connected(False)

    async def _send_dead_letter(self, message: KafkaMessage, rejected: Rejected) -> None:
        producer = self._producer
        topic = self.config.dead_letter_topic
        if producer is None or topic is None:
            raise RuntimeError("no dead-letter producer is connected")
        headers = [(name, value or b"") for name, value in message.headers] + [
            ("checkpointd-reason", rejected.reason.encode()),
            ("checkpointd-detail", rejected.detail[:500].encode()),
            (
                "checkpointd-source",
                f"{message.topic}:{message.partition}:{message.offset}".encode(),
            ),
        ]
        async with asyncio.timeout(self._request_timeout * 2):
            await producer.send_and_wait(
                topic, value=message.value, key=message.key, headers=headers
            )

    # ------------------------------------------------------------ helpers

    def _helper(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._helpers.add(task)
        task.add_done_callback(self._helper_done)

    def _helper_done(self, task: asyncio.Task[None]) -> None:
        self._helpers.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "kafka helper task failed", task=task.get_name(), error=repr(task.exception())
            )

    def _live_consumer(self) -> Any:
        return self._consumer

    def _rewind_later(self, tp: TP, delay: float) -> None:
        self._partitions.rewind_later(tp, delay)


def _message(record: Any) -> KafkaMessage:
    return KafkaMessage(
        record.topic,
        record.partition,
        record.offset,
        record.key,
        record.value,
        tuple(record.headers) if record.headers else (),
        record.timestamp,
    )


def _put_back(consumer: Any, polled: dict[Any, list[Any]], ours: Iterable[Any]) -> None:
    """Seek each partition of ``polled`` back to its first record: the next poll reads them."""
    for tp, records in polled.items():
        if records and tp in ours:
            consumer.seek(tp, records[0].offset)
