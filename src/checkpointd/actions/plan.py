"""Which deliveries a result creates, and in which order they may go: pure.

The outbox row is the unit of durability; the checkpoint's ``strategy``
decides order through *stages* (the same strategy classes as the Python API,
see ``ExecutionStrategy.stages_for``):

- ``concurrent``: every action is stage 0: all deliveries are eligible at once
  (``max_concurrency`` caps how many of one run are in flight);
- ``sequential``: action *i* is stage *i*;
- ``pipeline``: an action's stage is the index of its stage in ``stages``.

A delivery is eligible once no delivery of the same run in an earlier stage
is still pending, i.e. each earlier one is delivered *or dead*: a receiver
that is down delays the later stages by its retries, never forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from checkpointd.actions.channel import NotificationKind
from checkpointd.actions.notify import decide
from checkpointd.actions.strategies import make_strategy
from checkpointd.checkpoints.result import Status
from checkpointd.config.models import ActionConfig, CheckpointConfig, NotifyOn

__all__ = ["ActionSpec", "Planned", "action_name", "action_specs", "plan"]


def action_name(checkpoint: str, index: int, action: ActionConfig) -> str:
    """The action's ``name``, else ``<checkpoint>.<type>[<index>]`` (a bounded metric label)."""
    return action.name or f"{checkpoint}.{action.type}[{index}]"


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One configured action as the outbox sees it."""

    checkpoint: str
    index: int
    name: str
    action_type: str
    stage: int
    notify_on: NotifyOn
    send_recovery: bool


@dataclass(frozen=True, slots=True)
class Planned:
    """A delivery to write: which action, in which form."""

    spec: ActionSpec
    kind: NotificationKind


def action_specs(checkpoint: CheckpointConfig) -> list[ActionSpec]:
    """The checkpoint's actions, each with its name and stage."""
    actions = checkpoint.actions
    strategy = make_strategy(
        actions.strategy, max_concurrency=actions.max_concurrency, stages=actions.stages
    )
    stages = strategy.stages_for(len(actions.items))
    return [
        ActionSpec(
            checkpoint=checkpoint.name,
            index=index,
            name=action_name(checkpoint.name, index, action),
            action_type=action.type,
            stage=stages[index],
            notify_on=action.notify_on,
            send_recovery=action.send_recovery,
        )
        for index, action in enumerate(actions.items)
    ]


def plan(specs: Sequence[ActionSpec], status: Status, previous: Status | None) -> list[Planned]:
    """The deliveries a run of ``status`` creates after ``previous`` (see ``notify.decide``)."""
    planned: list[Planned] = []
    for spec in specs:
        kind = decide(spec.notify_on, status, previous, send_recovery=spec.send_recovery)
        if kind is not None:
            planned.append(Planned(spec, kind))
    return planned
