"""The daemon and the runner it is built on.

``runner`` (:class:`AsyncCheckpointRunner`), ``workerpool``
(:class:`CheckpointPool`), ``pool`` (:func:`run_checkpoints_parallel`),
``runs`` (:func:`run_checkpoint_async`), ``store`` (the SQLite journal and
history), ``app`` (:class:`Daemon`: triggers, runner, store, HTTP and metrics
wired together). Names are imported on first use, so importing one of these
modules does not import all the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from checkpointd._lazy import lazy_exports

if TYPE_CHECKING:
    from checkpointd.daemon.app import Daemon
    from checkpointd.daemon.pool import run_checkpoints_parallel
    from checkpointd.daemon.runner import AsyncCheckpointRunner
    from checkpointd.daemon.runner_config import AsyncRunnerConfig
    from checkpointd.daemon.runs import run_checkpoint_async
    from checkpointd.daemon.stats import RunnerStats
    from checkpointd.daemon.store import Store
    from checkpointd.daemon.workerpool import CheckpointPool

__all__ = [
    "AsyncCheckpointRunner",
    "AsyncRunnerConfig",
    "CheckpointPool",
    "Daemon",
    "RunnerStats",
    "Store",
    "run_checkpoint_async",
    "run_checkpoints_parallel",
]

_LAZY: dict[str, str] = {
    "Daemon": "checkpointd.daemon.app",
    "run_checkpoints_parallel": "checkpointd.daemon.pool",
    "AsyncCheckpointRunner": "checkpointd.daemon.runner",
    "AsyncRunnerConfig": "checkpointd.daemon.runner_config",
    "run_checkpoint_async": "checkpointd.daemon.runs",
    "RunnerStats": "checkpointd.daemon.stats",
    "Store": "checkpointd.daemon.store",
    "CheckpointPool": "checkpointd.daemon.workerpool",
}


# Hidden from type checkers, which see the imports above instead: a typo in
# `from checkpointd import Chekpoint` is then a type error, not Any.
if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
