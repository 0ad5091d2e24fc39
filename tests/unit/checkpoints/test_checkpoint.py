"""Checkpoint: one run of real data through real validators, with its policy around it.

A run never raises (its result's status says what happened) except on
cancellation; errors and timeouts are retried with backoff, validation
failures are answers and are not; one run keeps one run id over its attempts.
Waiting between attempts goes through the injected ``sleep`` and jitter
through the injected ``rng``, so nothing here sleeps for real.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from checkpointd.asyncutils import backoff_delays
from checkpointd.checkpoints import checkpoint as checkpoint_module
from checkpointd.checkpoints.checkpoint import Checkpoint
from checkpointd.checkpoints.result import Status
from checkpointd.clock import FrozenClock
from checkpointd.events import TriggerEvent

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

ROWS = [
    {"id": 1, "amount": 5.0, "status": "new"},
    {"id": 2, "amount": 7.5, "status": "paid"},
    {"id": 3, "amount": -1.0, "status": "paid"},
    {"id": None, "amount": 9.0, "status": "lost"},
]


def inline(*validators: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A checkpoint mapping over ``ROWS``, as a config file would hold it."""
    return {
        "name": "orders",
        "data_source": {"type": "inline", "rows": ROWS},
        "validators": list(validators),
        **extra,
    }


def csv_checkpoint(path: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "landing",
        "data_source": {"type": "csv", "path": path},
        "validators": [{"type": "not_null", "columns": ["id"]}],
        **extra,
    }


class Sleeps:
    """The ``sleep`` a Checkpoint awaits between attempts: records each delay, waits for none.

    ``then`` runs after each recorded delay (a test makes the next attempt succeed there).
    """

    def __init__(self, then: Callable[[], None] | None = None) -> None:
        self.delays: list[float] = []
        self._then = then

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self._then is not None:
            self._then()


class GatedExecutor(ThreadPoolExecutor):
    """Runs the real load-and-validate, but only once ``gate`` opens.

    A run on it outlasts any timeout while the gate is shut, with no
    wall-clock guessing about how slow some data is. ``entered`` is set when
    a run reaches the executor.
    """

    def __init__(self) -> None:
        super().__init__(max_workers=2, thread_name_prefix="test-gated")
        self.gate = threading.Event()
        self.entered = threading.Event()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        def gated() -> Any:
            self.entered.set()
            self.gate.wait()
            return fn(*args, **kwargs)

        return super().submit(gated)


@pytest.fixture
def gated() -> Iterator[GatedExecutor]:
    executor = GatedExecutor()
    yield executor
    executor.gate.set()  # let abandoned runs finish, so no thread outlives the test
    executor.shutdown(wait=True)


def file_event(path: Path, run_id: str | None = None) -> TriggerEvent:
    return TriggerEvent(
        type="file",
        key=f"{path}:4:1700000000",
        fired_at=NOW,
        params={"path": str(path)},
        run_id=run_id,
    )


# ---------------------------------------------------------------- status of a run


@pytest.mark.parametrize(
    ("validators", "expected"),
    [
        pytest.param(
            [
                {"type": "row_count", "min": 1},
                {"type": "in_set", "column": "id", "values": [1, 2, 3]},
            ],
            Status.SUCCESS,
            id="every validator passes",
        ),
        pytest.param(
            [
                {"type": "row_count", "min": 1},
                {"type": "range", "column": "amount", "min": 0, "severity": "warning"},
            ],
            Status.WARNING,
            id="only a warning-severity validator fails",
        ),
        pytest.param(
            [
                {"type": "range", "column": "amount", "min": 0, "severity": "warning"},
                {"type": "not_null", "columns": ["id"]},
            ],
            Status.FAILURE,
            id="an error-severity validator fails",
        ),
        pytest.param(
            [{"type": "not_null", "columns": ["id"]}, {"type": "not_null", "columns": ["sku"]}],
            Status.ERROR,
            id="a validator names a column the data lacks",
        ),
    ],
)
async def test_the_run_status_aggregates_the_validators(validators, expected):
    checkpoint = Checkpoint.from_dict(inline(*validators))

    result = await checkpoint.run_async()

    assert result.status is expected
    assert result.checkpoint == "orders"
    assert result.row_count == len(ROWS)
    assert [v.type for v in result.validators] == [v["type"] for v in validators]
    assert result.error is None  # the run itself went fine; the validators judged the data


async def test_a_missing_column_is_an_error_naming_it_while_the_other_validators_still_judge():
    checkpoint = Checkpoint.from_dict(
        inline({"type": "not_null", "columns": ["sku"]}, {"type": "not_null", "columns": ["id"]})
    )

    result = await checkpoint.run_async()

    missing, present = result.validators
    assert result.status is Status.ERROR
    assert missing.status is Status.ERROR
    assert "'sku' not found" in missing.message
    assert present.status is Status.FAILURE
    assert present.failed_count == 1


async def test_failing_validators_report_counts_and_samples():
    checkpoint = Checkpoint.from_dict(
        inline({"type": "in_set", "column": "status", "values": ["new", "paid"]})
    )

    result = await checkpoint.run_async()

    (verdict,) = result.validators
    assert result.status is Status.FAILURE
    assert (verdict.checked_count, verdict.failed_count) == (4, 1)
    assert verdict.sample == ("lost",)
    assert result.failed_validators == (verdict,)


async def test_times_come_from_the_injected_clock():
    clock = FrozenClock(NOW)
    checkpoint = Checkpoint.from_dict(inline({"type": "row_count", "min": 1}), clock=clock)

    result = await checkpoint.run_async()

    assert result.started_at == NOW
    assert result.finished_at == NOW


# ---------------------------------------------------------------- data from the trigger


async def test_the_path_of_a_file_event_fills_trigger_path(tmp_path):
    landed = tmp_path / "batch 1.csv"
    landed.write_text("id,amount\n1,5\n2,6\n")
    checkpoint = Checkpoint.from_dict(csv_checkpoint("{trigger.path}"))

    result = await checkpoint.run_async(file_event(landed))

    assert result.status is Status.SUCCESS
    assert result.row_count == 2
    assert result.trigger is not None
    assert result.trigger.to_dict() == {
        "type": "file",
        "key": f"{landed}:4:1700000000",
        "path": str(landed),
    }


async def test_a_missing_file_is_an_error_result_naming_the_path(tmp_path):
    gone = tmp_path / "never-landed.csv"
    checkpoint = Checkpoint.from_dict(csv_checkpoint(str(gone)))

    result = await checkpoint.run_async()

    assert result.status is Status.ERROR
    assert result.error is not None
    assert str(gone) in result.error
    assert result.validators == ()


async def test_a_placeholder_without_an_event_is_an_error_result_not_an_exception():
    checkpoint = Checkpoint.from_dict(csv_checkpoint("{trigger.path}"))

    result = await checkpoint.run_async()

    assert result.status is Status.ERROR
    assert result.error is not None
    assert "{trigger.path}" in result.error


async def test_an_unexpected_exception_becomes_an_error_result(monkeypatch):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("bad plug-in")

    monkeypatch.setattr(checkpoint_module, "evaluate", broken)
    checkpoint = Checkpoint.from_dict(inline({"type": "row_count", "min": 1}))

    result = await checkpoint.run_async()

    assert result.status is Status.ERROR
    assert result.error == "ZeroDivisionError: bad plug-in"


# ---------------------------------------------------------------- run ids


async def test_the_event_run_id_is_the_run_id():
    checkpoint = Checkpoint.from_dict(inline({"type": "row_count", "min": 1}))
    event = TriggerEvent(type="manual", key="m-1", fired_at=NOW, run_id="run-from-the-api")

    result = await checkpoint.run_async(event)

    assert result.run_id == "run-from-the-api"
    assert result.trigger is not None
    assert result.trigger.type == "manual"


async def test_without_an_event_each_run_gets_a_new_id():
    checkpoint = Checkpoint.from_dict(inline({"type": "row_count", "min": 1}))

    first = await checkpoint.run_async()
    second = await checkpoint.run_async()

    assert first.run_id != second.run_id
    assert first.trigger is None


async def test_one_run_keeps_one_id_over_all_its_attempts(monkeypatch, tmp_path):
    minted: list[str] = []

    def counting_uuid7() -> str:
        minted.append(f"id-{len(minted) + 1}")
        return minted[-1]

    monkeypatch.setattr(checkpoint_module, "uuid7", counting_uuid7)
    sleeps = Sleeps()
    checkpoint = Checkpoint.from_dict(
        csv_checkpoint(str(tmp_path / "absent.csv"), retries={"max_retries": 2, "jitter": False}),
        sleep=sleeps,
    )

    result = await checkpoint.run_async()

    assert result.attempt == 3
    assert minted == ["id-1"]  # minted once, before the first attempt
    assert result.run_id == "id-1"


# ---------------------------------------------------------------- retries


async def test_errors_are_retried_with_exponential_backoff_and_the_attempt_is_recorded(tmp_path):
    sleeps = Sleeps()
    retries = {"max_retries": 3, "delay": "500ms", "backoff": 2.0, "jitter": False}
    checkpoint = Checkpoint.from_dict(
        csv_checkpoint(str(tmp_path / "absent.csv"), retries=retries), sleep=sleeps
    )

    result = await checkpoint.run_async()

    assert sleeps.delays == [0.5, 1.0, 2.0]
    assert result.status is Status.ERROR
    assert result.attempt == 4


async def test_backoff_is_capped_at_max_delay(tmp_path):
    sleeps = Sleeps()
    retries = {"max_retries": 4, "delay": "1s", "backoff": 10, "max_delay": "5s", "jitter": False}
    checkpoint = Checkpoint.from_dict(
        csv_checkpoint(str(tmp_path / "absent.csv"), retries=retries), sleep=sleeps
    )

    await checkpoint.run_async()

    assert sleeps.delays == [1.0, 5.0, 5.0, 5.0]


async def test_jitter_draws_each_delay_from_the_injected_rng(tmp_path):
    sleeps = Sleeps()
    retries = {"max_retries": 3, "delay": "1s", "backoff": 2.0, "jitter": True}
    checkpoint = Checkpoint.from_dict(
        csv_checkpoint(str(tmp_path / "absent.csv"), retries=retries),
        sleep=sleeps,
        rng=random.Random(42),
    )

    await checkpoint.run_async()

    expected = backoff_delays(3, 1.0, 2.0, 60.0, jitter=True, rng=random.Random(42))
    assert sleeps.delays == expected
    assert all(0.0 <= got <= cap for got, cap in zip(sleeps.delays, [1.0, 2.0, 4.0], strict=True))


async def test_a_retry_that_finds_the_data_succeeds_on_that_attempt(tmp_path):
    late = tmp_path / "late.csv"
    sleeps = Sleeps(then=lambda: late.write_text("id\n1\n"))
    checkpoint = Checkpoint.from_dict(
        csv_checkpoint(str(late), retries={"max_retries": 3, "jitter": False}), sleep=sleeps
    )

    result = await checkpoint.run_async()

    assert result.status is Status.SUCCESS
    assert result.attempt == 2
    assert sleeps.delays == [1.0]


@pytest.mark.parametrize(
    ("status", "validator"),
    [
        ("failure", {"type": "not_null", "columns": ["id"]}),
        ("warning", {"type": "not_null", "columns": ["id"], "severity": "warning"}),
        ("success", {"type": "row_count", "min": 1}),
    ],
)
async def test_answers_about_the_data_are_never_retried(status, validator):
    sleeps = Sleeps()
    checkpoint = Checkpoint.from_dict(inline(validator, retries={"max_retries": 3}), sleep=sleeps)

    result = await checkpoint.run_async()

    assert result.status.value == status
    assert result.attempt == 1
    assert sleeps.delays == []


async def test_without_retries_an_error_is_final_at_once(tmp_path):
    sleeps = Sleeps()
    checkpoint = Checkpoint.from_dict(csv_checkpoint(str(tmp_path / "absent.csv")), sleep=sleeps)

    result = await checkpoint.run_async()

    assert result.attempt == 1
    assert sleeps.delays == []


# ---------------------------------------------------------------- timeout and cancellation


async def test_a_run_past_its_timeout_ends_with_status_timeout(gated):
    checkpoint = Checkpoint.from_dict(
        inline({"type": "row_count", "min": 1}, timeout="50ms"), executor=gated
    )

    result = await checkpoint.run_async()

    assert gated.entered.is_set()
    assert result.status is Status.TIMEOUT
    assert result.error == "run exceeded its timeout of 0.05s"
    assert result.validators == ()


async def test_a_timeout_raised_while_reading_is_an_error_not_the_run_timeout(monkeypatch):
    def stalled_read(*args: Any, **kwargs: Any) -> Any:
        raise TimeoutError("NFS server not responding")

    monkeypatch.setattr(checkpoint_module, "load_frame", stalled_read)
    checkpoint = Checkpoint.from_dict(inline({"type": "row_count", "min": 1}, timeout="30s"))

    result = await checkpoint.run_async()

    assert result.status is Status.ERROR
    assert result.error == "TimeoutError: NFS server not responding"


async def test_timeouts_are_retried_like_errors(gated):
    sleeps = Sleeps()
    checkpoint = Checkpoint.from_dict(
        inline(
            {"type": "row_count", "min": 1},
            timeout="50ms",
            retries={"max_retries": 1, "delay": "2s", "jitter": False},
        ),
        executor=gated,
        sleep=sleeps,
    )

    result = await checkpoint.run_async()

    assert result.status is Status.TIMEOUT
    assert result.attempt == 2
    assert sleeps.delays == [2.0]


async def test_the_injected_executor_runs_the_work(gated):
    gated.gate.set()
    checkpoint = Checkpoint.from_dict(
        inline({"type": "row_count", "min": 1}, timeout="30s"), executor=gated
    )

    result = await checkpoint.run_async()

    assert gated.entered.is_set()
    assert result.status is Status.SUCCESS


async def test_cancelling_a_running_attempt_raises_cancelled_error(gated):
    checkpoint = Checkpoint.from_dict(inline({"type": "row_count", "min": 1}), executor=gated)
    task = asyncio.create_task(checkpoint.run_async())
    await asyncio.to_thread(gated.entered.wait, 10)

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancelling_during_the_backoff_wait_raises_cancelled_error(tmp_path):
    waiting = asyncio.Event()

    async def forever(delay: float) -> None:
        waiting.set()
        await asyncio.Event().wait()

    checkpoint = Checkpoint.from_dict(
        csv_checkpoint(str(tmp_path / "absent.csv"), retries={"max_retries": 2}), sleep=forever
    )
    task = asyncio.create_task(checkpoint.run_async())
    await waiting.wait()

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task


# ---------------------------------------------------------------- the sync entry point


def test_run_works_from_plain_sync_code():
    checkpoint = Checkpoint.from_dict(inline({"type": "not_null", "columns": ["id"]}))

    result = checkpoint.run()

    assert result.status is Status.FAILURE


async def test_run_works_inside_a_running_event_loop(tmp_path):
    # As in a notebook cell: the caller's loop is running, and run() must not re-enter it.
    landed = tmp_path / "a.csv"
    landed.write_text("id\n1\n")
    checkpoint = Checkpoint.from_dict(csv_checkpoint("{trigger.path}"))

    result = checkpoint.run(file_event(landed, run_id="nb-1"))

    assert result.status is Status.SUCCESS
    assert result.run_id == "nb-1"


def test_from_dict_validates_like_the_config_file():
    checkpoint = Checkpoint.from_dict(inline({"type": "row_count", "min": 1}, timeout="2m"))

    assert checkpoint.name == "orders"
    assert repr(checkpoint) == "Checkpoint('orders')"
    assert checkpoint.config.timeout is not None
    assert checkpoint.config.timeout.total_seconds() == 120
