"""What a checkpoint does with its result: the ``actions:`` of a checkpoint.

One model per channel, discriminated on ``type`` (:data:`ActionConfig`), each
with ``notify_on`` (:data:`NotifyOn`), a timeout and its delivery attempts;
:class:`ActionsConfig` says how a checkpoint's actions run together
(sequential, concurrent, or a pipeline of stages). Message templates are
parsed here, so a template that cannot compile is a config error.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from checkpointd.config.base import Model
from checkpointd.config.daemon import BackoffConfig
from checkpointd.config.durations import Duration

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


__all__ = [
    "ActionConfig",
    "ActionsConfig",
    "KafkaAction",
    "NotifyOn",
    "PagerDutyAction",
    "PythonAction",
    "SlackAction",
    "WebhookAction",
]
