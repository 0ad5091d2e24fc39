"""asyncutils: the backoff schedule, the decorators, and the sync entry point."""

from __future__ import annotations

import asyncio
import contextvars
import random
import threading

import pytest

from checkpointd.asyncutils import (
    backoff_delay,
    backoff_delays,
    run_async_in_sync,
    with_retry,
    with_semaphore,
    with_timeout,
)

# ---------------------------------------------------------------- backoff


@pytest.mark.parametrize(
    ("attempt", "delay", "backoff", "max_delay", "expected"),
    [
        (1, 1.0, 2.0, None, 1.0),
        (2, 1.0, 2.0, None, 2.0),
        (3, 1.0, 2.0, None, 4.0),
        (4, 0.5, 3.0, None, 13.5),
        (5, 1.0, 1.0, None, 1.0),  # constant
        (6, 1.0, 2.0, 10.0, 10.0),  # capped
        (4, 1.0, 2.0, 8.0, 8.0),  # exactly at the cap
        (3, 0.0, 2.0, None, 0.0),
        (5000, 1.0, 2.0, 60.0, 60.0),  # 2**4999 overflows a float; the cap still holds
    ],
)
def test_backoff_delay_without_jitter(
    attempt: int, delay: float, backoff: float, max_delay: float | None, expected: float
) -> None:
    assert backoff_delay(attempt, delay, backoff, max_delay) == expected


def test_backoff_without_a_cap_overflows_to_infinity() -> None:
    assert backoff_delay(5000, 1.0, 2.0) == float("inf")
    assert backoff_delay(5000, 1.0, 2.0, jitter=True) == float("inf")


@pytest.mark.parametrize("attempt", [1, 2, 3, 7])
def test_full_jitter_draws_uniformly_below_the_plain_delay(attempt: int) -> None:
    plain = backoff_delay(attempt, 0.5, 2.0, 5.0)
    expected = random.Random(42).uniform(0.0, plain)
    assert backoff_delay(attempt, 0.5, 2.0, 5.0, jitter=True, rng=random.Random(42)) == expected
    rng = random.Random(7)
    draws = [backoff_delay(attempt, 0.5, 2.0, 5.0, jitter=True, rng=rng) for _ in range(200)]
    assert all(0.0 <= d <= plain for d in draws)
    assert len(set(draws)) > 150  # really random, not a constant


def test_backoff_delays_is_the_whole_schedule() -> None:
    assert backoff_delays(5, 1.0, 2.0, 6.0) == [1.0, 2.0, 4.0, 6.0, 6.0]
    assert backoff_delays(0, 1.0) == []
    jittered = backoff_delays(3, 1.0, 2.0, jitter=True, rng=random.Random(1))
    rng = random.Random(1)
    assert jittered == [rng.uniform(0, 1.0), rng.uniform(0, 2.0), rng.uniform(0, 4.0)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attempt": 0, "delay": 1.0}, "attempt"),
        ({"attempt": 1, "delay": -1.0}, "delay"),
        ({"attempt": 1, "delay": 1.0, "backoff": 0.5}, "backoff"),
        ({"attempt": 1, "delay": 1.0, "max_delay": -2.0}, "max_delay"),
    ],
)
def test_backoff_refuses_nonsense(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        backoff_delay(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_retries"):
        backoff_delays(-1, 1.0)


# ---------------------------------------------------------------- with_retry


class Flaky:
    """Fails ``failures`` times with ``error``, then returns the number of calls."""

    def __init__(self, failures: int, error: type[BaseException] = ConnectionError) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self, value: str) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"failure {self.calls}")
        return f"{value}:{self.calls}"


class Recorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.retries: list[tuple[int, str, float]] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def on_retry(self, attempt: int, error: BaseException, delay: float) -> None:
        self.retries.append((attempt, str(error), delay))


async def test_with_retry_retries_until_success_and_counts_each_retry() -> None:
    flaky, rec = Flaky(2), Recorder()
    call = with_retry(3, 0.5, 2.0, sleep=rec.sleep, on_retry=rec.on_retry)(flaky)
    assert await call("x") == "x:3"
    assert flaky.calls == 3
    assert rec.retries == [(1, "failure 1", 0.5), (2, "failure 2", 1.0)]
    assert rec.sleeps == [0.5, 1.0]


async def test_with_retry_raises_the_last_error_when_retries_run_out() -> None:
    flaky, rec = Flaky(10), Recorder()
    call = with_retry(2, 1.0, 3.0, max_delay=2.0, sleep=rec.sleep)(flaky)
    with pytest.raises(ConnectionError, match="failure 3"):
        await call("x")
    assert flaky.calls == 3  # the first try and two retries
    assert rec.sleeps == backoff_delays(2, 1.0, 3.0, 2.0)


async def test_with_retry_jitter_uses_the_injected_rng() -> None:
    rec = Recorder()
    call = with_retry(2, 1.0, jitter=True, rng=random.Random(3), sleep=rec.sleep)(Flaky(2))
    await call("x")
    assert rec.sleeps == backoff_delays(2, 1.0, jitter=True, rng=random.Random(3))


async def test_with_retry_leaves_other_errors_alone() -> None:
    flaky, rec = Flaky(1, error=KeyError), Recorder()
    call = with_retry(5, retry_on=(ConnectionError,), sleep=rec.sleep)(flaky)
    with pytest.raises(KeyError):
        await call("x")
    assert flaky.calls == 1
    assert rec.sleeps == []


async def test_with_retry_never_retries_cancellation() -> None:
    flaky, rec = Flaky(1, error=asyncio.CancelledError), Recorder()
    call = with_retry(5, retry_on=(BaseException,), sleep=rec.sleep)(flaky)
    with pytest.raises(asyncio.CancelledError):
        await call("x")
    assert flaky.calls == 1


async def test_with_retry_really_sleeps_by_default() -> None:
    call = with_retry(1, 0.01)(Flaky(1))
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await call("x") == "x:2"
    assert loop.time() - started >= 0.01


def test_with_retry_checks_its_settings_when_decorating() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        with_retry(-1)
    with pytest.raises(ValueError, match="backoff"):
        with_retry(2, 1.0, 0.1)
    with pytest.raises(TypeError, match="retry_on"):
        with_retry(2, retry_on=ValueError)  # type: ignore[arg-type]


async def test_decorators_keep_the_function_name_and_docs() -> None:
    async def fetch(url: str) -> str:
        """Fetch it."""
        return url

    for decorated in (
        with_retry(1)(fetch),
        with_timeout(1)(fetch),
        with_semaphore(asyncio.Semaphore())(fetch),
    ):
        assert (decorated.__name__, decorated.__doc__) == ("fetch", "Fetch it.")
        assert await decorated("u") == "u"


# ---------------------------------------------------------------- with_timeout


async def test_with_timeout_cancels_a_slow_call_and_raises_timeout_error() -> None:
    cancelled = []

    @with_timeout(0.02)
    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with pytest.raises(TimeoutError):
        await slow()
    assert cancelled == [True]


async def test_with_timeout_lets_a_quick_call_through() -> None:
    @with_timeout(1.0)
    async def quick(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    assert await quick(21) == 42
    assert await with_timeout(None)(quick)(1) == 2
    with pytest.raises(ValueError, match="positive"):
        with_timeout(0)


# ---------------------------------------------------------------- with_semaphore


async def test_with_semaphore_caps_concurrent_calls() -> None:
    current = peak = 0

    @with_semaphore(asyncio.Semaphore(2))
    async def work() -> None:
        nonlocal current, peak
        current += 1
        peak = max(peak, current)
        await asyncio.sleep(0.01)
        current -= 1

    await asyncio.gather(*(work() for _ in range(7)))
    assert peak == 2


# ---------------------------------------------------------------- run_async_in_sync

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


async def where(tag: str) -> tuple[str, int, str]:
    loop = asyncio.get_running_loop()
    return tag, id(loop), threading.current_thread().name


async def explode() -> None:
    raise LookupError("from inside")


def test_from_sync_code_it_runs_on_a_fresh_loop_in_this_thread() -> None:
    tag, _loop, thread = run_async_in_sync(where, "plain")
    assert (tag, thread) == ("plain", threading.current_thread().name)
    assert run_async_in_sync(where("coro"))[0] == "coro"


def test_from_sync_code_errors_propagate() -> None:
    with pytest.raises(LookupError, match="from inside"):
        run_async_in_sync(explode)


async def test_inside_a_running_loop_it_runs_on_another_loop_in_a_helper_thread() -> None:
    here = id(asyncio.get_running_loop())
    tag, loop_id, thread = run_async_in_sync(where, "nested")
    assert tag == "nested"
    assert loop_id != here
    assert thread == "checkpointd-run-async-in-sync"
    assert run_async_in_sync(where("coro"))[0] == "coro"


async def test_inside_a_running_loop_errors_propagate_and_context_follows() -> None:
    with pytest.raises(LookupError, match="from inside"):
        run_async_in_sync(explode)

    async def read() -> str:
        return REQUEST_ID.get()

    token = REQUEST_ID.set("req-7")
    try:
        assert run_async_in_sync(read) == "req-7"
    finally:
        REQUEST_ID.reset(token)


async def test_run_async_in_sync_refuses_what_it_cannot_run() -> None:
    future = asyncio.get_running_loop().create_future()
    with pytest.raises(TypeError, match="not a future"):
        run_async_in_sync(future)
    coro = where("x")
    with pytest.raises(TypeError, match="only be passed with an async function"):
        run_async_in_sync(coro, 1)  # type: ignore[call-overload]
    coro.close()
    with pytest.raises(TypeError, match="expected an async function"):
        run_async_in_sync(42)  # type: ignore[call-overload]
