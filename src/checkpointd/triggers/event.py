"""TriggerEvent: what every trigger turns the outside world into."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from checkpointd.checkpoints.result import TriggerInfo


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
