"""notify_on and the recovered form: when an action fires, as a table."""

from __future__ import annotations

import pytest

from checkpointd.actions.notify import decide, is_verdict, matches
from checkpointd.checkpoints.result import Status

S, W, F, E, T = Status.SUCCESS, Status.WARNING, Status.FAILURE, Status.ERROR, Status.TIMEOUT


@pytest.mark.parametrize(
    ("notify_on", "selected"),
    [
        ("always", {S, W, F, E, T}),
        ("success", {S}),
        ("warning", {W}),
        ("failure", {F}),
        ("error", {E, T}),
        ("failure_or_error", {F, E, T}),
        ("not_success", {W, F, E, T}),
        ("status_change", set()),
    ],
)
def test_each_notify_on_selects_its_statuses(notify_on, selected):
    assert {s for s in (S, W, F, E, T) if matches(notify_on, s)} == selected


@pytest.mark.parametrize("status", [Status.SKIPPED, Status.CANCELLED])
@pytest.mark.parametrize("notify_on", ["always", "status_change", "not_success"])
def test_skipped_and_cancelled_runs_never_notify(notify_on, status):
    assert not is_verdict(status)
    assert decide(notify_on, status, Status.FAILURE, send_recovery=True) is None


@pytest.mark.parametrize(
    ("previous", "status", "expected"),
    [
        (None, S, "notify"),  # the first run is a change
        (None, F, "notify"),
        (S, S, None),
        (F, F, None),
        (S, F, "notify"),
        (F, E, "notify"),
        (F, W, "notify"),
        (F, S, "recovered"),
        (W, S, "recovered"),
        (T, S, "recovered"),
    ],
)
def test_status_change_fires_only_on_transitions(previous, status, expected):
    assert decide("status_change", status, previous) == expected


@pytest.mark.parametrize(
    ("notify_on", "previous", "status", "send_recovery", "expected"),
    [
        ("failure_or_error", F, S, True, "recovered"),  # PagerDuty resolves
        ("failure_or_error", F, S, False, None),  # a plain webhook stays quiet
        ("failure_or_error", S, S, True, None),  # nothing to recover from
        ("failure_or_error", W, S, True, None),  # warning was never reported
        ("failure_or_error", None, S, True, None),
        ("failure", E, S, True, None),  # error was not this action's business
        ("always", F, S, True, "recovered"),
        ("always", F, S, False, "notify"),
        ("failure_or_error", S, F, True, "notify"),
    ],
)
def test_send_recovery_reports_the_end_of_what_the_action_reported(
    notify_on, previous, status, send_recovery, expected
):
    assert decide(notify_on, status, previous, send_recovery=send_recovery) == expected
