"""TriggerEvent, what every trigger turns the outside world into, and TriggerInfo, what a
result keeps of it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class TriggerInfo:
    """Which trigger caused a run: its type, idempotency key and the values it handed over."""

    type: str
    key: str
    params: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # ``type`` and ``key`` say what fired and its idempotency key; a param of the same
        # name (a Kafka message's own key, a JSON field called "type") must not pass for
        # them, so it is left out here (it stays in the journal and in ``{trigger.*}``).
        out: dict[str, Any] = {"type": self.type, "key": self.key}
        for name, value in self.params.items():
            if name != "type" and name != "key":
                out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class TriggerEvent:
    """One firing of one trigger.

        ``key`` is the idempotency key (Kafka topic/partition/offset, file
        path+size+mtime_ns, schedule name+fire time): the journal refuses a key it
        has already seen, so a duplicate event is harmless.

        ``params`` fill ``{trigger.NAME}`` placeholders in a data source
        (``{trigger.path}`` for the file trigger). ``records`` carries the decoded
        messages of a Kafka batch for a ``kafka_batch`` data source. ``run_id``, when
    set, is the id the run will carry (the manual trigger answers with it at once).
    """

    type: str
    key: str
    fired_at: datetime
    checkpoint: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    records: Sequence[Mapping[str, Any]] | None = None
    run_id: str | None = None

    def info(self) -> TriggerInfo:
        return TriggerInfo(type=self.type, key=self.key, params=dict(self.params))
