"""A result's ``trigger``: what fired the run, never overwritten by what the event carried."""

from __future__ import annotations

from datetime import UTC, datetime

from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.events import TriggerInfo

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _result(trigger: TriggerInfo) -> CheckpointResult:
    return CheckpointResult(
        run_id="r1",
        checkpoint="cp",
        status=Status.SUCCESS,
        started_at=AT,
        finished_at=AT,
        trigger=trigger,
    )


def test_params_named_type_or_key_do_not_replace_the_triggers_own():
    # A Kafka message {"type": "order"} with message key "customer-7".
    info = TriggerInfo(
        "kafka", "kafka:orders:0:41", {"type": "order", "key": "customer-7", "x": "1"}
    )

    assert info.to_dict() == {"type": "kafka", "key": "kafka:orders:0:41", "x": "1"}


def test_the_trigger_survives_a_round_trip_through_the_stored_json():
    info = TriggerInfo("kafka", "kafka:orders:0:41", {"key": "customer-7", "path": "/d/a.csv"})

    back = CheckpointResult.from_dict(_result(info).to_dict()).trigger

    assert back is not None
    assert (back.type, back.key) == ("kafka", "kafka:orders:0:41")
    assert dict(back.params) == {"path": "/d/a.csv"}
