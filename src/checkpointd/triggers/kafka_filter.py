"""Which Kafka messages fire which checkpoint: topic selection and message filters (pure).

A kafka trigger names a ``topic`` or a ``pattern`` (a regular expression that must
match the *whole* topic name, as in Kafka's own clients), and optionally a
``filter``. Every condition the filter sets must hold:

- ``field`` (a dotted path into the JSON object, ``a.b.c``) with ``equals``: the
  value there equals ``equals``; with ``in``: it is one of the listed values;
  with neither: the field is present and not null. Equality is JSON equality:
  ``1`` equals ``1.0`` but ``true`` is not ``1``.
- ``key``: the message key, read as UTF-8, matches this glob (``orders-*``; a
  plain string matches only itself). A message without a key never matches.
- ``header``: the message carries this header; with ``header_equals``, one of
  the headers of that name has this UTF-8 value.

The daemon's one consumer subscribes to the union of every trigger's topics and
patterns (:func:`subscription`), then routes each message by these rules.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from checkpointd.config.models import KafkaFilter, KafkaTrigger

__all__ = ["MessageFilter", "Subscription", "TopicSelector", "subscription"]

_MISSING = object()


@dataclass(frozen=True, slots=True)
class TopicSelector:
    """The topics one trigger consumes: one exact name, or a whole-name regex."""

    topic: str | None = None
    pattern: str | None = None

    def __post_init__(self) -> None:
        if (self.topic is None) == (self.pattern is None):
            raise ValueError("a topic selector needs exactly one of topic, pattern")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"invalid topic pattern {self.pattern!r}: {exc}") from None

    @classmethod
    def of(cls, trigger: KafkaTrigger) -> TopicSelector:
        return cls(topic=trigger.topic, pattern=trigger.pattern)

    def matches(self, topic: str) -> bool:
        if self.topic is not None:
            return topic == self.topic
        assert self.pattern is not None
        return re.fullmatch(self.pattern, topic) is not None

    def describe(self) -> str:
        return self.topic if self.topic is not None else f"/{self.pattern}/"


@dataclass(frozen=True, slots=True)
class Subscription:
    """What the consumer subscribes to: exact topics, or one regex covering everything."""

    topics: frozenset[str] = frozenset()
    pattern: str | None = None

    @property
    def empty(self) -> bool:
        return not self.topics and self.pattern is None


def subscription(selectors: Iterable[TopicSelector]) -> Subscription:
    """The union of ``selectors`` as one subscription.

    Kafka clients take either a topic list or one pattern, not both, so any
    pattern turns the whole union into a pattern: the exact topics escaped, each
    pattern in its own group, anchored to match whole names.
    """
    topics = sorted({s.topic for s in selectors if s.topic is not None})
    patterns = sorted({s.pattern for s in selectors if s.pattern is not None})
    if not patterns:
        return Subscription(topics=frozenset(topics))
    parts = [re.escape(t) for t in topics] + [f"(?:{p})" for p in patterns]
    return Subscription(pattern=f"^(?:{'|'.join(parts)})$")


class MessageFilter:
    """A compiled ``filter:``; :meth:`matches` decides one message."""

    def __init__(self, spec: KafkaFilter | None) -> None:
        self._path: tuple[str, ...] | None = None
        self._equals: Any = _MISSING
        self._in: tuple[Any, ...] | None = None
        self._key: re.Pattern[str] | None = None
        self._header: str | None = None
        self._header_value: bytes | None = None
        if spec is None:
            return
        # The config model has checked that the conditions fit together.
        wants_equals = "equals" in spec.model_fields_set
        if spec.field is not None:
            self._path = tuple(spec.field.split("."))
        if wants_equals:
            self._equals = spec.equals
        if spec.in_ is not None:
            self._in = tuple(spec.in_)
        if spec.key is not None:
            self._key = re.compile(fnmatch.translate(spec.key))
        self._header = spec.header
        if spec.header_equals is not None:
            self._header_value = spec.header_equals.encode()

    @property
    def needs_value(self) -> bool:
        """Whether deciding needs the decoded JSON value."""
        return self._path is not None

    def matches(
        self,
        value: Mapping[str, Any] | None,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes | None]] = (),
    ) -> bool:
        """Whether a message with this decoded ``value``, ``key`` and ``headers`` fires."""
        if self._key is not None:
            if key is None:
                return False
            try:
                text = key.decode()
            except UnicodeDecodeError:
                return False
            if self._key.fullmatch(text) is None:
                return False
        if self._header is not None and not self._header_matches(headers):
            return False
        if self._path is None:
            return True
        found = _lookup(value, self._path)
        if self._in is not None:
            return found is not _MISSING and any(json_equal(found, v) for v in self._in)
        if self._equals is not _MISSING:
            return found is not _MISSING and json_equal(found, self._equals)
        return found is not _MISSING and found is not None

    def _header_matches(self, headers: Sequence[tuple[str, bytes | None]]) -> bool:
        for name, raw in headers:
            if name != self._header:
                continue
            if self._header_value is None or raw == self._header_value:
                return True
        return False


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: numbers compare by value, booleans are not numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _lookup(value: Mapping[str, Any] | None, path: tuple[str, ...]) -> Any:
    current: Any = value
    for part in path:
        if not isinstance(current, Mapping) or part not in current:
            return _MISSING
        current = current[part]
    return current
