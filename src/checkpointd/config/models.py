"""The config file as frozen pydantic models: the contract operators write.

Every model forbids unknown keys, so a typo is an error that names its path.
Choices are ``Literal``s and plug-in kinds are discriminated unions on ``type``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from checkpointd.config.durations import Duration


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- daemon


class HttpConfig(Model):
    listen: str = "127.0.0.1:9108"
    token: SecretStr | None = None
    max_body_bytes: int = Field(default=1_048_576, ge=1024)

    @field_validator("token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected HOST:PORT such as 127.0.0.1:9108, found {value!r}")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class LogConfig(Model):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class RetentionConfig(Model):
    max_age: Duration | None = None
    max_runs_per_checkpoint: int | None = Field(default=None, ge=1)


class BackoffConfig(Model):
    """Waits between delivery attempts: ``initial * multiplier ** n``, capped at ``max``,
    drawn with full jitter (uniform in ``[0, that]``)."""

    initial: Duration = timedelta(seconds=1)
    max: Duration = timedelta(minutes=5)
    multiplier: float = Field(default=2.0, ge=1.0)


class BreakerConfig(Model):
    """Per-destination circuit breaker: open after ``failures`` consecutive retryable
    failures, let one probe through after ``reset_after``."""

    failures: int = Field(default=5, ge=1)
    reset_after: Duration = timedelta(seconds=30)


class DaemonActionsConfig(Model):
    """``daemon.actions``: how the daemon delivers notifications from its outbox."""

    allow_hosts: list[str] | None = None
    """When set, only these hosts (``*.example.com`` matches subdomains) may be sent to."""
    allow_link_local: bool = False
    """Link-local addresses (169.254.0.0/16, fe80::/10: cloud metadata) are refused unless set."""
    max_in_flight: int = Field(default=32, ge=1)
    per_destination: int = Field(default=4, ge=1)
    connect_timeout: Duration = timedelta(seconds=5)
    retry_after_max: Duration = timedelta(hours=1)
    backoff: BackoffConfig = BackoffConfig()
    breaker: BreakerConfig = BreakerConfig()
    keep_delivered: Duration = timedelta(days=7)
    poll_interval: Duration = timedelta(seconds=1)


class DaemonConfig(Model):
    loop: Literal["uvloop", "asyncio"] = "uvloop"
    max_concurrent_checkpoints: int = Field(default=8, ge=1, le=10_000)
    result_queue_size: int = Field(default=1000, ge=1)
    graceful_shutdown_timeout: Duration = timedelta(seconds=30)
    trigger_poll_interval: Duration = timedelta(seconds=1)
    stop_on_error: bool = False
    max_consecutive_failures: int | None = Field(default=None, ge=1)
    state_dir: Path = Path("./state")
    on_crash: Literal["rerun", "mark_interrupted"] = "rerun"
    watch_config: bool = False
    http: HttpConfig = HttpConfig()
    log: LogConfig = LogConfig()
    retention: RetentionConfig = RetentionConfig()
    actions: DaemonActionsConfig = DaemonActionsConfig()


class KafkaConfig(Model):
    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "checkpointd"
    client_id: str = "checkpointd"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    max_message_bytes: int = Field(default=1_048_576, ge=1)
    dead_letter_topic: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


# ---------------------------------------------------------------- data sources


class _FileSource(Model):
    path: str = Field(min_length=1)
    dtypes: dict[str, str] | None = None


class CsvSource(_FileSource):
    type: Literal["csv"]
    separator: str = Field(default=",", min_length=1, max_length=1)
    has_header: bool = True
    quote_char: str | None = '"'
    null_values: list[str] | None = None
    encoding: Literal["utf8", "utf8-lossy"] = "utf8"
    skip_rows: int = Field(default=0, ge=0)


class ParquetSource(_FileSource):
    type: Literal["parquet"]


class NdjsonSource(_FileSource):
    type: Literal["ndjson"]


class InlineSource(Model):
    type: Literal["inline"]
    rows: list[dict[str, Any]]
    dtypes: dict[str, str] | None = None


class KafkaBatchSource(Model):
    type: Literal["kafka_batch"]
    max_messages: int = Field(default=1000, ge=1)
    max_wait: Duration = timedelta(seconds=5)
    dtypes: dict[str, str] | None = None


DataSourceConfig = Annotated[
    CsvSource | ParquetSource | NdjsonSource | InlineSource | KafkaBatchSource,
    Field(discriminator="type"),
]


# ---------------------------------------------------------------- validators


class _Validator(Model):
    name: str | None = None
    severity: Literal["error", "warning"] = "error"
    mostly: float | None = Field(default=None, ge=0.0, le=1.0)


class NotNullValidator(_Validator):
    type: Literal["not_null"]
    columns: list[str] = Field(min_length=1)


class NullRatioValidator(_Validator):
    type: Literal["null_ratio"]
    columns: list[str] = Field(min_length=1)
    max: float = Field(ge=0.0, le=1.0)


class UniqueValidator(_Validator):
    type: Literal["unique"]
    columns: list[str] = Field(min_length=1)


class RangeValidator(_Validator):
    type: Literal["range"]
    column: str
    min: float | None = None
    max: float | None = None
    min_inclusive: bool = True
    max_inclusive: bool = True

    @model_validator(mode="after")
    def _bounds(self) -> RangeValidator:
        if self.min is None and self.max is None:
            raise ValueError("range needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class InSetValidator(_Validator):
    type: Literal["in_set"]
    column: str
    values: list[Any] = Field(min_length=1)


class RegexValidator(_Validator):
    type: Literal["regex"]
    column: str
    pattern: str = Field(min_length=1)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        import re

        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return value


class RowCountValidator(_Validator):
    type: Literal["row_count"]
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> RowCountValidator:
        if self.min is None and self.max is None:
            raise ValueError("row_count needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class SchemaValidator(_Validator):
    type: Literal["schema"]
    columns: dict[str, str | None] = Field(min_length=1)
    allow_extra: bool = True


class FreshnessValidator(_Validator):
    type: Literal["freshness"]
    column: str
    max_age: Duration


class _StatBetween(_Validator):
    column: str
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Any:
        if self.min is None and self.max is None:
            raise ValueError(f"{getattr(self, 'type', 'validator')} needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class MeanBetweenValidator(_StatBetween):
    type: Literal["mean_between"]


class StddevBetweenValidator(_StatBetween):
    type: Literal["stddev_between"]


class ExpressionValidator(_Validator):
    type: Literal["expression"]
    expr: str = Field(min_length=1)


ValidatorConfig = Annotated[
    NotNullValidator
    | NullRatioValidator
    | UniqueValidator
    | RangeValidator
    | InSetValidator
    | RegexValidator
    | RowCountValidator
    | SchemaValidator
    | FreshnessValidator
    | MeanBetweenValidator
    | StddevBetweenValidator
    | ExpressionValidator,
    Field(discriminator="type"),
]


# ---------------------------------------------------------------- triggers


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


# ---------------------------------------------------------------- actions

NotifyOn = Literal[
    "always",
    "success",
    "warning",
    "failure",
    "error",
    "failure_or_error",
    "not_success",
    "status_change",
]


def _check_template(value: str | None) -> str | None:
    """A message template must parse (Jinja2, loaded on first use)."""
    if value is not None:
        from checkpointd.config.syntax import check_template_syntax

        check_template_syntax(value)
    return value


class _Action(Model):
    name: str | None = None
    notify_on: NotifyOn = "failure_or_error"
    timeout: Duration = timedelta(seconds=10)
    max_attempts: int = Field(default=8, ge=1)
    backoff: BackoffConfig | None = None
    """None: ``daemon.actions.backoff``."""
    send_recovery: bool = False
    """Also notify when the checkpoint is back to success after a status this action reported."""


class WebhookAction(_Action):
    type: Literal["webhook"]
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    secret: SecretStr | None = None
    verify_tls: bool = True
    template: str | None = None

    _template_compiles = field_validator("template")(_check_template)


class SlackAction(_Action):
    type: Literal["slack"]
    webhook_url: SecretStr
    base_url: str | None = None
    template: str | None = None

    _template_compiles = field_validator("template")(_check_template)


class PagerDutyAction(_Action):
    type: Literal["pagerduty"]
    routing_key: SecretStr
    url: str = "https://events.pagerduty.com/v2/enqueue"
    severity: Literal["critical", "error", "warning", "info"] = "error"
    send_recovery: bool = True  # resolve the incident when the checkpoint recovers
    base_url: str | None = None


class PythonAction(_Action):
    type: Literal["python"]
    target: str = Field(pattern=r"^[\w.]+:[\w.]+$")


class KafkaAction(_Action):
    type: Literal["kafka"]
    topic: str


ActionConfig = Annotated[
    WebhookAction | SlackAction | PagerDutyAction | PythonAction | KafkaAction,
    Field(discriminator="type"),
]


class ActionsConfig(Model):
    """How a checkpoint's actions run. ``list`` in YAML is ``items`` in Python."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    strategy: Literal["sequential", "concurrent", "pipeline"] = "concurrent"
    max_concurrency: int | None = Field(default=None, ge=1)
    stages: list[list[int]] | None = None
    items: list[ActionConfig] = Field(default_factory=list, alias="list")

    @model_validator(mode="after")
    def _names_and_stages(self) -> ActionsConfig:
        seen: set[str] = set()
        for action in self.items:
            if action.name is not None:
                if action.name in seen:
                    raise ValueError(
                        f"two actions are named {action.name!r}; action names must be unique"
                    )
                seen.add(action.name)
        if self.strategy == "pipeline":
            from checkpointd.config.syntax import check_pipeline_stages

            if self.stages is None:
                raise ValueError("strategy 'pipeline' needs `stages`, e.g. [[0, 1], [2]]")
            check_pipeline_stages(self.stages, len(self.items))
        elif self.stages is not None:
            raise ValueError(f"`stages` only applies to strategy 'pipeline', not {self.strategy!r}")
        return self


# ---------------------------------------------------------------- checkpoints


class RetryConfig(Model):
    max_retries: int = Field(default=0, ge=0, le=100)
    delay: Duration = timedelta(seconds=1)
    backoff: float = Field(default=2.0, ge=1.0)
    max_delay: Duration = timedelta(seconds=60)
    jitter: bool = True


class CheckpointConfig(Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    description: str | None = None
    data_source: DataSourceConfig
    validators: list[ValidatorConfig] = Field(default_factory=list)
    timeout: Duration | None = timedelta(minutes=5)
    retries: RetryConfig = RetryConfig()
    triggers: list[TriggerConfig] = Field(default_factory=list)
    actions: ActionsConfig = ActionsConfig()
    overlap: Literal["skip", "queue", "allow"] = "skip"
    catch_up: Literal["none", "latest", "all"] = "latest"
    max_catch_up: int = Field(default=10, ge=0)


class Config(Model):
    """A whole config file. ``source`` is the file it came from (None when built in code)."""

    daemon: DaemonConfig = DaemonConfig()
    kafka: KafkaConfig | None = None
    checkpoints: list[CheckpointConfig] = Field(default_factory=list)
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: set[str] = set()
        for cp in self.checkpoints:
            if cp.name in seen:
                raise ValueError(f"duplicate checkpoint name {cp.name!r}; names must be unique")
            seen.add(cp.name)
        return self

    def checkpoint(self, name: str) -> CheckpointConfig:
        for cp in self.checkpoints:
            if cp.name == name:
                return cp
        known = ", ".join(cp.name for cp in self.checkpoints) or "none"
        raise KeyError(f"no checkpoint named {name!r} (known: {known})")
