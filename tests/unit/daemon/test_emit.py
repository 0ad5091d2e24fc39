"""What the daemon answers a trigger that hands it an event it cannot take.

``False`` from emit means "a duplicate, already journaled": the trigger then acknowledges
its source (marks a file seen, commits a Kafka offset). An event the daemon did not
journal must therefore never get False.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from checkpointd.config.loader import parse_config
from checkpointd.daemon.app import Daemon
from checkpointd.errors import RunnerError
from checkpointd.events import TriggerEvent

CONFIG = """
daemon: {state_dir: ./state}
checkpoints:
  - name: known
    data_source: {type: inline, rows: [{id: 1}]}
    validators: [{type: not_null, columns: [id]}]
"""


def _event(checkpoint: str | None) -> TriggerEvent:
    return TriggerEvent(
        type="manual",
        key="manual:1",
        checkpoint=checkpoint,
        fired_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


@pytest.fixture
def daemon(tmp_path) -> Daemon:
    return Daemon(parse_config(CONFIG, base_dir=tmp_path), registry=CollectorRegistry())


async def test_a_stopping_daemon_refuses_an_event_with_an_error_not_a_duplicate(daemon):
    daemon.handle_exit()
    with pytest.raises(RunnerError, match="stopping"):
        await daemon._emit(_event("known"))


async def test_an_event_for_an_unknown_checkpoint_is_an_error_not_a_duplicate(daemon):
    daemon.should_exit = False
    daemon.runner = object()  # type: ignore[assignment]  # started far enough to take events
    with pytest.raises(RunnerError, match="no checkpoint 'gone'"):
        await daemon._emit(_event("gone"))
