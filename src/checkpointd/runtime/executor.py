"""The thread pool runs load and validate in, resizable when the run pool is resized.

A run's loading and validation happen in a worker thread (polars releases the GIL for the
heavy parts). The daemon sizes that pool to the run pool plus a little room, so a run never
waits for a thread; when a reload changes ``daemon.max_concurrent_checkpoints`` the thread
pool has to follow, or a grown run pool would queue its runs for threads.

``concurrent.futures.ThreadPoolExecutor`` has no public way to change its limit, so this is
a small executor of its own (any ``Executor`` fits ``loop.run_in_executor``): threads start
lazily, one per submitted job while no thread is idle and the limit is not reached; a
lowered limit makes surplus threads exit as they become idle. Its threads are daemon
threads, so a thread still inside polars for a cancelled run never holds up the exit.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

__all__ = ["SPARE_THREADS", "RunExecutor", "run_threads_for"]

SPARE_THREADS = 2
"""Threads beyond the run pool's size: a run cut off by its timeout may still hold one."""

_P = ParamSpec("_P")
_T = TypeVar("_T")


def run_threads_for(slots: int) -> int:
    """How many threads a run pool of ``slots`` needs."""
    return slots + SPARE_THREADS


class _Job:
    __slots__ = ("args", "fn", "future", "kwargs")

    def __init__(self, future: Future[Any], fn: Callable[..., Any], args: Any, kwargs: Any) -> None:
        self.future = future
        self.fn = fn
        self.args = args
        self.kwargs = kwargs

    def run(self) -> Callable[[], None]:
        """Run the job; returns what completes its future (called once the thread is idle
        again, so a caller woken by the result finds the thread free)."""
        if not self.future.set_running_or_notify_cancel():
            return _nothing
        try:
            value = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:
            error = exc  # `exc` is unbound after the except block; the closure needs it
            return lambda: self.future.set_exception(error)
        return lambda: self.future.set_result(value)


def _nothing() -> None:
    return None


class RunExecutor(Executor):
    """An executor whose thread limit can change while it runs (:meth:`resize`)."""

    def __init__(self, slots: int, *, thread_name_prefix: str) -> None:
        self._limit = run_threads_for(_checked(slots))
        self._prefix = thread_name_prefix
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._idle = 0
        self._started = 0
        self._shutdown = False

    @property
    def max_threads(self) -> int:
        """The current thread limit."""
        return self._limit

    @property
    def thread_count(self) -> int:
        """Threads alive now (busy or idle)."""
        with self._lock:
            return len(self._threads)

    def resize(self, slots: int) -> None:
        """Follow a run pool of ``slots``: more threads may start at once; threads beyond a
        lowered limit exit as they finish their job."""
        with self._lock:
            self._limit = run_threads_for(_checked(slots))
            waiting = self._jobs.qsize() - self._idle  # queued jobs no idle thread will take
            for _ in range(min(waiting, self._limit - len(self._threads))):
                self._start_thread()

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        future: Future[_T] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new runs after the executor shut down")
            self._jobs.put(_Job(future, fn, args, kwargs))
            if self._idle > 0:
                self._idle -= 1  # one idle thread will take it
            elif len(self._threads) < self._limit:
                self._start_thread()
            # else: every thread is busy; the job waits for the first to finish
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job.future.cancel()
        for _ in threads:
            self._jobs.put(None)  # one stop sign per thread, behind the jobs still queued
        if wait:
            for thread in threads:
                thread.join()

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"{self._prefix}_{self._started}", daemon=True
        )
        self._started += 1
        self._threads.add(thread)
        thread.start()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            job = self._jobs.get()
            if job is None:  # shut down
                with self._lock:
                    self._threads.discard(me)
                return
            complete = job.run()
            del job  # drop the job's references (its frame, its data) while idle
            with self._lock:
                surplus = len(self._threads) > self._limit  # the limit was lowered
                if surplus:
                    self._threads.discard(me)
                else:
                    self._idle += 1
            complete()
            del complete
            if surplus:
                return


def _checked(slots: int) -> int:
    if slots < 1:
        raise ValueError(f"slots must be at least 1, found {slots}")
    return slots
