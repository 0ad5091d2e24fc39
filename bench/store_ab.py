"""A/B of the durable store's cost on workload 1's trivial runs (not part of ``python -m bench``).

N trivial checkpoints (three inline rows, one ``not_null`` validator) through
``AsyncCheckpointRunner.submit_event`` (8 workers, 16 submitters), with no store
(``memory``) and with the durable store as journal (``store``: WAL,
``synchronous=FULL``, group commit), each repetition a fresh process. Two source trees
are compared, repetition by repetition, so drift on a shared machine hits both alike::

    python bench/store_ab.py --base /tmp/base/src --new src --n 10000 --reps 5

prints, per (tree, loop, mode), the median runs/s and CPU seconds per 10,000 runs
(user + system of the whole process, threads included), and the store/memory ratios.
``--worker`` runs one repetition and prints its figures as JSON (the orchestrator's
child; profile it with ``py-spy record --gil -- python bench/store_ab.py --worker``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WORKERS = 8
SUBMITTERS = 16
ROWS = [{"id": 1, "amount": 1.5}, {"id": 2, "amount": 2.5}, {"id": 3, "amount": 3.5}]


# ---------------------------------------------------------------- worker side


async def _runs(n: int, store_dir: Path | None, tag: str) -> dict[str, Any]:
    from datetime import UTC, datetime

    from checkpointd.checkpoints.checkpoint import Checkpoint
    from checkpointd.events import TriggerEvent
    from checkpointd.runtime.runner import AsyncCheckpointRunner, AsyncRunnerConfig
    from checkpointd.store.sqlite.store import SqliteStore

    checkpoint = Checkpoint.from_dict(
        {
            "name": "trivial",
            "data_source": {"type": "inline", "rows": ROWS},
            "validators": [{"type": "not_null", "columns": ["id"]}],
        }
    )
    delivered = 0

    class Sink:
        async def handle(self, items: Any) -> None:
            nonlocal delivered
            delivered += len(items)

    store = await SqliteStore.open(store_dir) if store_dir is not None else None
    runner = AsyncCheckpointRunner(
        [checkpoint],
        AsyncRunnerConfig(max_concurrent_checkpoints=WORKERS),
        journal=store,
        sink=Sink(),
    )
    at = datetime.now(UTC)
    events = [
        TriggerEvent(type="bench", key=f"{tag}:{i}", fired_at=at, run_id=f"{tag}{i}")
        for i in range(n)
    ]

    async def submit(share: list[Any]) -> None:
        for event in share:
            await runner.submit_event("trivial", event)

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    async with runner, asyncio.TaskGroup() as group:
        for k in range(SUBMITTERS):
            group.create_task(submit(events[k::SUBMITTERS]))
    elapsed = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    stats = store.writer_stats if store is not None else None
    if store is not None:
        await store.close()
    if delivered != n:
        raise SystemExit(f"{delivered}/{n} results delivered")
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "runs_per_s": n / elapsed,
        "seconds": elapsed,
        "cpu_s_per_10k": cpu * 10_000 / n,
        "sys_s_per_10k": (cpu1.ru_stime - cpu0.ru_stime) * 10_000 / n,
        "switches_per_run": (cpu1.ru_nvcsw + cpu1.ru_nivcsw - cpu0.ru_nvcsw - cpu0.ru_nivcsw) / n,
        "ops_per_commit": stats.ops / stats.commits if stats and stats.commits else None,
    }


def worker(n: int, loop: str, mode: str) -> dict[str, Any]:
    import checkpointd

    runner = (
        asyncio.Runner(loop_factory=__import__("uvloop").new_event_loop)
        if loop == "uvloop"
        else asyncio.Runner()
    )
    with tempfile.TemporaryDirectory(prefix="cpd-store-ab-") as tmp, runner as lr:
        durable = mode == "store"
        lr.run(_runs(200, Path(tmp, "warm") if durable else None, "w"))
        out = lr.run(_runs(n, Path(tmp, "st") if durable else None, "r"))
    out["source"] = str(Path(checkpointd.__file__).parent)
    return out


# ---------------------------------------------------------------- orchestrator


def _child(src: str, n: int, loop: str, mode: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(Path(src).resolve()))
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", "--n", str(n), "--loop", loop, "--mode", mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise SystemExit(f"worker failed ({src}, {loop}, {mode}):\n{proc.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = str(Path(src).resolve() / "checkpointd")
    if out["source"] != expected:
        raise SystemExit(f"imported {out['source']}, not {expected}")
    return out


def orchestrate(trees: dict[str, str], n: int, reps: int, loops: list[str]) -> None:
    results: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for rep in range(reps):
        for loop in loops:
            for mode in ("memory", "store"):
                for tree, src in trees.items():
                    out = _child(src, n, loop, mode)
                    results.setdefault((tree, loop, mode), []).append(out)
                    print(
                        f"rep {rep} {tree:5} {loop:8} {mode:7} {out['runs_per_s']:8.0f} runs/s "
                        f"{out['cpu_s_per_10k']:6.2f} CPU-s/10k",
                        file=sys.stderr,
                        flush=True,
                    )

    def med(key: tuple[str, str, str], field: str) -> float:
        return float(statistics.median(r[field] for r in results[key]))

    def row(tree: str, loop: str) -> str:
        mem, store = results[(tree, loop, "memory")], results[(tree, loop, "store")]
        ratios = [s["runs_per_s"] / m["runs_per_s"] for s, m in zip(store, mem, strict=True)]
        return (
            f"{tree:5} {loop:8} {med((tree, loop, 'memory'), 'runs_per_s'):10.0f} "
            f"{med((tree, loop, 'store'), 'runs_per_s'):12.0f} {statistics.median(ratios):9.2f} "
            f"{med((tree, loop, 'memory'), 'cpu_s_per_10k'):9.2f} "
            f"{med((tree, loop, 'store'), 'cpu_s_per_10k'):11.2f} "
            f"{med((tree, loop, 'store'), 'ops_per_commit'):10.1f}"
        )

    print(f"\nN={n}, {reps} repetitions, medians (store/mem: median of per-repetition ratios)")
    print(f"{'tree':5} {'loop':8} {'mem runs/s':>10} {'store runs/s':>12} {'store/mem':>9} "
          f"{'mem CPU-s':>9} {'store CPU-s':>11} {'ops/commit':>10}")  # fmt: skip
    for loop in loops:
        for tree in trees:
            print(row(tree, loop))
    if len(trees) == 2:
        base, new = trees
        for loop in loops:
            for field, what in (("runs_per_s", "runs/s"), ("cpu_s_per_10k", "CPU-s")):
                change = med((new, loop, "store"), field) / med((base, loop, "store"), field)
                print(f"{loop}: store {what} {new}/{base} = {change:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--loop", default="uvloop")
    parser.add_argument("--mode", default="store", choices=("memory", "store"))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--loops", default="uvloop,asyncio")
    parser.add_argument("--base")
    parser.add_argument("--new", default=str(Path(__file__).resolve().parents[1] / "src"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.n, args.loop, args.mode)))
        return
    trees = {"base": args.base, "new": args.new} if args.base else {"new": args.new}
    orchestrate(trees, args.n, args.reps, args.loops.split(","))


if __name__ == "__main__":
    main()
