"""What a Kafka message becomes: a JSON object or a rejection reason, keys and params."""

from __future__ import annotations

import codecs
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


_ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-be"]
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
_ENCODED = st.builds(
    lambda value, encoding: json.dumps(value, ensure_ascii=False).encode(encoding),
    _JSON,
    st.sampled_from(_ENCODINGS),
)


@given(st.binary(max_size=40) | _ENCODED)
def test_values_decode_exactly_as_json_loads_decodes_them(raw: bytes) -> None:
    # Plain UTF-8 skips json's encoding detection; every other input must fare the same.
    try:
        loaded = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        expected: tuple[str, Any] = ("not_json", f"the value is not JSON: {exc}")
    else:
        # Compared as text: a NaN in a random value is not equal to itself.
        expected = ("value", repr(loaded)) if isinstance(loaded, dict) else ("not_object", None)

    result = decode_value(raw, max_bytes=1 << 20)
    if not raw:
        assert result == Rejected("no_value", "the message has no value")
    elif isinstance(result, Rejected):
        detail = result.detail if result.reason == "not_json" else None
        assert (result.reason, detail) == expected
    else:
        assert ("value", repr(result)) == expected


def test_a_byte_order_mark_or_another_json_encoding_is_still_accepted() -> None:
    value = {"a": "é", "n": 1}
    for encoding in _ENCODINGS:
        raw = json.dumps(value, ensure_ascii=False).encode(encoding)
        assert decode_value(raw, max_bytes=1000) == value, encoding
    assert decode_value(codecs.BOM_UTF8 + b'{"a": 1}', max_bytes=100) == {"a": 1}


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
