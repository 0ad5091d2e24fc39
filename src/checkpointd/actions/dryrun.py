"""``checkpointd actions test``: which actions would fire, and what they would send.

:func:`sample_result` makes a result of the asked status from the
checkpoint's own validators (a failing validator with counts and sample
values for failure/warning, an error message for error/timeout), so
previews look like the real thing. :func:`dry_run` decides each action with
the daemon's own rules (``notify.decide``, ``plan.action_specs``) and renders
its payload with the channel's ``preview``: secrets masked, nothing sent.
:func:`send_once` then sends the firing ones, one attempt each, when asked.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from checkpointd.actions.channel import Channel, ChannelContext, Delivery, Preview
from checkpointd.actions.notify import decide
from checkpointd.actions.plan import ActionSpec, action_specs
from checkpointd.actions.registry import build_channel
from checkpointd.checkpoints.result import CheckpointResult, Status, ValidatorResult
from checkpointd.clock import SYSTEM_CLOCK, Clock
from checkpointd.config.models import CheckpointConfig, ValidatorConfig
from checkpointd.errors import DeliveryError
from checkpointd.events import TriggerInfo
from checkpointd.ids import uuid7

__all__ = ["DryRunItem", "dry_run", "sample_result", "send_once"]

SAMPLE_VALUES = ("sample-1", "sample-2")


def _validator(v: ValidatorConfig, status: Status) -> ValidatorResult:
    column = getattr(v, "column", None)
    columns = tuple(getattr(v, "columns", None) or ())
    failing = status in (Status.FAILURE, Status.WARNING)
    return ValidatorResult(
        type=v.type,
        name=v.name,
        status=status,
        severity=v.severity,
        column=column if isinstance(column, str) else None,
        columns=columns if all(isinstance(c, str) for c in columns) else (),
        checked_count=1000,
        failed_count=3 if failing else 0,
        failed_ratio=0.003 if failing else 0.0,
        sample=SAMPLE_VALUES if failing else (),
        message="example failure from `checkpointd actions test`" if failing else "",
    )


def sample_result(
    cp: CheckpointConfig, status: Status, clock: Clock = SYSTEM_CLOCK
) -> CheckpointResult:
    """A made-up run of ``cp`` that ended with ``status``, shaped like a real one."""
    statuses = [Status.SUCCESS] * len(cp.validators)
    if status in (Status.FAILURE, Status.WARNING) and cp.validators:
        wanted = "error" if status is Status.FAILURE else "warning"
        index = next((i for i, v in enumerate(cp.validators) if v.severity == wanted), 0)
        statuses[index] = Status.FAILURE if cp.validators[index].severity == wanted else status
    error = None
    if status in (Status.ERROR, Status.TIMEOUT):
        error = f"example {status.value} from `checkpointd actions test`"
    finished = clock.now()
    return CheckpointResult(
        run_id=uuid7(),
        checkpoint=cp.name,
        status=status,
        started_at=finished - timedelta(seconds=0.42),
        finished_at=finished,
        trigger=TriggerInfo(type="manual", key="actions-test"),
        validators=tuple(_validator(v, s) for v, s in zip(cp.validators, statuses, strict=True)),
        error=error,
        row_count=1000,
    )


@dataclass(frozen=True, slots=True)
class DryRunItem:
    """One action's verdict for the sample result."""

    spec: ActionSpec
    channel: Channel
    delivery: Delivery | None
    """None when the action would not fire."""
    preview: Preview | None
    problem: str | None = None
    """Why the payload cannot be rendered (a broken template, an unloadable channel)."""

    @property
    def fires(self) -> bool:
        return self.delivery is not None


def dry_run(
    cp: CheckpointConfig,
    status: Status,
    previous: Status | None,
    context: ChannelContext,
    clock: Clock = SYSTEM_CLOCK,
) -> list[DryRunItem]:
    """Decide and render every action of ``cp`` for a run of ``status`` after ``previous``."""
    result = sample_result(cp, status, clock)
    items: list[DryRunItem] = []
    for spec, action in zip(action_specs(cp), cp.actions.items, strict=True):
        channel = build_channel(action, context, spec.name)
        kind = decide(spec.notify_on, status, previous, send_recovery=spec.send_recovery)
        if kind is None:
            items.append(DryRunItem(spec, channel, None, None))
            continue
        delivery = Delivery(
            id=uuid7(),
            run_id=result.run_id,
            checkpoint=cp.name,
            action=spec.name,
            action_type=spec.action_type,
            kind=kind,
            previous_status=previous,
            attempt=1,
            result=result,
        )
        try:
            preview = channel.preview(delivery)
        except DeliveryError as exc:
            items.append(DryRunItem(spec, channel, delivery, None, str(exc)))
            continue
        items.append(DryRunItem(spec, channel, delivery, preview))
    return items


async def send_once(item: DryRunItem, seconds: float) -> str | None:
    """Send one firing item (one attempt); None when accepted, else why not (secret-free)."""
    assert item.delivery is not None
    try:
        async with asyncio.timeout(seconds):
            await item.channel.send(item.delivery)
    except DeliveryError as exc:
        return str(exc)
    except TimeoutError:
        return f"no result within {seconds:g}s"
    except Exception as exc:  # user code in a python action
        return f"{type(exc).__name__}: {exc}"
    return None
