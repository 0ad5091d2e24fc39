"""The thread pool runs load and validate in, resizable when the run pool is resized.

A run's loading and validation happen in a worker thread (polars releases the GIL for the
heavy parts). The daemon sizes that pool to the run pool plus a little room, so a run never
waits for a thread; when a reload changes ``daemon.max_concurrent_checkpoints`` the thread
pool has to follow, or a grown run pool would queue its runs for threads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

__all__ = ["RunExecutor", "run_threads_for"]

SPARE_THREADS = 2
"""Threads beyond the run pool's size: a run cut off by its timeout may still hold one."""


def run_threads_for(slots: int) -> int:
    """How many threads a run pool of ``slots`` needs."""
    return slots + SPARE_THREADS


class RunExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose thread limit can change while it runs.

    ``ThreadPoolExecutor`` starts threads lazily, one per submitted job while no thread
    is idle and the limit is not reached, so raising the limit costs nothing until runs
    need the threads; lowering it stops starting new ones (threads already started stay,
    idle, until shutdown).
    """

    def __init__(self, slots: int, *, thread_name_prefix: str) -> None:
        super().__init__(max_workers=run_threads_for(slots), thread_name_prefix=thread_name_prefix)

    @property
    def max_threads(self) -> int:
        """The current thread limit."""
        return self._max_workers

    def resize(self, slots: int) -> None:
        """Follow a run pool of ``slots``."""
        if slots < 1:
            raise ValueError(f"slots must be at least 1, found {slots}")
        # CPython's ThreadPoolExecutor reads _max_workers each time it considers starting a
        # thread (_adjust_thread_count), so changing it is all a resize takes.
        self._max_workers = run_threads_for(slots)
