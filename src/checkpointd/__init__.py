"""checkpointd: a daemon that keeps data honest, and the library it is built from.

Everything a program needs is importable from here::

    from checkpointd import Checkpoint, AsyncCheckpointRunner, run_async_in_sync

Running checkpoints: :class:`Checkpoint`, :class:`AsyncCheckpointRunner` with
:class:`AsyncRunnerConfig`, :class:`CheckpointPool`, :func:`run_checkpoint_async`,
:func:`run_checkpoints_parallel`. Results: :class:`CheckpointResult`, :class:`Status`,
:class:`ValidatorResult`, :class:`TriggerInfo`. Plug-ins: :class:`TriggerSource`
(with ``protocols.Emit``, :class:`ManagedSource`; a polled :class:`AsyncBaseTrigger` runs
as a :class:`PolledSource`) and :class:`TriggerEvent`; :class:`Channel` (with :class:`Delivery`,
:class:`DeliveryOutcome`), :class:`ChannelAction` and :class:`ActionChannel` (a channel as
an action and back); :class:`AsyncBaseAction`, :class:`SyncActionAdapter`,
:func:`adapt_to_async`, :class:`ActionResult`, :class:`ActionStatus` and the
strategies that run actions (:class:`SequentialStrategy`, :class:`ConcurrentStrategy`,
:class:`PipelineStrategy`, :class:`AsyncExecutionContext`). Async helpers:
:func:`with_retry`, :func:`with_timeout`, :func:`with_semaphore`,
:func:`run_async_in_sync`. Config: :class:`Config`, :class:`CheckpointConfig`,
:func:`load_config`. The state store: :class:`Store`, :class:`OutboxStore`. Errors:
:class:`CheckpointdError` and its subclasses.

``import checkpointd`` stays cheap (no polars, pydantic or aiohttp): a name is
imported from its module the first time it is used. The guide with an example
for each name is docs/python-api.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The errors are tiny and needed by `except` clauses, so they are imported at once.
from checkpointd.errors import (
    CheckpointdError,
    ConfigError,
    ConfigIssue,
    DataSourceError,
    DeliveryError,
    RunnerError,
    StateDirInUseError,
    StoreError,
    ValidatorError,
)

if TYPE_CHECKING:
    from checkpointd.actions.adapters import ActionChannel, ChannelAction
    from checkpointd.actions.base import (
        ActionResult,
        ActionStatus,
        AsyncBaseAction,
        SyncActionAdapter,
        adapt_to_async,
    )
    from checkpointd.actions.channel import Channel, Delivery, DeliveryOutcome
    from checkpointd.actions.strategies import (
        AsyncExecutionContext,
        ConcurrentStrategy,
        PipelineStrategy,
        SequentialStrategy,
    )
    from checkpointd.asyncutils import run_async_in_sync, with_retry, with_semaphore, with_timeout
    from checkpointd.checkpoints.checkpoint import Checkpoint
    from checkpointd.checkpoints.result import CheckpointResult, Status, ValidatorResult
    from checkpointd.config.loader import load_config
    from checkpointd.config.models import CheckpointConfig, Config
    from checkpointd.events import TriggerEvent, TriggerInfo
    from checkpointd.protocols import ManagedSource, OutboxStore, Store, TriggerSource
    from checkpointd.runtime.config import AsyncRunnerConfig
    from checkpointd.runtime.contained import run_checkpoint_async
    from checkpointd.runtime.parallel import run_checkpoints_parallel
    from checkpointd.runtime.pool import CheckpointPool
    from checkpointd.runtime.runner import AsyncCheckpointRunner
    from checkpointd.runtime.stats import RunnerStats
    from checkpointd.triggers.base import AsyncBaseTrigger
    from checkpointd.triggers.polled import PolledSource

    __version__: str

__all__ = [
    "ActionChannel",
    "ActionResult",
    "ActionStatus",
    "AsyncBaseAction",
    "AsyncBaseTrigger",
    "AsyncCheckpointRunner",
    "AsyncExecutionContext",
    "AsyncRunnerConfig",
    "Channel",
    "ChannelAction",
    "Checkpoint",
    "CheckpointConfig",
    "CheckpointPool",
    "CheckpointResult",
    "CheckpointdError",
    "ConcurrentStrategy",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "DataSourceError",
    "Delivery",
    "DeliveryError",
    "DeliveryOutcome",
    "ManagedSource",
    "OutboxStore",
    "PipelineStrategy",
    "PolledSource",
    "RunnerError",
    "RunnerStats",
    "SequentialStrategy",
    "StateDirInUseError",
    "Status",
    "Store",
    "StoreError",
    "SyncActionAdapter",
    "TriggerEvent",
    "TriggerInfo",
    "TriggerSource",
    "ValidatorError",
    "ValidatorResult",
    "__version__",
    "adapt_to_async",
    "load_config",
    "run_async_in_sync",
    "run_checkpoint_async",
    "run_checkpoints_parallel",
    "with_retry",
    "with_semaphore",
    "with_timeout",
]

# Public name -> the module that defines it, imported on first use.
_LAZY: dict[str, str] = {
    "ActionChannel": "checkpointd.actions.adapters",
    "ChannelAction": "checkpointd.actions.adapters",
    "Channel": "checkpointd.actions.channel",
    "Delivery": "checkpointd.actions.channel",
    "DeliveryOutcome": "checkpointd.actions.channel",
    "ManagedSource": "checkpointd.protocols",
    "OutboxStore": "checkpointd.protocols",
    "Store": "checkpointd.protocols",
    "TriggerSource": "checkpointd.protocols",
    "PolledSource": "checkpointd.triggers.polled",
    "ActionResult": "checkpointd.actions.base",
    "ActionStatus": "checkpointd.actions.base",
    "AsyncBaseAction": "checkpointd.actions.base",
    "SyncActionAdapter": "checkpointd.actions.base",
    "adapt_to_async": "checkpointd.actions.base",
    "AsyncExecutionContext": "checkpointd.actions.strategies",
    "ConcurrentStrategy": "checkpointd.actions.strategies",
    "PipelineStrategy": "checkpointd.actions.strategies",
    "SequentialStrategy": "checkpointd.actions.strategies",
    "run_async_in_sync": "checkpointd.asyncutils",
    "with_retry": "checkpointd.asyncutils",
    "with_semaphore": "checkpointd.asyncutils",
    "with_timeout": "checkpointd.asyncutils",
    "Checkpoint": "checkpointd.checkpoints.checkpoint",
    "CheckpointResult": "checkpointd.checkpoints.result",
    "Status": "checkpointd.checkpoints.result",
    "TriggerInfo": "checkpointd.events",
    "ValidatorResult": "checkpointd.checkpoints.result",
    "load_config": "checkpointd.config.loader",
    "CheckpointConfig": "checkpointd.config.models",
    "Config": "checkpointd.config.models",
    "run_checkpoints_parallel": "checkpointd.runtime.parallel",
    "AsyncCheckpointRunner": "checkpointd.runtime.runner",
    "AsyncRunnerConfig": "checkpointd.runtime.config",
    "run_checkpoint_async": "checkpointd.runtime.contained",
    "RunnerStats": "checkpointd.runtime.stats",
    "CheckpointPool": "checkpointd.runtime.pool",
    "AsyncBaseTrigger": "checkpointd.triggers.base",
    "TriggerEvent": "checkpointd.events",
}


# Hidden from type checkers, which see the imports above instead: a typo in
# `from checkpointd import Chekpoint` is then a type error, not Any.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        if name == "__version__":
            from importlib.metadata import PackageNotFoundError, version

            try:
                found = version("checkpointd")
            except PackageNotFoundError:  # running from a source tree that was never installed
                found = "0+unknown"
            globals()[name] = found
            return found
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups skip this function
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
