"""Shared pytest set-up: the real Kafka broker fixtures live in tests/kafka_broker.py."""

from __future__ import annotations

pytest_plugins = ["tests.kafka_broker"]
