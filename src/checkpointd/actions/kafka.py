"""The ``kafka`` channel: publish each result to a topic.

The message value is the result JSON (``CheckpointResult.to_dict()``, the shape
``run-once --output json``, the API and webhooks share), the key is the
checkpoint's name, so one checkpoint's results stay in order on one partition,
and the headers carry the delivery:

==========================  ====================================================
``idempotency-key``         the delivery id, the same on every retry: consumers
                            that must not see a result twice deduplicate on it
``checkpointd-kind``        ``notify``, or ``recovered`` (back to success)
``checkpointd-status``      the run's status
``content-type``            ``application/json``
==========================  ====================================================

The producer is idempotent (``enable_idempotence``, ``acks=all``): broker-side
retries never write a message twice. A retry by the dispatcher after a timeout
may (the first attempt can still land), hence the idempotency key. Which
results are published is the action's ``notify_on`` (the dispatcher decides;
see ``docs/actions.md``). Connection settings (bootstrap servers, SASL, SSL)
come from the top-level ``kafka:`` section; the producer connects on the first
send and is closed with the channel.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError

from checkpointd.actions.channel import ChannelContext, Delivery, DeliveryOutcome, Preview
from checkpointd.config.models import KafkaAction, KafkaConfig
from checkpointd.errors import DeliveryError
from checkpointd.triggers.kafka import client_options

__all__ = ["KafkaChannel", "build_channel", "message_of"]


def message_of(delivery: Delivery) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """The key, value and headers one delivery is published as; pure."""
    result = delivery.result
    value = json.dumps(delivery.result_dict(), separators=(",", ":")).encode()
    headers = [
        ("idempotency-key", delivery.idempotency_key.encode()),
        ("checkpointd-kind", delivery.kind.encode()),
        ("checkpointd-status", result.status.value.encode()),
        ("content-type", b"application/json"),
    ]
    return result.checkpoint.encode(), value, headers


class KafkaChannel:
    """Publishes the results of one ``kafka`` action to its topic."""

    action_type = "kafka"

    def __init__(self, name: str, config: KafkaAction, context: ChannelContext) -> None:
        self.name = name
        self.config = config
        self.destination = f"kafka:{config.topic}"
        self._kafka = context.kafka or KafkaConfig()
        self._producer: Any = None
        self._connecting = asyncio.Lock()

    async def send(self, delivery: Delivery) -> DeliveryOutcome:
        key, value, headers = message_of(delivery)
        producer = await self._connect()
        try:
            metadata = await producer.send_and_wait(
                self.config.topic, value, key=key, headers=headers
            )
        except KafkaError as exc:
            # A timeout (the batch expired, e.g. no broker) may pass; a refusal such as
            # "message too large" or "not authorized" will not.
            retryable = exc.retriable or isinstance(exc, KafkaTimeoutError)
            raise DeliveryError(
                f"kafka topic {self.config.topic!r} refused the result: {type(exc).__name__}"
                f"{': ' + str(exc) if str(exc) else ''}",
                retryable=retryable,
            ) from None
        return DeliveryOutcome(None, f"partition {metadata.partition} offset {metadata.offset}")

    def preview(self, delivery: Delivery) -> Preview:
        key, value, headers = message_of(delivery)
        shown = {"key": key.decode(), **{name: raw.decode() for name, raw in headers}}
        body = json.dumps(json.loads(value), indent=2)
        return Preview(self.destination, "PRODUCE", shown, body)

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def _connect(self) -> Any:
        async with self._connecting:
            if self._producer is not None:
                return self._producer
            timeout_ms = max(1000, int(self.config.timeout.total_seconds() * 1000))
            producer = AIOKafkaProducer(
                **client_options(self._kafka),
                acks="all",
                enable_idempotence=True,
                # A batch that waited this long fails instead of landing after the
                # dispatcher gave up on the attempt and retried it.
                request_timeout_ms=timeout_ms,
            )
            try:
                await producer.start()
            except KafkaError as exc:
                await producer.stop()
                raise DeliveryError(
                    f"cannot connect to Kafka at {self._kafka.bootstrap_servers}: "
                    f"{type(exc).__name__}",
                    retryable=True,
                ) from None
            self._producer = producer
            return producer


def build_channel(action: KafkaAction, context: ChannelContext, name: str) -> KafkaChannel:
    """The channel of one ``kafka`` action named ``name``."""
    return KafkaChannel(name, action, context)
