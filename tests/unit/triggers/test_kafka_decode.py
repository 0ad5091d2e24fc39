"""What a Kafka message becomes: a JSON object or a rejection reason, keys and params."""

from __future__ import annotations

import json

import pytest

from checkpointd.triggers.kafka_decode import (
    Rejected,
    batch_key,
    batch_params,
    decode_value,
    key_prefix,
    last_offset_in_key,
    message_key,
    message_params,
)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "no_value"),  # a tombstone
        (b"", "no_value"),
        (b"{not json", "not_json"),
        (b"\xff\xfe\x00garbage", "not_json"),
        (b"[1, 2]", "not_object"),
        (b'"a string"', "not_object"),
        (b"42", "not_object"),
        (b"null", "not_object"),
        (json.dumps({"pad": "x" * 200}).encode(), "too_large"),
    ],
)
def test_anything_but_one_json_object_within_the_limit_is_rejected(
    raw: bytes | None, reason: str
) -> None:
    decoded = decode_value(raw, max_bytes=100)

    assert isinstance(decoded, Rejected)
    assert decoded.reason == reason
    assert decoded.detail


def test_a_json_object_decodes_to_a_dict() -> None:
    assert decode_value(b'{"a": 1, "b": [true, null]}', max_bytes=100) == {
        "a": 1,
        "b": [True, None],
    }


def test_the_size_limit_is_inclusive() -> None:
    raw = b'{"a": "xxxx"}'
    assert decode_value(raw, max_bytes=len(raw)) == {"a": "xxxx"}
    assert isinstance(decode_value(raw, max_bytes=len(raw) - 1), Rejected)


def test_keys_name_topic_partition_and_offsets() -> None:
    assert message_key("orders", 2, 17) == "kafka:orders:2:17"
    assert batch_key("orders", 2, 17, 40) == "kafka:orders:2:17-40"
    assert key_prefix("orders", 2) == "kafka:orders:2:"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("kafka:orders:2:17", 17),
        ("kafka:orders:2:17-40", 40),
        ("kafka:orders:3:17-40", None),  # another partition
        ("kafka:orders:2:junk", None),
    ],
)
def test_the_last_offset_a_key_covers(key: str, expected: int | None) -> None:
    assert last_offset_in_key(key, key_prefix("orders", 2)) == expected


def test_message_params_hold_scalar_fields_and_where_the_message_came_from() -> None:
    params = message_params(
        {"path": "data/a.parquet", "rows": 3, "ok": True, "nested": {"x": 1}, "offset": "fake"},
        topic="orders",
        partition=1,
        offset=99,
        key=b"k1",
        timestamp_ms=1700000000000,
    )

    assert params == {
        "path": "data/a.parquet",
        "rows": "3",
        "ok": "true",
        "topic": "orders",
        "partition": "1",
        "offset": "99",  # the message's own field does not win over where it came from
        "key": "k1",
        "timestamp": "1700000000000",
    }


def test_a_message_without_key_or_timestamp_has_no_such_params() -> None:
    params = message_params({}, topic="t", partition=0, offset=1, key=None, timestamp_ms=None)
    assert params == {"topic": "t", "partition": "0", "offset": "1"}


def test_batch_params() -> None:
    assert batch_params("t", 0, 5, 9, 4) == {
        "topic": "t",
        "partition": "0",
        "first_offset": "5",
        "last_offset": "9",
        "count": "4",
    }
