"""RunExecutor: the run threads' limit holds, and follows the run pool when it is resized."""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError

import pytest

from checkpointd.runtime.executor import SPARE_THREADS, RunExecutor, run_threads_for

WAIT = 5.0  # a hang guard, not a speed assertion


class Gate:
    """Jobs that block until released, counting how many run at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.done = 0

    def job(self) -> str:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        self.release.wait(WAIT)
        with self._lock:
            self.running -= 1
            self.done += 1
        return threading.current_thread().name

    def wait_running(self, count: int) -> None:
        deadline = time.monotonic() + WAIT
        while self.running != count:
            assert time.monotonic() < deadline, f"{self.running} running, waited for {count}"
            time.sleep(0.005)


def settle(predicate) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.005)


@pytest.fixture
def executor():
    pool = RunExecutor(1, thread_name_prefix="test-run")
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


def test_the_limit_is_the_run_pool_plus_spare_threads():
    assert run_threads_for(4) == 4 + SPARE_THREADS
    with pytest.raises(ValueError, match="at least 1"):
        RunExecutor(0, thread_name_prefix="x")


def test_no_more_jobs_run_at_once_than_the_limit(executor):
    gate = Gate()
    futures = [executor.submit(gate.job) for _ in range(7)]
    gate.wait_running(3)
    time.sleep(0.05)  # give a wrongly started fourth thread the chance to show
    assert (gate.running, executor.thread_count) == (3, 3)
    gate.release.set()
    names = {f.result(WAIT) for f in futures}
    assert gate.most == 3
    assert gate.done == 7
    assert names <= {"test-run_0", "test-run_1", "test-run_2"}


def test_an_idle_thread_is_reused_before_a_new_one_starts(executor):
    gate = Gate()
    gate.release.set()
    for _ in range(5):
        executor.submit(gate.job).result(WAIT)
    assert executor.thread_count == 1


def test_growing_starts_threads_for_jobs_already_waiting(executor):
    gate = Gate()
    futures = [executor.submit(gate.job) for _ in range(6)]
    gate.wait_running(3)
    executor.resize(3)  # limit 5
    assert executor.max_threads == 5
    gate.wait_running(5)
    gate.release.set()
    for future in futures:
        future.result(WAIT)
    assert gate.most == 5


def test_shrinking_lets_threads_beyond_the_new_limit_exit_as_they_finish():
    pool = RunExecutor(4, thread_name_prefix="shrink")  # limit 6
    try:
        gate = Gate()
        futures = [pool.submit(gate.job) for _ in range(6)]
        gate.wait_running(6)
        pool.resize(1)  # limit 3
        gate.release.set()
        for future in futures:
            future.result(WAIT)
        settle(lambda: pool.thread_count == 3)
        later = Gate()
        more = [pool.submit(later.job) for _ in range(5)]
        later.wait_running(3)
        time.sleep(0.05)
        assert later.running == 3
        later.release.set()
        for future in more:
            future.result(WAIT)
    finally:
        pool.shutdown(wait=True)


def test_a_job_that_raises_fails_its_future_and_the_thread_goes_on(executor):
    def boom() -> None:
        raise ValueError("bad data")

    with pytest.raises(ValueError, match="bad data"):
        executor.submit(boom).result(WAIT)
    assert executor.submit(lambda: 42).result(WAIT) == 42


def test_shutdown_cancels_queued_jobs_and_refuses_new_ones():
    pool = RunExecutor(1, thread_name_prefix="stop")
    gate = Gate()
    running = [pool.submit(gate.job) for _ in range(3)]
    gate.wait_running(3)
    queued = pool.submit(gate.job)
    pool.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(CancelledError):
        queued.result(WAIT)
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(gate.job)
    gate.release.set()
    for future in running:
        future.result(WAIT)
    settle(lambda: pool.thread_count == 0)


def test_run_threads_are_daemon_threads_so_a_busy_one_never_holds_up_exit(executor):
    assert executor.submit(lambda: threading.current_thread().daemon).result(WAIT) is True
