"""The daemon: the process that wires the layers below and exposes them.

``app`` (:class:`Daemon`: triggers, runner, store, HTTP and metrics wired
together), ``supervision`` (the one TaskGroup of ``serve()``), ``control`` (status
and manual runs), ``reload``, ``outcomes`` (what happens after a run is stored),
``retention``, ``http`` (the API), ``metrics`` (Prometheus), ``sdnotify``,
``looplag``, ``main`` (``checkpointd run``). The runner names are re-exported
from :mod:`checkpointd.runtime` for older imports.
Names are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from checkpointd._lazy import lazy_exports

if TYPE_CHECKING:
    from checkpointd.daemon.app import Daemon
    from checkpointd.runtime.config import AsyncRunnerConfig
    from checkpointd.runtime.contained import run_checkpoint_async
    from checkpointd.runtime.parallel import run_checkpoints_parallel
    from checkpointd.runtime.pool import CheckpointPool
    from checkpointd.runtime.runner import AsyncCheckpointRunner
    from checkpointd.runtime.stats import RunnerStats
    from checkpointd.store.sqlite.store import SqliteStore

__all__ = [
    "AsyncCheckpointRunner",
    "AsyncRunnerConfig",
    "CheckpointPool",
    "Daemon",
    "RunnerStats",
    "SqliteStore",
    "run_checkpoint_async",
    "run_checkpoints_parallel",
]

_LAZY: dict[str, str] = {
    "Daemon": "checkpointd.daemon.app",
    "run_checkpoints_parallel": "checkpointd.runtime.parallel",
    "AsyncCheckpointRunner": "checkpointd.runtime.runner",
    "AsyncRunnerConfig": "checkpointd.runtime.config",
    "run_checkpoint_async": "checkpointd.runtime.contained",
    "RunnerStats": "checkpointd.runtime.stats",
    "SqliteStore": "checkpointd.store.sqlite.store",
    "CheckpointPool": "checkpointd.runtime.pool",
}


# Hidden from type checkers, which see the imports above instead: a typo in
# `from checkpointd import Chekpoint` is then a type error, not Any.
if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
