"""The config file as frozen pydantic models: the contract operators write.

Every model forbids unknown keys, so a typo is an error that names its path.
Choices are ``Literal``s and plug-in kinds are discriminated unions on ``type``.

This module holds the whole file (:class:`Config`) and one checkpoint
(:class:`CheckpointConfig`); each section has its own module, and every model
is importable from here too:

- :mod:`~checkpointd.config.daemon`: ``daemon:`` and ``kafka:``;
- :mod:`~checkpointd.config.sources`: a checkpoint's ``data_source:``;
- :mod:`~checkpointd.config.validators`: its ``validators:``;
- :mod:`~checkpointd.config.triggers`: its ``triggers:``;
- :mod:`~checkpointd.config.actions`: its ``actions:``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from checkpointd.config.actions import (
    ActionConfig,
    ActionsConfig,
    KafkaAction,
    NotifyOn,
    PagerDutyAction,
    PythonAction,
    SlackAction,
    WebhookAction,
)
from checkpointd.config.base import Model
from checkpointd.config.daemon import (
    BackoffConfig,
    BreakerConfig,
    DaemonActionsConfig,
    DaemonConfig,
    HttpConfig,
    KafkaConfig,
    LogConfig,
    RetentionConfig,
)
from checkpointd.config.durations import Duration
from checkpointd.config.sources import (
    CsvSource,
    DataSourceConfig,
    InlineSource,
    KafkaBatchSource,
    NdjsonSource,
    ParquetSource,
)
from checkpointd.config.triggers import (
    FileTrigger,
    KafkaFilter,
    KafkaTrigger,
    ManualTrigger,
    ScheduleTrigger,
    TriggerConfig,
)
from checkpointd.config.validators import (
    ExpressionValidator,
    FreshnessValidator,
    InSetValidator,
    MeanBetweenValidator,
    NotNullValidator,
    NullRatioValidator,
    RangeValidator,
    RegexValidator,
    RowCountValidator,
    SchemaValidator,
    StddevBetweenValidator,
    UniqueValidator,
    ValidatorConfig,
)

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


__all__ = [
    "ActionConfig",
    "ActionsConfig",
    "BackoffConfig",
    "BreakerConfig",
    "CheckpointConfig",
    "Config",
    "CsvSource",
    "DaemonActionsConfig",
    "DaemonConfig",
    "DataSourceConfig",
    "ExpressionValidator",
    "FileTrigger",
    "FreshnessValidator",
    "HttpConfig",
    "InSetValidator",
    "InlineSource",
    "KafkaAction",
    "KafkaBatchSource",
    "KafkaConfig",
    "KafkaFilter",
    "KafkaTrigger",
    "LogConfig",
    "ManualTrigger",
    "MeanBetweenValidator",
    "Model",
    "NdjsonSource",
    "NotNullValidator",
    "NotifyOn",
    "NullRatioValidator",
    "PagerDutyAction",
    "ParquetSource",
    "PythonAction",
    "RangeValidator",
    "RegexValidator",
    "RetentionConfig",
    "RetryConfig",
    "RowCountValidator",
    "ScheduleTrigger",
    "SchemaValidator",
    "SlackAction",
    "StddevBetweenValidator",
    "TriggerConfig",
    "UniqueValidator",
    "ValidatorConfig",
    "WebhookAction",
]
