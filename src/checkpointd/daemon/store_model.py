"""The values the store hands out (journal entries, retention counts) and its
column encodings (timestamps, JSON)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, get_args

from checkpointd.triggers.event import TriggerEvent

JournalState = Literal["accepted", "running", "done", "failed", "interrupted"]
"""accepted → running → done | failed | interrupted."""

JOURNAL_STATES: Final[tuple[JournalState, ...]] = get_args(JournalState)
UNFINISHED_STATES: Final[tuple[JournalState, ...]] = ("accepted", "running")
"""States a crash can leave behind; ``Store.open`` hands such rows to ``on_recover``."""
FINISHED_STATES: Final[tuple[JournalState, ...]] = ("done", "failed", "interrupted")


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One journaled (event, checkpoint) pair and how far it got."""

    key: str
    checkpoint: str
    trigger_type: str
    params: Mapping[str, str]
    fired_at: datetime
    state: JournalState
    accepted_at: datetime
    updated_at: datetime
    attempts: int = 0
    run_id: str | None = None
    records: tuple[Mapping[str, Any], ...] | None = field(default=None, repr=False)

    def to_event(self) -> TriggerEvent:
        """The event again, addressed to this entry's checkpoint, for a re-run."""
        return TriggerEvent(
            type=self.trigger_type,
            key=self.key,
            fired_at=self.fired_at,
            checkpoint=self.checkpoint,
            params=dict(self.params),
            records=self.records,
        )


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """How many rows one ``apply_retention()`` deleted."""

    runs: int = 0
    validators: int = 0
    journal: int = 0


def db_time(value: datetime) -> str:
    """A timestamp as stored: UTC, fixed width, so text order is time order.

    A naive datetime is taken to be UTC already.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    elif value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # isoformat() zero-pads the year and, with timespec, always writes the
    # microseconds (strftime does neither reliably) and is the faster of the two.
    return value.isoformat(timespec="microseconds")[:-6] + "Z"


def parse_db_time(text: str) -> datetime:
    """The inverse of :func:`db_time`: an aware UTC datetime."""
    return datetime.fromisoformat(text)


def dump_json(value: Any) -> str:
    """Compact JSON; values JSON cannot carry (datetimes, bytes, ...) become strings."""
    return json.dumps(value, separators=(",", ":"), default=_fallback)


def _fallback(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Sequence | set | frozenset):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return str(value)


def entry_from_row(row: Sequence[Any]) -> JournalEntry:
    """Build an entry from a row of :data:`JOURNAL_COLUMNS`."""
    (key, checkpoint, trigger_type, params, records, fired_at, state, accepted_at,
     updated_at, attempts, run_id) = row  # fmt: skip
    decoded_records = json.loads(records) if records is not None else None
    return JournalEntry(
        key=key,
        checkpoint=checkpoint,
        trigger_type=trigger_type,
        params=json.loads(params),
        fired_at=parse_db_time(fired_at),
        state=state,
        accepted_at=parse_db_time(accepted_at),
        updated_at=parse_db_time(updated_at),
        attempts=attempts,
        run_id=run_id,
        records=tuple(decoded_records) if decoded_records is not None else None,
    )


JOURNAL_COLUMNS: Final = (
    "key, checkpoint, trigger_type, params, records, fired_at, state, accepted_at, "
    "updated_at, attempts, run_id"
)
