"""Actions: what happens after a run (webhook, Slack, PagerDuty, Kafka, Python).

``base`` defines what an action is (:class:`AsyncBaseAction`, the sync
adapter, :class:`ActionResult`); ``strategies`` runs a list of them
(sequential, concurrent, pipeline). Names are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from checkpointd._lazy import lazy_exports

if TYPE_CHECKING:
    from checkpointd.actions.base import (
        ActionResult,
        ActionStatus,
        AsyncBaseAction,
        AsyncExecutable,
        SyncActionAdapter,
        SyncExecutable,
        adapt_to_async,
    )
    from checkpointd.actions.strategies import (
        AsyncExecutionContext,
        ConcurrentStrategy,
        ExecutionStrategy,
        PipelineStrategy,
        SequentialStrategy,
        make_strategy,
    )

__all__ = [
    "ActionResult",
    "ActionStatus",
    "AsyncBaseAction",
    "AsyncExecutable",
    "AsyncExecutionContext",
    "ConcurrentStrategy",
    "ExecutionStrategy",
    "PipelineStrategy",
    "SequentialStrategy",
    "SyncActionAdapter",
    "SyncExecutable",
    "adapt_to_async",
    "make_strategy",
]

_LAZY: dict[str, str] = {
    "ActionResult": "checkpointd.actions.base",
    "ActionStatus": "checkpointd.actions.base",
    "AsyncBaseAction": "checkpointd.actions.base",
    "AsyncExecutable": "checkpointd.actions.base",
    "SyncActionAdapter": "checkpointd.actions.base",
    "SyncExecutable": "checkpointd.actions.base",
    "adapt_to_async": "checkpointd.actions.base",
    "AsyncExecutionContext": "checkpointd.actions.strategies",
    "ConcurrentStrategy": "checkpointd.actions.strategies",
    "ExecutionStrategy": "checkpointd.actions.strategies",
    "PipelineStrategy": "checkpointd.actions.strategies",
    "SequentialStrategy": "checkpointd.actions.strategies",
    "make_strategy": "checkpointd.actions.strategies",
}


# Hidden from type checkers, which see the imports above instead: a typo in
# `from checkpointd import Chekpoint` is then a type error, not Any.
if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
