"""Kafka messages as checkpointd sees them: decoded values, idempotency keys, params (pure).

Every message on a topic a kafka trigger watches must be one JSON object (UTF-8,
at most ``kafka.max_message_bytes``). Anything else is *rejected* with one of
these reasons, counted, optionally sent to the dead-letter topic, and skipped:
its offset still advances, so a bad record never blocks its partition.

==============  ===========================================================
``too_large``   the value is longer than ``max_message_bytes``
``no_value``    the value is null (a tombstone) or empty
``not_json``    the value is not valid JSON text
``not_object``  valid JSON, but not an object (a list, a string, a number)
==============  ===========================================================

Idempotency keys (the journal refuses a key it has seen for a checkpoint):

- one message: ``kafka:{topic}:{partition}:{offset}``
- one batch (``kafka_batch`` data source): ``kafka:{topic}:{partition}:{first}-{last}``,
  the first and last offsets the batch holds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Rejected",
    "batch_key",
    "batch_params",
    "decode_value",
    "key_prefix",
    "last_offset_in_key",
    "message_key",
    "message_params",
]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that cannot be used: ``reason`` is a metric label, ``detail`` is for logs."""

    reason: str
    detail: str


def decode_value(raw: bytes | None, max_bytes: int) -> dict[str, Any] | Rejected:
    """The JSON object a message value holds, or why it cannot be used."""
    if raw is None or not raw:
        return Rejected("no_value", "the message has no value")
    if len(raw) > max_bytes:
        return Rejected(
            "too_large", f"the value is {len(raw)} bytes, over max_message_bytes ({max_bytes})"
        )
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        return Rejected("not_json", f"the value is not JSON: {exc}")
    if not isinstance(value, dict):
        return Rejected("not_object", f"the value is JSON {type(value).__name__}, not an object")
    return value


def key_prefix(topic: str, partition: int) -> str:
    """What every key of one partition starts with."""
    return f"kafka:{topic}:{partition}:"


def message_key(topic: str, partition: int, offset: int) -> str:
    return f"{key_prefix(topic, partition)}{offset}"


def batch_key(topic: str, partition: int, first: int, last: int) -> str:
    return f"{key_prefix(topic, partition)}{first}-{last}"


def last_offset_in_key(key: str, prefix: str) -> int | None:
    """The last offset a message or batch key covers (None for a key not of this partition)."""
    if not key.startswith(prefix):
        return None
    rest = key[len(prefix) :]
    _, _, last = rest.rpartition("-")
    return int(last) if last.isdigit() else None


_METADATA = ("topic", "partition", "offset", "key", "timestamp")


def message_params(
    value: Mapping[str, Any],
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    timestamp_ms: int | None,
) -> dict[str, str]:
    """``{trigger.*}`` values of a message event.

    The message's top-level scalar fields (strings, numbers, booleans) become
    params under their own names, so ``{"path": "..."}`` fills
    ``{trigger.path}``; then ``topic``, ``partition``, ``offset``, ``key`` and
    ``timestamp`` (ms) describe where the message came from, and win over
    fields of the same name.
    """
    params: dict[str, str] = {}
    for name, field in value.items():
        if isinstance(field, bool):
            params[name] = "true" if field else "false"
        elif isinstance(field, str | int | float):
            params[name] = str(field)
    for name in _METADATA:
        params.pop(name, None)
    params.update(topic=topic, partition=str(partition), offset=str(offset))
    if timestamp_ms is not None:
        params["timestamp"] = str(timestamp_ms)
    if key is not None:
        params["key"] = key.decode("utf-8", errors="replace")
    return params


def batch_params(topic: str, partition: int, first: int, last: int, count: int) -> dict[str, str]:
    """``{trigger.*}`` values of a batch event."""
    return {
        "topic": topic,
        "partition": str(partition),
        "first_offset": str(first),
        "last_offset": str(last),
        "count": str(count),
    }
