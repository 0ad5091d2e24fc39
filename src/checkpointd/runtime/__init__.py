"""The runtime: the library runner users import, and the daemon runs on.

``runner`` (:class:`AsyncCheckpointRunner`, configured by :class:`AsyncRunnerConfig`
in ``config``), ``pool`` (:class:`CheckpointPool`, the bounded run pool),
``parallel`` (:func:`run_checkpoints_parallel`), ``runs``
(:func:`run_checkpoint_async`), ``results`` (the bounded result queue and its
sink), ``overlap`` (what a run does when its checkpoint is still running),
``triggerset`` (the supervised set of trigger sources), ``stats``. Names are
imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from checkpointd._lazy import lazy_exports

if TYPE_CHECKING:
    from checkpointd.runtime.config import AsyncRunnerConfig
    from checkpointd.runtime.contained import run_checkpoint_async
    from checkpointd.runtime.parallel import run_checkpoints_parallel
    from checkpointd.runtime.pool import CheckpointPool
    from checkpointd.runtime.runner import AsyncCheckpointRunner
    from checkpointd.runtime.stats import RunnerStats

__all__ = [
    "AsyncCheckpointRunner",
    "AsyncRunnerConfig",
    "CheckpointPool",
    "RunnerStats",
    "run_checkpoint_async",
    "run_checkpoints_parallel",
]

_LAZY: dict[str, str] = {
    "AsyncRunnerConfig": "checkpointd.runtime.config",
    "run_checkpoints_parallel": "checkpointd.runtime.parallel",
    "CheckpointPool": "checkpointd.runtime.pool",
    "AsyncCheckpointRunner": "checkpointd.runtime.runner",
    "run_checkpoint_async": "checkpointd.runtime.contained",
    "RunnerStats": "checkpointd.runtime.stats",
}


# Hidden from type checkers, which see the imports above instead.
if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
