"""The values the store hands out (journal entries, outbox deliveries, retention counts)
and its column encodings (timestamps, JSON). Backend-neutral: every backend returns these.

The encodings run for every run the daemon stores (a result is two timestamps
and a JSON document, its journal row a few more), so they are written for
speed: the date-and-time part of a timestamp is formatted once per second,
JSON goes through one encoder built once, and a result's JSON is assembled
from its parts (:func:`result_json`) rather than through ``to_dict()`` and the
generic encoder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.events import TriggerEvent

if TYPE_CHECKING:
    from checkpointd.checkpoints.result import ValidatorResult

JournalState = Literal["accepted", "running", "done", "failed", "interrupted"]
"""accepted → running → done | failed | interrupted."""

JOURNAL_STATES: Final[tuple[JournalState, ...]] = get_args(JournalState)
UNFINISHED_STATES: Final[tuple[JournalState, ...]] = ("accepted", "running")
"""States a crash can leave behind; ``Store.open`` hands such rows to ``on_recover``."""
FINISHED_STATES: Final[tuple[JournalState, ...]] = ("done", "failed", "interrupted")

NotificationKind = Literal["notify", "recovered"]
"""``notify``: the run's status is news. ``recovered``: the checkpoint is back to
success after a status the action had reported (PagerDuty resolves, Slack says so)."""

DeliveryStatus = Literal["pending", "delivered", "dead"]
"""pending → delivered | dead; an operator moves dead → pending again."""

DELIVERY_STATUSES: Final[tuple[DeliveryStatus, ...]] = get_args(DeliveryStatus)


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


_SECONDS: dict[int, str] = {}
"""Formatted date and time (``YYYY-MM-DDTHH:MM:SS``) by whole Unix second."""
_SECONDS_KEPT = 256


def db_time(value: datetime) -> str:
    """A timestamp as stored: UTC, fixed width, so text order is time order.

    A naive datetime is taken to be UTC already.
    """
    tz = value.tzinfo
    if tz is not UTC:
        value = value.replace(tzinfo=UTC) if tz is None else value.astimezone(UTC)
    # The timestamps written together fall in the same few seconds: format the date
    # and time once per second (isoformat() zero-pads the year, strftime does not
    # reliably) and add the microseconds, at a fraction of a full isoformat()'s cost.
    second = math.floor(value.timestamp())
    prefix = _SECONDS.get(second)
    if prefix is None:
        if len(_SECONDS) >= _SECONDS_KEPT:
            _SECONDS.clear()
        prefix = _SECONDS[second] = value.replace(microsecond=0, tzinfo=None).isoformat()
    return "%s.%06dZ" % (prefix, value.microsecond)  # noqa: UP031 (faster than f-strings here)


def parse_db_time(text: str) -> datetime:
    """The inverse of :func:`db_time`: an aware UTC datetime."""
    return datetime.fromisoformat(text)


def dump_json(value: Any) -> str:
    """Compact JSON; values JSON cannot carry (datetimes, bytes, ...) become strings."""
    # One encoder for every call: json.dumps() with options builds a new one each time.
    return _ENCODER.encode(value)


def result_json(result: CheckpointResult, started_at: str, finished_at: str) -> str:
    """``dump_json(result.to_dict())``, the ``runs.result`` column, built from its parts.

    ``started_at`` and ``finished_at`` are the result's times as :func:`db_time`
    wrote them (the caller has them already). The document decodes to exactly
    ``result.to_dict()``; only its key order may differ. Anything unusual (a
    timestamp not in UTC, a field of an unexpected type) takes the generic path.
    """
    run_id, checkpoint, attempt = result.run_id, result.checkpoint, result.attempt
    error, rows = result.error, result.row_count
    if (
        type(run_id) is not str
        or type(checkpoint) is not str
        or type(attempt) is not int
        or not (error is None or type(error) is str)
        or not (rows is None or type(rows) is int)
        or result.started_at.tzinfo is not UTC
        or result.finished_at.tzinfo is not UTC
    ):
        return dump_json(result.to_dict())
    trigger = result.trigger
    if trigger is None:
        trigger_json = "null"
    elif not trigger.params and type(trigger.type) is str and type(trigger.key) is str:
        trigger_json = f'{{"type":{_text(trigger.type)},"key":{_text(trigger.key)}}}'
    else:
        trigger_json = _ENCODER.encode(trigger.to_dict())
    # to_dict() writes milliseconds: db_time's text cut after them (both truncate).
    return "".join((
        '{"run_id":', _text(run_id), ',"checkpoint":', _text(checkpoint),
        ',"status":"', result.status.value,
        '","started_at":"', started_at[:23], 'Z","finished_at":"', finished_at[:23],
        'Z","duration_seconds":', float.__repr__(round(result.duration_seconds, 6)),
        ',"attempt":', int.__repr__(attempt), ',"trigger":', trigger_json,
        ',"row_count":', "null" if rows is None else int.__repr__(rows),
        ',"validators":[', ",".join([_validator_json(v) for v in result.validators]),
        '],"error":', "null" if error is None else _text(error), "}",
    ))  # fmt: skip


_text: Final = encode_basestring_ascii
"""A str as a JSON string, as the encoder writes it (C, ASCII-only like ``json.dumps``)."""


def _validator_json(v: ValidatorResult) -> str:
    """``dump_json(v.to_dict())`` for the common validator (no sample, plain types)."""
    ratio = v.failed_ratio
    if (
        v.sample
        or type(v.type) is not str
        or type(v.message) is not str
        or type(v.checked_count) is not int
        or type(v.failed_count) is not int
        or type(ratio) is not float
        or not math.isfinite(ratio)
        or v.severity not in ("error", "warning")
        or not (v.name is None or type(v.name) is str)
        or not (v.column is None or type(v.column) is str)
        or not all(type(c) is str for c in v.columns)
    ):
        return _ENCODER.encode(v.to_dict())
    return "".join((
        '{"type":', _text(v.type),
        "" if v.name is None else ',"name":' + _text(v.name),
        "" if v.column is None else ',"column":' + _text(v.column),
        ',"columns":[' + ",".join([_text(c) for c in v.columns]) + "]" if v.columns else "",
        ',"status":"', v.status.value, '","severity":"', v.severity,
        '","checked_count":', int.__repr__(v.checked_count),
        ',"failed_count":', int.__repr__(v.failed_count),
        ',"failed_ratio":', float.__repr__(ratio),
        ',"sample":[],"message":', _text(v.message), "}",
    ))  # fmt: skip


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


_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), default=_fallback)


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


# ------------------------------------------------------------------ the outbox


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One delivery and how far it got."""

    id: str
    run_id: str
    checkpoint: str
    action: str
    action_type: str
    position: int
    stage: int
    kind: NotificationKind
    previous_status: Status | None
    destination: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    last_error: str | None
    last_status_code: int | None
    run_status: str | None
    result: CheckpointResult | None = None
    """Loaded only by ``outbox_due`` (what the dispatcher sends)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``checkpointd deliveries`` and ``/api/v1/deliveries``."""
        return {
            "id": self.id,
            "run_id": self.run_id,
            "checkpoint": self.checkpoint,
            "run_status": self.run_status,
            "action": self.action,
            "action_type": self.action_type,
            "kind": self.kind,
            "previous_status": self.previous_status.value if self.previous_status else None,
            "destination": self.destination,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": db_time(self.next_attempt_at) if self.status == "pending" else None,
            "created_at": db_time(self.created_at),
            "updated_at": db_time(self.updated_at),
            "delivered_at": db_time(self.delivered_at) if self.delivered_at else None,
            "last_error": self.last_error,
            "last_status_code": self.last_status_code,
        }


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A delivery to write with a result (``DeliveryPlan.rows``)."""

    id: str
    run_id: str
    checkpoint: str
    action: str
    action_type: str
    position: int
    stage: int
    kind: NotificationKind
    previous_status: Status | None
    destination: str
    result_json: str


@dataclass(frozen=True, slots=True)
class DeliveryPlan:
    """What a batch of results calls for: the deliveries to write, and each checkpoint's
    last verdict after the batch (the "previous status" of its next run)."""

    written_at: datetime
    """Stamps the rows (created, updated, first due): the planner's clock, not the store's."""
    rows: Sequence[NewDelivery] = ()
    last_status: Mapping[str, Status] = field(default_factory=dict)


DeliveryPlanner = Callable[[Mapping[str, Status]], DeliveryPlan]
"""Decides, given each checkpoint's last verdict, what a batch of results calls for; the store
runs it inside the transaction that stores the results (``Store.save_results``)."""
