"""The action outbox, as the actions layer sees it: which deliveries a result calls for.

Deliveries are rows the store keeps (``store.model.OutboxEntry``), written in the
transaction that stores their result, so a stored result always has its deliveries
and a crash never leaves one without the other. This module decides what to write
(:func:`plan_deliveries`, pure: results and the checkpoints' last verdicts in, rows
out) and turns a stored row back into what a channel sends (:func:`delivery_of`);
the store runs the decision inside its transaction (``Store.save_results``). The
dispatcher then moves each row ``pending → delivered`` or ``pending → dead``; an
operator moves ``dead → pending`` again (``Store.outbox_requeue``).

::

    pending ──accepted──▶ delivered
       │  ▲
       │  └─ retryable failure (attempts < max_attempts): next_attempt_at later
       └──── attempts used up, or a failure retrying cannot fix ──▶ dead ──requeue──▶ pending

Nothing here holds a secret: ``destination`` is redacted, ``last_error`` is
scrubbed before it is written, ``result`` is the public result JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from checkpointd.actions.channel import Delivery
from checkpointd.actions.notify import is_verdict
from checkpointd.actions.plan import ActionSpec, plan
from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.ids import uuid7
from checkpointd.store.model import (
    DELIVERY_STATUSES,
    DeliveryPlan,
    DeliveryStatus,
    NewDelivery,
    OutboxEntry,
    dump_json,
)

__all__ = [
    "DELIVERY_STATUSES",
    "Candidate",
    "DeliveryStatus",
    "OutboxEntry",
    "delivery_of",
    "plan_deliveries",
]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A result being stored, with its checkpoint's actions (and their destinations).

    Prepared outside the transaction; :func:`plan_deliveries` decides inside it.
    """

    result: CheckpointResult
    actions: Sequence[tuple[ActionSpec, str]] = ()


def plan_deliveries(
    candidates: Sequence[Candidate],
    last: Mapping[str, Status],
    now: datetime,
    new_id: Callable[[], str] = uuid7,
) -> DeliveryPlan:
    """The deliveries ``candidates`` call for, given each checkpoint's ``last`` verdict.

    Results are taken in order, so two runs of one checkpoint in one batch compare
    against each other. Skipped and cancelled runs change nothing.
    """
    previous_of = dict(last)
    rows: list[NewDelivery] = []
    changed: dict[str, Status] = {}
    for candidate in candidates:
        result = candidate.result
        if not is_verdict(result.status):
            continue
        previous = previous_of.get(result.checkpoint)
        destinations = {spec.name: dest for spec, dest in candidate.actions}
        chosen = plan([spec for spec, _ in candidate.actions], result.status, previous)
        result_json = dump_json(result.to_dict()) if chosen else ""
        for planned in chosen:
            spec = planned.spec
            rows.append(
                NewDelivery(
                    id=new_id(),
                    run_id=result.run_id,
                    checkpoint=result.checkpoint,
                    action=spec.name,
                    action_type=spec.action_type,
                    position=spec.index,
                    stage=spec.stage,
                    kind=planned.kind,
                    previous_status=previous,
                    destination=destinations[spec.name],
                    result_json=result_json,
                )
            )
        previous_of[result.checkpoint] = changed[result.checkpoint] = result.status
    return DeliveryPlan(written_at=now, rows=rows, last_status=changed)


def delivery_of(entry: OutboxEntry) -> Delivery:
    """The next attempt of ``entry``, as a channel sees it (needs its ``result``)."""
    if entry.result is None:
        raise ValueError(f"delivery {entry.id} was read without its result")
    return Delivery(
        id=entry.id,
        run_id=entry.run_id,
        checkpoint=entry.checkpoint,
        action=entry.action,
        action_type=entry.action_type,
        kind=entry.kind,
        previous_status=entry.previous_status,
        attempt=entry.attempts + 1,
        result=entry.result,
    )
