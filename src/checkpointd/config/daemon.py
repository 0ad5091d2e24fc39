"""The process-wide sections of the file: ``daemon:`` and ``kafka:``.

``daemon:`` says how the process runs (loop, pool size, shutdown grace, state
folder, HTTP API, logging, retention, and how the outbox delivers actions);
``kafka:`` is the one broker connection every Kafka trigger, data source and
action shares. Nothing here knows about checkpoints.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from checkpointd.config.base import Model
from checkpointd.config.durations import Duration


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


__all__ = [
    "BackoffConfig",
    "BreakerConfig",
    "DaemonActionsConfig",
    "DaemonConfig",
    "HttpConfig",
    "KafkaConfig",
    "LogConfig",
    "RetentionConfig",
]
