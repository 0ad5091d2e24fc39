"""Checkpoints: a data source, its validators, the run itself and the result it returns.

``Checkpoint`` (in ``checkpoint``) runs; ``CheckpointResult``, ``Status``,
``ValidatorResult`` and ``TriggerInfo`` (in ``result``) describe what happened.
Names are imported on first use, so ``checkpointd.checkpoints.result`` can be
imported without polars.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from checkpointd._lazy import lazy_exports

if TYPE_CHECKING:
    from checkpointd.checkpoints.checkpoint import Checkpoint
    from checkpointd.checkpoints.result import (
        CheckpointResult,
        Status,
        ValidatorResult,
        overall_status,
    )
    from checkpointd.events import TriggerInfo

__all__ = [
    "Checkpoint",
    "CheckpointResult",
    "Status",
    "TriggerInfo",
    "ValidatorResult",
    "overall_status",
]

_LAZY: dict[str, str] = {
    "Checkpoint": "checkpointd.checkpoints.checkpoint",
    "CheckpointResult": "checkpointd.checkpoints.result",
    "Status": "checkpointd.checkpoints.result",
    "TriggerInfo": "checkpointd.events",
    "ValidatorResult": "checkpointd.checkpoints.result",
    "overall_status": "checkpointd.checkpoints.result",
}


# Hidden from type checkers, which see the imports above instead: a typo in
# `from checkpointd import Chekpoint` is then a type error, not Any.
if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
