"""Small async building blocks shared by runs, actions and triggers.

- :func:`backoff_delay` / :func:`backoff_delays`: the one retry schedule
  (exponential, capped, optional full jitter) every retry in checkpointd uses.
  Pure: values in, values out, randomness injected.
- :func:`with_retry`, :func:`with_timeout`, :func:`with_semaphore`:
  decorators for ``async def`` functions that keep their signatures.
- :func:`run_async_in_sync`: the sync entry point. From plain code it is
  ``asyncio.run``; inside a running loop (a notebook, a sync callback called
  from async code) it runs the coroutine on a fresh loop in a helper thread
  and waits, because a loop cannot be re-entered.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import math
import random
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, cast, overload

__all__ = [
    "backoff_delay",
    "backoff_delays",
    "run_async_in_sync",
    "with_retry",
    "with_semaphore",
    "with_timeout",
]

P = ParamSpec("P")
T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]
OnRetry = Callable[[int, BaseException, float], None]


def backoff_delay(
    attempt: int,
    delay: float,
    backoff: float = 2.0,
    max_delay: float | None = None,
    jitter: bool = False,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1 is the first retry).

    The delay is ``delay * backoff ** (attempt - 1)``, capped at ``max_delay``.
    With ``jitter`` it is drawn uniformly from ``[0, that]`` ("full jitter"):
    many clients failing together then retry spread out instead of in waves.
    ``rng`` makes the draw reproducible in tests.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts retries from 1, found {attempt}")
    if delay < 0:
        raise ValueError(f"delay cannot be negative, found {delay}")
    if backoff < 1:
        raise ValueError(f"backoff must be at least 1 (delays never shrink), found {backoff}")
    if max_delay is not None and max_delay < 0:
        raise ValueError(f"max_delay cannot be negative, found {max_delay}")
    try:
        base = delay * backoff ** (attempt - 1)
    except OverflowError:  # e.g. 2.0 ** 5000: the cap below is what matters
        base = math.inf
    if max_delay is not None:
        base = min(base, max_delay)
    if not jitter or base == 0 or math.isinf(base):
        return base
    return (rng or random).uniform(0.0, base)


def backoff_delays(
    max_retries: int,
    delay: float,
    backoff: float = 2.0,
    max_delay: float | None = None,
    jitter: bool = False,
    rng: random.Random | None = None,
) -> list[float]:
    """The whole schedule: the wait before each of ``max_retries`` retries."""
    if max_retries < 0:
        raise ValueError(f"max_retries cannot be negative, found {max_retries}")
    return [
        backoff_delay(attempt, delay, backoff, max_delay, jitter, rng)
        for attempt in range(1, max_retries + 1)
    ]


def with_retry(
    max_retries: int,
    delay: float = 1.0,
    backoff: float = 2.0,
    *,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    jitter: bool = False,
    max_delay: float | None = None,
    rng: random.Random | None = None,
    on_retry: OnRetry | None = None,
    sleep: Sleep | None = None,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """Retry an async function up to ``max_retries`` times on ``retry_on`` errors.

    The waits follow :func:`backoff_delay`. ``on_retry(attempt, error, delay)``
    is called before each wait (count or log retries there); ``sleep``
    replaces ``asyncio.sleep`` so tests need not wait. Cancellation is never
    retried. When the retries are used up, the last error is raised.
    """
    if max_retries < 0:
        raise ValueError(f"max_retries cannot be negative, found {max_retries}")
    # Fail at decoration time, not on the first failure in production.
    backoff_delays(max_retries, delay, backoff, max_delay)
    if not isinstance(retry_on, tuple) or not all(
        isinstance(t, type) and issubclass(t, BaseException) for t in retry_on
    ):
        raise TypeError(f"retry_on must be a tuple of exception types, found {retry_on!r}")

    def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(fn)
        async def retrying(*args: P.args, **kwargs: P.kwargs) -> T:
            pause = asyncio.sleep if sleep is None else sleep
            attempt = 0
            while True:
                try:
                    return await fn(*args, **kwargs)
                except asyncio.CancelledError:
                    raise
                except retry_on as exc:
                    attempt += 1
                    if attempt > max_retries:
                        raise
                    wait = backoff_delay(attempt, delay, backoff, max_delay, jitter, rng)
                    if on_retry is not None:
                        on_retry(attempt, exc, wait)
                    await pause(wait)

        return retrying

    return decorate


def with_timeout(
    seconds: float | None,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """Give up on an async function after ``seconds``: it is cancelled and
    ``TimeoutError`` is raised. ``None`` means no limit."""
    if seconds is not None and seconds <= 0:
        raise ValueError(f"a timeout must be positive seconds or None, found {seconds}")

    def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(fn)
        async def limited(*args: P.args, **kwargs: P.kwargs) -> T:
            async with asyncio.timeout(seconds):
                return await fn(*args, **kwargs)

        return limited

    return decorate


def with_semaphore(
    semaphore: asyncio.Semaphore,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """Run an async function only while holding ``semaphore``: share one
    semaphore between functions to cap how many run at once."""

    def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(fn)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            async with semaphore:
                return await fn(*args, **kwargs)

        return guarded

    return decorate


@overload
def run_async_in_sync(fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T: ...


@overload
def run_async_in_sync(fn: Awaitable[T], /) -> T: ...


def run_async_in_sync(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
    """Run async code from sync code and return its result (or raise its error).

    ``fn`` is an async function (called with ``args``/``kwargs``) or a
    coroutine. Without a running event loop this is ``asyncio.run``. With one
    (a Jupyter cell, a sync callback inside async code) the work runs on a new
    loop in a helper thread while the calling thread waits: the caller's loop
    is blocked meanwhile, so the work must not need it. Context variables are
    carried into the helper thread.

    Futures and tasks are refused: they belong to a loop and cannot be run on
    another one.
    """
    if asyncio.isfuture(fn):
        raise TypeError("run_async_in_sync needs a coroutine or an async function, not a future")
    if inspect.isawaitable(fn):
        if args or kwargs:
            raise TypeError("arguments can only be passed with an async function, not a coroutine")
        awaitable: Awaitable[Any] = fn

        def make() -> Coroutine[Any, Any, Any]:
            return _as_coroutine(awaitable)

    elif callable(fn):

        def make() -> Coroutine[Any, Any, Any]:
            return _as_coroutine(fn(*args, **kwargs))

    else:
        raise TypeError(f"expected an async function or a coroutine, found {type(fn).__name__}")

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    return _run_in_thread(make)


def _as_coroutine(awaitable: Awaitable[T]) -> Coroutine[Any, Any, T]:
    if inspect.iscoroutine(awaitable):
        return awaitable
    if not inspect.isawaitable(awaitable):
        raise TypeError(f"expected an awaitable, the function returned {type(awaitable).__name__}")

    async def wait() -> T:
        return await awaitable

    return wait()


def _run_in_thread(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    context = contextvars.copy_context()
    outcome: dict[str, Any] = {}

    def target() -> None:
        # The coroutine is created in the helper thread, so anything it builds
        # at call time binds to the helper's loop, not the blocked caller's.
        try:
            outcome["value"] = context.run(lambda: asyncio.run(make()))
        except BaseException as exc:  # handed to the caller below, whatever it is
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="checkpointd-run-async-in-sync", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        error: BaseException = outcome["error"]
        raise error
    return cast(T, outcome["value"])
