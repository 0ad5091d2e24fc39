"""Sequential, concurrent and pipeline strategies, and the execution context."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from checkpointd.actions.base import ActionResult, ActionStatus, AsyncBaseAction
from checkpointd.actions.strategies import (
    AsyncExecutionContext,
    ConcurrentStrategy,
    PipelineStrategy,
    SequentialStrategy,
    make_strategy,
)
from checkpointd.checkpoints.result import CheckpointResult, Status

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RESULT = CheckpointResult(
    run_id="r1", checkpoint="orders", status=Status.FAILURE, started_at=T0, finished_at=T0
)


class Probe:
    """Shared instrument: the order of starts and ends, and the peak concurrency."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.current = 0
        self.peak = 0


class Step(AsyncBaseAction):
    """An action that takes ``delay`` seconds (or hangs) and ends with ``status``."""

    action_type = "step"

    def __init__(
        self,
        name: str,
        probe: Probe,
        *,
        delay: float = 0.01,
        status: ActionStatus = ActionStatus.SUCCESS,
        hang: bool = False,
    ) -> None:
        super().__init__(name)
        self.probe = probe
        self.delay = delay
        self.status = status
        self.hang = hang
        self.cancelled = False

    async def _execute_async(self, checkpoint_result: CheckpointResult) -> ActionResult:
        probe = self.probe
        probe.log.append(f"start:{self.name}")
        probe.current += 1
        probe.peak = max(probe.peak, probe.current)
        try:
            if self.hang:
                await asyncio.Event().wait()
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            probe.current -= 1
        probe.log.append(f"end:{self.name}")
        return self.make_result(self.status)


def steps(probe: Probe, count: int, **kwargs: object) -> list[Step]:
    return [Step(f"a{i}", probe, **kwargs) for i in range(count)]  # type: ignore[arg-type]


# ---------------------------------------------------------------- sequential


async def test_sequential_runs_one_at_a_time_in_list_order() -> None:
    probe = Probe()
    results = await SequentialStrategy().execute(steps(probe, 3), RESULT)
    assert probe.log == ["start:a0", "end:a0", "start:a1", "end:a1", "start:a2", "end:a2"]
    assert [r.action_name for r in results] == ["a0", "a1", "a2"]
    assert probe.peak == 1


async def test_sequential_without_cancel_runs_everything_after_a_failure() -> None:
    probe = Probe()
    actions = [Step("a", probe, status=ActionStatus.FAILURE), Step("b", probe)]
    results = await SequentialStrategy().execute(actions, RESULT)
    assert [r.status for r in results] == [ActionStatus.FAILURE, ActionStatus.SUCCESS]


async def test_sequential_cancel_on_first_error_skips_the_rest() -> None:
    probe = Probe()
    actions = [Step("a", probe), Step("b", probe, status=ActionStatus.ERROR), Step("c", probe)]
    context = AsyncExecutionContext(cancel_on_first_error=True)
    results = await SequentialStrategy().execute(actions, RESULT, context)
    assert [r.status for r in results] == [
        ActionStatus.SUCCESS,
        ActionStatus.ERROR,
        ActionStatus.SKIPPED,
    ]
    assert results[2].message.startswith("not run: 'b' ended with error")
    assert "start:c" not in probe.log


# ---------------------------------------------------------------- concurrent


async def test_concurrent_without_a_cap_runs_everything_at_once() -> None:
    probe = Probe()
    results = await ConcurrentStrategy().execute(steps(probe, 6), RESULT)
    assert probe.peak == 6
    assert len(results) == 6


async def test_concurrent_honours_max_concurrency_and_keeps_input_order() -> None:
    probe = Probe()
    actions = [Step(f"a{i}", probe, delay=0.005 * (6 - i)) for i in range(6)]
    results = await ConcurrentStrategy(max_concurrency=2).execute(actions, RESULT)
    assert probe.peak == 2
    assert [r.action_name for r in results] == [f"a{i}" for i in range(6)]


async def test_concurrent_cancel_on_first_error_cancels_the_others() -> None:
    probe = Probe()
    slow = [Step(f"slow{i}", probe, hang=True) for i in range(2)]
    failing = Step("fails", probe, status=ActionStatus.FAILURE)
    waiting = Step("waiting", probe)  # never gets a slot: the cap is 3
    context = AsyncExecutionContext(cancel_on_first_error=True)
    results = await ConcurrentStrategy(3).execute([*slow, failing, waiting], RESULT, context)
    assert [r.status for r in results] == [
        ActionStatus.SKIPPED,
        ActionStatus.SKIPPED,
        ActionStatus.FAILURE,
        ActionStatus.SKIPPED,
    ]
    assert all(s.cancelled for s in slow)
    assert "start:waiting" not in probe.log
    assert results[0].message.startswith("not run: 'fails' ended with failure")


async def test_concurrent_cancelled_from_outside_cancels_its_actions() -> None:
    probe = Probe()
    hanging = [Step(f"h{i}", probe, hang=True) for i in range(2)]
    context = AsyncExecutionContext(cancel_on_first_error=True)
    task = asyncio.create_task(ConcurrentStrategy().execute(hanging, RESULT, context))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(h.cancelled for h in hanging)


def test_concurrency_cap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        ConcurrentStrategy(0)


# ---------------------------------------------------------------- pipeline


async def test_pipeline_runs_stages_in_order_and_each_stage_at_once() -> None:
    probe = Probe()
    actions = steps(probe, 5)
    results = await PipelineStrategy([[3, 1], [0], [2, 4]]).execute(actions, RESULT)
    log = probe.log
    assert set(log[:2]) == {"start:a3", "start:a1"}  # stage 1 together
    assert log.index("start:a0") > max(log.index("end:a3"), log.index("end:a1"))
    assert min(log.index("start:a2"), log.index("start:a4")) > log.index("end:a0")
    assert probe.peak == 2
    assert [r.action_name for r in results] == ["a0", "a1", "a2", "a3", "a4"]


async def test_pipeline_cancel_on_first_error_skips_later_stages_only() -> None:
    probe = Probe()
    actions = [
        Step("a0", probe, status=ActionStatus.TIMEOUT, delay=0.0),
        Step("a1", probe, delay=0.02),
        Step("a2", probe),
    ]
    context = AsyncExecutionContext(cancel_on_first_error=True)
    results = await PipelineStrategy([[0, 1], [2]]).execute(actions, RESULT, context)
    assert [r.status for r in results] == [
        ActionStatus.TIMEOUT,
        ActionStatus.SUCCESS,  # a sibling in the failing stage finishes
        ActionStatus.SKIPPED,
    ]


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([[0], []], "stage 1 is empty"),
        ([[0, -1]], "negative"),
        ([[0, 1], [1]], "action 1 is in two stages"),
    ],
)
def test_pipeline_stages_are_checked_when_built(stages: list[list[int]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PipelineStrategy(stages)


@pytest.mark.parametrize(
    ("stages", "count", "message"),
    [
        ([[0, 1], [5]], 3, "name action 5, but there are only 3 actions"),
        ([[0], [2]], 3, "action 1 is in no pipeline stage"),
    ],
)
async def test_pipeline_stages_must_cover_the_actions(
    stages: list[list[int]], count: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await PipelineStrategy(stages).execute(steps(Probe(), count), RESULT)


# ---------------------------------------------------------------- the context


@pytest.mark.parametrize(
    "strategy",
    [SequentialStrategy(), ConcurrentStrategy(), PipelineStrategy([[0, 1]])],
    ids=["sequential", "concurrent", "pipeline"],
)
async def test_a_hanging_action_times_out_under_every_strategy(strategy: object) -> None:
    probe = Probe()
    hanging, fine = Step("hangs", probe, hang=True), Step("fine", probe)
    context = AsyncExecutionContext(timeout=0.05)
    results = await strategy.execute([hanging, fine], RESULT, context)  # type: ignore[attr-defined]
    assert [r.status for r in results] == [ActionStatus.TIMEOUT, ActionStatus.SUCCESS]
    assert results[0].message == "no result within the 0.05s action timeout"
    assert hanging.cancelled


async def test_the_context_semaphore_is_shared_across_executions() -> None:
    probe = Probe()
    context = AsyncExecutionContext(semaphore=asyncio.Semaphore(2))
    strategy = ConcurrentStrategy()
    await asyncio.gather(
        strategy.execute(steps(probe, 3), RESULT, context),
        strategy.execute(steps(probe, 3), RESULT, context),
    )
    assert probe.peak == 2


async def test_sync_actions_run_on_the_context_executor() -> None:
    threads: list[str] = []

    class SyncAction:
        name = "sync"
        action_type = "sync"

        def execute(self, checkpoint_result: CheckpointResult) -> ActionResult:
            threads.append(threading.current_thread().name)
            return ActionResult(self.name, self.action_type, ActionStatus.SUCCESS)

    executor = ThreadPoolExecutor(2, thread_name_prefix="ctx")
    async with AsyncExecutionContext(executor=executor) as context:
        results = await ConcurrentStrategy().execute([SyncAction(), SyncAction()], RESULT, context)
    assert [r.status for r in results] == [ActionStatus.SUCCESS] * 2
    assert all(name.startswith("ctx") for name in threads)
    with pytest.raises(RuntimeError, match="shutdown"):
        executor.submit(print)  # leaving `async with` shut it down


async def test_an_action_that_breaks_the_contract_still_yields_a_result() -> None:
    class Raw:
        name = "raw"
        action_type = "raw"

        async def execute_async(self, checkpoint_result: CheckpointResult) -> ActionResult:
            raise KeyError("field")

    results = await SequentialStrategy().execute([Raw()], RESULT)
    assert (results[0].status, results[0].message) == (ActionStatus.ERROR, "KeyError: 'field'")


def test_make_strategy_builds_what_the_config_names() -> None:
    assert isinstance(make_strategy("sequential"), SequentialStrategy)
    concurrent = make_strategy("concurrent", max_concurrency=4)
    assert isinstance(concurrent, ConcurrentStrategy)
    assert concurrent.max_concurrency == 4
    pipeline = make_strategy("pipeline", stages=[[1], [0]])
    assert isinstance(pipeline, PipelineStrategy)
    assert pipeline.stages == ((1,), (0,))
    with pytest.raises(ValueError, match="needs `stages`"):
        make_strategy("pipeline")
    with pytest.raises(ValueError, match="positive"):
        AsyncExecutionContext(timeout=0)
