"""What becomes of the daemon's runs: each one that finished, and those left unfinished.

:class:`RunSink` is the runner's ``ResultSink``: after the journal has stored a
batch of results it counts them, logs a ``run finished`` line for each, and lets
the trigger sources that finish runs (:class:`~checkpointd.protocols.FinishingSource`:
the file trigger moves the file) do so. :func:`recover_runs` deals with the journal
rows a crash or a drain left open when the daemon starts: it runs them again or
marks them interrupted, as ``daemon.on_crash`` says.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import structlog

from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.events import TriggerEvent
from checkpointd.protocols import FinishingSource

if TYPE_CHECKING:
    from checkpointd.daemon.metrics import Metrics
    from checkpointd.protocols import Store, TriggerSource
    from checkpointd.runtime.runner import AsyncCheckpointRunner
    from checkpointd.store.model import JournalEntry

__all__ = ["RunSink", "recover_runs"]

log = structlog.get_logger("checkpointd.daemon")


class RunSink:
    """Counts, logs and finishes the daemon's results (a ``ResultSink``).

    ``sources`` gives the running trigger sources of a checkpoint (``TriggerSet.sources``).
    ``known`` is the daemon's live view of its checkpoints: a run of one a reload removed
    is logged but must not bring its metric series back.
    """

    def __init__(
        self,
        metrics: Metrics,
        *,
        sources: Callable[[str], Iterable[TriggerSource]],
        known: Mapping[str, object],
    ) -> None:
        self._metrics = metrics
        self._sources = sources
        self._known = known

    async def handle(self, items: Sequence[tuple[CheckpointResult, TriggerEvent | None]]) -> None:
        for result, event in items:
            if result.checkpoint in self._known:
                self._metrics.observe_result(result)
            log.info(
                "run finished",
                run_id=result.run_id,
                checkpoint=result.checkpoint,
                status=result.status.value,
                duration=round(result.duration_seconds, 4),
                attempt=result.attempt,
                error=result.error,
            )
            if event is not None and result.status is not Status.SKIPPED:
                for source in self._sources(result.checkpoint):
                    if isinstance(source, FinishingSource):
                        await source.finish(event, result.status.is_ok)


async def recover_runs(
    found: Sequence[JournalEntry],
    *,
    policy: Literal["rerun", "mark_interrupted"],
    store: Store,
    runner: AsyncCheckpointRunner,
    known: Collection[str],
    metrics: Metrics,
) -> int:
    """Re-run or mark interrupted the runs left unfinished; how many there were.

    ``found`` are the rows the store found open (``accepted``/``running``); with
    ``rerun``, those a drain marked ``interrupted`` run again too. A run of a
    checkpoint that is no longer configured is marked interrupted.
    """
    entries = list(found)
    if policy == "rerun":
        entries += await store.journal_entries(state="interrupted")
    if not entries:
        return 0
    metrics.runs_recovered(len(entries))
    log.warning("recovering runs left unfinished", count=len(entries), policy=policy)
    for entry in entries:
        if policy == "rerun" and entry.checkpoint in known:
            await runner.resubmit_event(entry.checkpoint, entry.to_event())
        else:
            await store.journal_mark(entry.key, entry.checkpoint, "interrupted")
    return len(entries)
