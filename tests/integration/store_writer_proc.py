"""A separate process that uses a SqliteStore, for tests/integration/test_store_crash.py.

    python store_writer_proc.py work STATE_DIR      journal and save runs until killed
    python store_writer_proc.py hold STATE_DIR      open the store and wait until killed
    python store_writer_proc.py try-open STATE_DIR  open once; exit 3 if the dir is in use

It reports on stdout, one JSON object per line, and prints a line only after
the write it describes has returned (so is committed):
``{"ready": pid}``, ``{"accepted": [keys]}``, ``{"saved": [keys]}``,
``{"in_use": pid, "message": "..."}``, ``{"opened": true}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from checkpointd.checkpoints.result import CheckpointResult, Status, ValidatorResult
from checkpointd.errors import StateDirInUseError
from checkpointd.events import TriggerEvent
from checkpointd.ids import uuid7
from checkpointd.store.sqlite.store import SqliteStore

CHECKPOINT = "orders"
ROUND_SIZE = 16
BASE_TIME = datetime(2026, 3, 1, tzinfo=UTC)


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def round_events(number: int) -> list[TriggerEvent]:
    """The events of round ``number``; the test rebuilds them to check what was recovered."""
    return [
        TriggerEvent(
            type="kafka",
            key=f"orders.landed/0/{number * ROUND_SIZE + i}",
            fired_at=BASE_TIME + timedelta(seconds=number),
            params={"round": str(number)},
        )
        for i in range(ROUND_SIZE)
    ]


def finished(event: TriggerEvent) -> CheckpointResult:
    started = datetime.now(UTC)
    return CheckpointResult(
        run_id=uuid7(),
        checkpoint=CHECKPOINT,
        status=Status.SUCCESS,
        started_at=started,
        finished_at=started,
        trigger=event.info(),
        validators=(ValidatorResult(type="row_count", status=Status.SUCCESS, checked_count=1),),
    )


async def work(state_dir: Path) -> None:
    """Each round journals fresh events and finishes the previous round's, so at
    any instant some rows are accepted or running but not done."""
    async with await SqliteStore.open(state_dir) as store:
        previous: list[TriggerEvent] = []
        for number in range(100_000):
            events = round_events(number)
            await asyncio.gather(*(store.journal_accept(e, CHECKPOINT) for e in events))
            emit(accepted=[e.key for e in events])
            await asyncio.gather(*(store.journal_mark_running(e, CHECKPOINT) for e in events[::2]))
            if previous:
                await asyncio.gather(*(store.save_results([(finished(e), e)]) for e in previous))
                emit(saved=[e.key for e in previous])
            previous = events


async def hold(state_dir: Path) -> None:
    async with await SqliteStore.open(state_dir):
        emit(ready=os.getpid())
        await asyncio.sleep(120)  # the test kills us long before this


async def try_open(state_dir: Path) -> int:
    try:
        store = await SqliteStore.open(state_dir)
    except StateDirInUseError as exc:
        emit(in_use=exc.pid, message=str(exc))
        return 3
    await store.close()
    emit(opened=True)
    return 0


def main() -> int:
    mode, state_dir = sys.argv[1], Path(sys.argv[2])
    if mode == "work":
        asyncio.run(work(state_dir))
        return 0
    if mode == "hold":
        asyncio.run(hold(state_dir))
        return 0
    if mode == "try-open":
        return asyncio.run(try_open(state_dir))
    print(f"unknown mode {mode!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
