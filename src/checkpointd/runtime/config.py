"""AsyncRunnerConfig: the runner's knobs, every one of them honoured."""

from __future__ import annotations

from dataclasses import dataclass

from checkpointd.config.models import DaemonConfig

__all__ = ["AsyncRunnerConfig"]


@dataclass(frozen=True, slots=True)
class AsyncRunnerConfig:
    """How the runner behaves; ``from_daemon`` builds it from the ``daemon:`` config section.

    - ``max_concurrent_checkpoints``: runs executing at once (the pool's workers;
      as many more may wait in its backlog).
    - ``trigger_poll_interval``: seconds between two polls of one trigger.
    - ``result_queue_size``: results waiting for the sink/journal/iterators
      before runs wait.
    - ``stop_on_error``: stop after the first run with status ``error``.
    - ``max_consecutive_failures``: stop after this many runs in a row end
      ``failure``, ``error`` or ``timeout`` (None: never).
    - ``graceful_shutdown_timeout``: seconds ``stop_async`` lets runs finish
      before cancelling them (and, separately, to deliver results).
    """

    max_concurrent_checkpoints: int = 8
    trigger_poll_interval: float = 1.0
    result_queue_size: int = 1000
    stop_on_error: bool = False
    max_consecutive_failures: int | None = None
    graceful_shutdown_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.max_concurrent_checkpoints < 1:
            raise ValueError(
                f"max_concurrent_checkpoints must be at least 1, "
                f"found {self.max_concurrent_checkpoints}"
            )
        if self.trigger_poll_interval <= 0:
            raise ValueError(
                "trigger_poll_interval must be positive seconds, "
                f"found {self.trigger_poll_interval}"
            )
        if self.result_queue_size < 1:
            raise ValueError(
                f"result_queue_size must be at least 1, found {self.result_queue_size}"
            )
        if self.max_consecutive_failures is not None and self.max_consecutive_failures < 1:
            raise ValueError(
                "max_consecutive_failures must be at least 1 or None, "
                f"found {self.max_consecutive_failures}"
            )
        if self.graceful_shutdown_timeout < 0:
            raise ValueError(
                "graceful_shutdown_timeout cannot be negative, "
                f"found {self.graceful_shutdown_timeout}"
            )

    @classmethod
    def from_daemon(cls, daemon: DaemonConfig) -> AsyncRunnerConfig:
        return cls(
            max_concurrent_checkpoints=daemon.max_concurrent_checkpoints,
            trigger_poll_interval=daemon.trigger_poll_interval.total_seconds(),
            result_queue_size=daemon.result_queue_size,
            stop_on_error=daemon.stop_on_error,
            max_consecutive_failures=daemon.max_consecutive_failures,
            graceful_shutdown_timeout=daemon.graceful_shutdown_timeout.total_seconds(),
        )
