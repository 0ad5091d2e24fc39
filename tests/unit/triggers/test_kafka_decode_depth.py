"""Deeply nested Kafka values are rejected as ``not_json``, never raised (the reliability
suite's bad-values test found both defects this guards against).

``json.loads`` raises ``RecursionError``, not ``ValueError``, for a few kilobytes of
``[[[[...``: it escaped ``decode_value``, the consume loop, and the consumer reconnected and
re-read the same record forever. Values a few hundred levels deep that do parse took polars
minutes of CPU to turn into a ``kafka_batch`` DataFrame. Both are now rejected up front.
"""

from __future__ import annotations

import json

import pytest

from checkpointd.triggers.kafka_decode import MAX_DEPTH, Rejected, decode_value

LIMIT = 1 << 20


def nested(depth: int, opener: str = "[", closer: str = "]") -> bytes:
    """A value whose top-level object holds ``depth - 1`` more levels (``depth`` in all)."""
    inner = opener * (depth - 1) + "1" + closer * (depth - 1)
    return ('{"id": 1, "deep": ' + inner + "}").encode()


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b'{"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    ],
    ids=["unclosed-lists", "lists", "objects", "lists-in-an-object"],
)
def test_values_nested_past_the_recursion_limit_are_rejected_not_raised(raw: bytes) -> None:
    decoded = decode_value(raw, LIMIT)

    assert isinstance(decoded, Rejected)
    assert decoded.reason == "not_json"
    assert str(MAX_DEPTH) in decoded.detail


@pytest.mark.parametrize(("opener", "closer"), [("[", "]"), ('{"a": ', "}")])
def test_the_depth_limit_counts_the_top_level_object_as_level_one(opener: str, closer: str) -> None:
    at_limit = nested(MAX_DEPTH, opener, closer)
    past_limit = nested(MAX_DEPTH + 1, opener, closer)

    assert decode_value(at_limit, LIMIT) == json.loads(at_limit)
    rejected = decode_value(past_limit, LIMIT)
    assert isinstance(rejected, Rejected)
    assert rejected.reason == "not_json"


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    raw = json.dumps({"text": "[" * 1000 + "{" * 1000, "list": [[1], [2], {"a": [3]}]}).encode()

    assert decode_value(raw, LIMIT) == json.loads(raw)


def test_many_shallow_containers_are_not_deep() -> None:
    raw = json.dumps({"rows": [{"id": i, "tags": [i]} for i in range(500)]}).encode()

    assert decode_value(raw, LIMIT) == json.loads(raw)


def test_a_key_counts_toward_max_message_bytes() -> None:
    from checkpointd.triggers.kafka_decode import oversized

    rejected = oversized(b"k" * 900, b'{"id": 1}' + b" " * 200, 1000)
    assert rejected is not None
    assert rejected.reason == "too_large"
    assert "key 900" in rejected.detail


def test_a_message_within_the_limit_or_without_a_key_is_not_oversized() -> None:
    from checkpointd.triggers.kafka_decode import oversized

    assert oversized(b"k" * 10, b'{"id": 1}', 1000) is None
    assert oversized(None, b"x" * 5000, 1000) is None  # decode_value reports a long value
    assert oversized(b"", b"x" * 5000, 1000) is None
