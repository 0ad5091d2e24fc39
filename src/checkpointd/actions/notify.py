"""When an action fires: ``notify_on`` and the "recovered" form, as pure functions.

A run's status is a *verdict* on the data unless it is ``skipped`` (the run
never started, e.g. an overlap) or ``cancelled`` (a shutdown cut it short;
the daemon re-runs it on the next start). Those two never notify and never
count as "the previous status": they say nothing about the data.

``notify_on`` values (``timeout`` counts as an ``error``)::

    always            every verdict
    success           success
    warning           warning
    failure           failure
    error             error, timeout
    failure_or_error  failure, error, timeout
    not_success       warning, failure, error, timeout
    status_change     the status differs from the checkpoint's previous verdict
                      (the first run counts as a change)

Returning to ``success`` after another status is sent in the *recovered*
form: always under ``status_change``, and under any other ``notify_on`` when
the action has ``send_recovery`` (PagerDuty's default, so incidents resolve)
and the previous status was one the action reported.
"""

from __future__ import annotations

from typing import Final

from checkpointd.actions.channel import NotificationKind
from checkpointd.checkpoints.result import Status
from checkpointd.config.models import NotifyOn

__all__ = ["NOT_VERDICTS", "decide", "is_verdict", "matches"]

NOT_VERDICTS: Final = frozenset({Status.SKIPPED, Status.CANCELLED})
"""Statuses that neither notify nor become a checkpoint's previous status."""

_SELECTS: Final[dict[str, frozenset[Status]]] = {
    "always": frozenset({Status.SUCCESS, Status.WARNING, Status.FAILURE, Status.ERROR,
                         Status.TIMEOUT}),
    "success": frozenset({Status.SUCCESS}),
    "warning": frozenset({Status.WARNING}),
    "failure": frozenset({Status.FAILURE}),
    "error": frozenset({Status.ERROR, Status.TIMEOUT}),
    "failure_or_error": frozenset({Status.FAILURE, Status.ERROR, Status.TIMEOUT}),
    "not_success": frozenset({Status.WARNING, Status.FAILURE, Status.ERROR, Status.TIMEOUT}),
}  # fmt: skip


def is_verdict(status: Status) -> bool:
    """Whether ``status`` says something about the data (not skipped, not cancelled)."""
    return status not in NOT_VERDICTS


def matches(notify_on: NotifyOn, status: Status) -> bool:
    """Whether ``notify_on`` selects ``status`` by itself (``status_change`` selects none)."""
    return status in _SELECTS.get(notify_on, frozenset())


def decide(
    notify_on: NotifyOn,
    status: Status,
    previous: Status | None,
    *,
    send_recovery: bool = False,
) -> NotificationKind | None:
    """Whether an action fires for a run of ``status`` after ``previous``, and in which form.

    ``previous`` is the checkpoint's last verdict before this run (None for
    its first). Returns ``"notify"``, ``"recovered"`` or None (no delivery).
    """
    if not is_verdict(status):
        return None
    recovered = status is Status.SUCCESS and previous is not None and previous != status
    if notify_on == "status_change":
        if previous == status:
            return None
        return "recovered" if recovered else "notify"
    if matches(notify_on, status):
        return "recovered" if recovered and send_recovery else "notify"
    if send_recovery and recovered and previous is not None and matches(notify_on, previous):
        return "recovered"
    return None
