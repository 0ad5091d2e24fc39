"""Which messages fire which checkpoint: topic selectors, the subscription union, filters."""

from __future__ import annotations

import re
from typing import Any

import pytest

from checkpointd.config.models import KafkaFilter
from checkpointd.triggers.kafka_filter import (
    MessageFilter,
    Subscription,
    TopicSelector,
    json_equal,
    subscription,
)


def compiled(**spec: Any) -> MessageFilter:
    return MessageFilter(KafkaFilter.model_validate(spec))


# ---------------------------------------------------------------- topics


@pytest.mark.parametrize(
    ("selector", "topic", "expected"),
    [
        (TopicSelector(topic="orders"), "orders", True),
        (TopicSelector(topic="orders"), "orders.v2", False),
        (TopicSelector(pattern=r"orders\..*"), "orders.landed", True),
        (TopicSelector(pattern=r"orders\..*"), "x.orders.landed", False),  # whole name
        (TopicSelector(pattern="orders"), "orders-archive", False),  # no prefix match
    ],
)
def test_a_selector_matches_whole_topic_names(
    selector: TopicSelector, topic: str, expected: bool
) -> None:
    assert selector.matches(topic) is expected


def test_a_selector_needs_exactly_one_of_topic_and_pattern() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        TopicSelector()
    with pytest.raises(ValueError, match="exactly one"):
        TopicSelector(topic="a", pattern="b")
    with pytest.raises(ValueError, match="invalid topic pattern"):
        TopicSelector(pattern="(")


def test_exact_topics_subscribe_as_a_list_without_duplicates() -> None:
    sub = subscription(
        [TopicSelector(topic="b"), TopicSelector(topic="a"), TopicSelector(topic="b")]
    )
    assert sub == Subscription(topics=frozenset({"a", "b"}))


def test_any_pattern_turns_the_union_into_one_anchored_pattern() -> None:
    sub = subscription([TopicSelector(topic="orders.v1"), TopicSelector(pattern=r"pay\..*")])

    assert sub.topics == frozenset()
    assert sub.pattern is not None
    union = re.compile(sub.pattern)
    # aiokafka applies re.match: the anchors make it a whole-name match.
    assert union.match("orders.v1")
    assert not union.match("ordersXv1")  # the '.' of an exact name is escaped
    assert union.match("pay.eu")
    assert union.match("pay.eu.archive")
    assert not union.match("old.pay.eu")


def test_no_selectors_is_an_empty_subscription() -> None:
    assert subscription([]).empty


# ---------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ({"field": "dataset", "equals": "orders"}, {"dataset": "orders"}, True),
        ({"field": "dataset", "equals": "orders"}, {"dataset": "refunds"}, False),
        ({"field": "dataset", "equals": "orders"}, {"other": "orders"}, False),
        ({"field": "meta.source", "equals": "eu"}, {"meta": {"source": "eu"}}, True),
        ({"field": "meta.source", "equals": "eu"}, {"meta": "eu"}, False),
        ({"field": "n", "equals": 1}, {"n": 1.0}, True),  # JSON numbers compare by value
        ({"field": "n", "equals": 1}, {"n": True}, False),  # ...but true is not 1
        ({"field": "n", "equals": None}, {"n": None}, True),  # equals: null is a real test
        ({"field": "n", "equals": None}, {}, False),
        ({"field": "kind", "in": ["a", "b"]}, {"kind": "b"}, True),
        ({"field": "kind", "in": ["a", "b"]}, {"kind": "c"}, False),
        ({"field": "kind", "in": [1, 2]}, {"kind": 2.0}, True),
        ({"field": "kind"}, {"kind": "anything"}, True),  # present and not null
        ({"field": "kind"}, {"kind": None}, False),
        ({"field": "kind"}, {}, False),
        ({}, {"whatever": 1}, True),
    ],
)
def test_field_conditions(spec: dict[str, Any], value: dict[str, Any], expected: bool) -> None:
    assert compiled(**spec).matches(value, key=None) is expected


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("orders-*", b"orders-17", True),
        ("orders-*", b"refunds-17", False),
        ("orders-17", b"orders-17", True),
        ("orders-17", b"orders-170", False),  # a plain string matches only itself
        ("orders-*", None, False),  # no key never matches
        ("orders-*", b"\xff\xfe", False),  # not UTF-8
    ],
)
def test_key_globs(pattern: str, key: bytes | None, expected: bool) -> None:
    assert compiled(key=pattern).matches({}, key=key) is expected


@pytest.mark.parametrize(
    ("spec", "headers", "expected"),
    [
        ({"header": "source"}, [("source", b"eu")], True),
        ({"header": "source"}, [("other", b"eu")], False),
        ({"header": "source", "header_equals": "eu"}, [("source", b"us"), ("source", b"eu")], True),
        ({"header": "source", "header_equals": "eu"}, [("source", b"us")], False),
        ({"header": "source", "header_equals": "eu"}, [("source", None)], False),
    ],
)
def test_header_conditions(
    spec: dict[str, Any], headers: list[tuple[str, bytes | None]], expected: bool
) -> None:
    assert compiled(**spec).matches({}, key=None, headers=headers) is expected


def test_every_condition_of_a_filter_must_hold() -> None:
    both = compiled(field="dataset", equals="orders", key="eu-*", header="v2")
    headers = [("v2", b"")]

    assert both.matches({"dataset": "orders"}, b"eu-1", headers)
    assert not both.matches({"dataset": "orders"}, b"us-1", headers)
    assert not both.matches({"dataset": "refunds"}, b"eu-1", headers)
    assert not both.matches({"dataset": "orders"}, b"eu-1", [])


def test_only_field_filters_need_the_decoded_value() -> None:
    assert compiled(field="a").needs_value
    assert not compiled(key="k").needs_value
    assert not MessageFilter(None).needs_value


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"equals": "x"}, "needs field"),
        ({"in": ["x"]}, "needs field"),
        ({"field": "a", "equals": 1, "in": [1]}, "not both"),
        ({"header_equals": "x"}, "needs header"),
        ({"field": "a..b"}, "invalid field path"),
    ],
)
def test_filters_that_cannot_work_are_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compiled(**spec)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (1, 1.0, True),
        (True, 1, False),
        (False, False, True),
        ("1", 1, False),
        ([1, {"a": 2}], [1.0, {"a": 2}], True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        (None, None, True),
    ],
)
def test_json_equality(a: Any, b: Any, expected: bool) -> None:
    assert json_equal(a, b) is expected
