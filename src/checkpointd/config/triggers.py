"""What starts a checkpoint's run: the ``triggers:`` of a checkpoint.

One model per kind, discriminated on ``type`` (:data:`TriggerConfig`): a
schedule (cron, interval or a time of day), a Kafka topic with an optional
filter, files landing in folders, or a manual run. A schedule is compiled
while it is validated, so a bad cron field is an error with its path.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from checkpointd.config.base import Model
from checkpointd.config.durations import Duration


class ScheduleTrigger(Model):
    type: Literal["schedule"]
    name: str | None = None
    cron: str | None = None
    interval: Duration | None = None
    at: str | None = None
    timezone: str = "UTC"
    jitter: Duration | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleTrigger:
        kinds = [k for k in ("cron", "interval", "at") if getattr(self, k) is not None]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none of them"
            raise ValueError(f"a schedule needs exactly one of cron, interval, at; found {found}")
        if self.interval is not None and self.interval.total_seconds() <= 0:
            raise ValueError("interval must be greater than 0")
        if self.cron is not None or self.at is not None:
            # Compiling here turns a bad cron field or `at` into an error with its path
            # (config.cron holds the only APScheduler import, loaded on first use).
            from datetime import UTC, datetime

            from checkpointd.config.cron import compile_schedule

            compile_schedule(self, anchor=datetime.now(UTC))
        return self

    @field_validator("cron")
    @classmethod
    def _cron_fields(cls, value: str | None) -> str | None:
        if value is not None and len(value.split()) not in (5, 6):
            raise ValueError(
                f"expected a cron expression of 5 fields (or 6 with seconds first), found {value!r}"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        import difflib
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            # OSError: a key naming a folder of the zone database ("America").
            close = difflib.get_close_matches(value, available_timezones(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"unknown time zone {value!r}{hint}; expected an IANA name such as UTC "
                "or Europe/Berlin"
            ) from None
        return value


class KafkaFilter(Model):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    field: str | None = None
    equals: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    key: str | None = None
    header: str | None = None
    header_equals: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> KafkaFilter:
        # ``equals: null`` is a real condition (the field is null), so "given" is about the
        # keys written, not the values.
        wants_equals = "equals" in self.model_fields_set
        if (wants_equals or self.in_ is not None) and self.field is None:
            raise ValueError("a kafka filter with equals or in needs field (the JSON field)")
        if wants_equals and self.in_ is not None:
            raise ValueError("a kafka filter takes equals or in, not both")
        if self.header_equals is not None and self.header is None:
            raise ValueError("a kafka filter with header_equals needs header (the header name)")
        if self.field is not None and any(not part for part in self.field.split(".")):
            raise ValueError(f"invalid field path {self.field!r}; expected a or a.b.c")
        return self


class KafkaTrigger(Model):
    type: Literal["kafka"]
    topic: str | None = None
    pattern: str | None = None
    filter: KafkaFilter | None = None

    @model_validator(mode="after")
    def _topic_or_pattern(self) -> KafkaTrigger:
        if (self.topic is None) == (self.pattern is None):
            raise ValueError("a kafka trigger needs exactly one of topic, pattern")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(
                    f"invalid topic pattern {self.pattern!r}: {exc} (a Python regular expression)"
                ) from None
        return self


class FileTrigger(Model):
    type: Literal["file"]
    directory: Path | None = None
    directories: list[Path] | None = None
    pattern: str = "*"
    recursive: bool = False
    poll_interval: Duration = timedelta(seconds=1)
    stable_for: Duration = timedelta(seconds=2)
    ignore: list[str] = Field(default_factory=lambda: ["*.part", "*.tmp", ".*"])
    marker: str | None = None
    use_inotify: bool = False
    move_on_success: Path | None = None
    move_on_failure: Path | None = None

    @model_validator(mode="after")
    def _some_directory(self) -> FileTrigger:
        if self.directory is None and not self.directories:
            raise ValueError("a file trigger needs directory or directories")
        return self

    @property
    def all_directories(self) -> list[Path]:
        dirs = list(self.directories or [])
        if self.directory is not None:
            dirs.insert(0, self.directory)
        return dirs


class ManualTrigger(Model):
    type: Literal["manual"]


TriggerConfig = Annotated[
    ScheduleTrigger | KafkaTrigger | FileTrigger | ManualTrigger,
    Field(discriminator="type"),
]


__all__ = [
    "FileTrigger",
    "KafkaFilter",
    "KafkaTrigger",
    "ManualTrigger",
    "ScheduleTrigger",
    "TriggerConfig",
]
