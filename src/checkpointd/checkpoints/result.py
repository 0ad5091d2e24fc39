"""The outcome of a checkpoint run, in the one shape every surface shares.

``CheckpointResult.to_dict()`` is what ``run-once --output json``,
``/api/v1/runs/{id}``, webhook bodies and the Kafka result topic carry.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from checkpointd.events import TriggerInfo

Severity = Literal["error", "warning"]


class Status(StrEnum):
    """What happened to a run (or to one validator)."""

    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"
    ERROR = "error"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def exit_code(self) -> int:
        """``run-once`` exit code: 0 success/warning, 1 failure, 2 anything else."""
        if self in (Status.SUCCESS, Status.WARNING):
            return 0
        if self is Status.FAILURE:
            return 1
        return 2

    @property
    def is_ok(self) -> bool:
        return self in (Status.SUCCESS, Status.WARNING)


def _json_safe(value: Any) -> Any:
    """Turn a sample value polars handed us into something json.dumps accepts."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [_json_safe(v) for v in value]
    return str(value)


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix, millisecond precision."""
    text = value.isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class ValidatorResult:
    """One validator's verdict on the data."""

    type: str
    status: Status
    severity: Severity = "error"
    column: str | None = None
    columns: tuple[str, ...] = ()
    checked_count: int = 0
    failed_count: int = 0
    failed_ratio: float = 0.0
    sample: tuple[Any, ...] = ()
    message: str = ""
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.name is not None:
            out["name"] = self.name
        if self.column is not None:
            out["column"] = self.column
        if self.columns:
            out["columns"] = list(self.columns)
        out.update(
            status=self.status.value,
            severity=self.severity,
            checked_count=self.checked_count,
            failed_count=self.failed_count,
            failed_ratio=self.failed_ratio,
            sample=[_json_safe(v) for v in self.sample],
            message=self.message,
        )
        return out


def overall_status(validators: Iterable[ValidatorResult]) -> Status:
    """A run's status from its validators: error > failure > warning > success.

    A validator that failed with ``severity: warning`` makes the run a warning,
    never a failure.
    """
    status = Status.SUCCESS
    for v in validators:
        if v.status is Status.ERROR:
            return Status.ERROR
        if v.status is Status.FAILURE:
            if v.severity == "error":
                status = Status.FAILURE
            elif status is Status.SUCCESS:
                status = Status.WARNING
        elif v.status is Status.WARNING and status is Status.SUCCESS:
            status = Status.WARNING
    return status


@dataclass(frozen=True, slots=True)
class CheckpointResult:
    """The outcome of one run of one checkpoint."""

    run_id: str
    checkpoint: str
    status: Status
    started_at: datetime
    finished_at: datetime
    attempt: int = 1
    trigger: TriggerInfo | None = None
    validators: tuple[ValidatorResult, ...] = ()
    error: str | None = None
    row_count: int | None = None

    @property
    def duration_seconds(self) -> float:
        return max(0.0, (self.finished_at - self.started_at).total_seconds())

    @property
    def failed_validators(self) -> tuple[ValidatorResult, ...]:
        return tuple(v for v in self.validators if not v.status.is_ok)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of DESIGN.md; every value is JSON-safe."""
        return {
            "run_id": self.run_id,
            "checkpoint": self.checkpoint,
            "status": self.status.value,
            "started_at": format_timestamp(self.started_at),
            "finished_at": format_timestamp(self.finished_at),
            "duration_seconds": round(self.duration_seconds, 6),
            "attempt": self.attempt,
            "trigger": self.trigger.to_dict() if self.trigger else None,
            "row_count": self.row_count,
            "validators": [v.to_dict() for v in self.validators],
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckpointResult:
        """Rebuild a result from ``to_dict()`` output (the store keeps that JSON)."""
        trig = data.get("trigger")
        trigger = None
        if trig:
            params = {k: str(v) for k, v in trig.items() if k not in ("type", "key")}
            trigger = TriggerInfo(type=trig["type"], key=trig["key"], params=params)
        validators = tuple(
            ValidatorResult(
                type=v["type"],
                status=Status(v["status"]),
                severity=v.get("severity", "error"),
                column=v.get("column"),
                columns=tuple(v.get("columns", ())),
                checked_count=v.get("checked_count", 0),
                failed_count=v.get("failed_count", 0),
                failed_ratio=v.get("failed_ratio", 0.0),
                sample=tuple(v.get("sample", ())),
                message=v.get("message", ""),
                name=v.get("name"),
            )
            for v in data.get("validators", ())
        )
        return cls(
            run_id=data["run_id"],
            checkpoint=data["checkpoint"],
            status=Status(data["status"]),
            started_at=_parse_ts(data["started_at"]),
            finished_at=_parse_ts(data["finished_at"]),
            attempt=data.get("attempt", 1),
            trigger=trigger,
            validators=validators,
            error=data.get("error"),
            row_count=data.get("row_count"),
        )


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
