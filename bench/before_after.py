"""Before/after of the run-path fix, measured with the runner-overhead harness.

Not part of the default run (it needs the git history): ``python -m bench --only
before_after``. "before" is ``checkpoints/checkpoint.py`` and ``validators.py`` as of
``BEFORE`` (read with ``git show``, nothing in the checkout changes), laid over a copy of
today's package in a scratch directory; "after" is the working tree. Both run the
``checkpointd`` contender of workload 1 (N trivial runs, 8 at a time, no store) and the
floor, taking turns, in fresh processes.

The fix (profiled with pyinstrument): every run paid for a dry run of the validators on
an empty frame, and polars 2's default streaming engine costs a few hundred microseconds
per query whatever the data size: for a 3-row frame that was ~90% of the run. Now a
checkpoint remembers the dry-run verdict per schema (``validators.PlanCache``), and
in-memory sources (inline rows, Kafka batches) collect with the in-memory engine.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.common import ROOT, Settings, log, median, ratio, run_worker, write_result

WORKLOAD = "before_after"
BEFORE = "6131865"
FILES = ("src/checkpointd/checkpoints/checkpoint.py", "src/checkpointd/checkpoints/validators.py")


def _before_tree(workdir: Path) -> Path:
    tree = workdir / "before-src"
    shutil.copytree(ROOT / "src" / "checkpointd", tree / "checkpointd")
    for name in FILES:
        text = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{BEFORE}:{name}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (tree / Path(name).relative_to("src")).write_text(text)
    return tree


def run(settings: Settings) -> dict[str, Any]:
    n = 2_000 if settings.quick else 10_000
    tree = _before_tree(settings.workdir)
    variants = {
        "before": [
            "env",
            f"PYTHONPATH={tree}:{ROOT}",
            settings.python,
            "-m",
            "bench.runner_overhead",
            "--worker",
        ],
        "after": [settings.python, "-m", "bench.runner_overhead", "--worker"],
    }
    reps: dict[str, list[dict[str, Any]]] = {}
    for loop in settings.loops:
        log(f"{WORKLOAD}: N={n} on {loop}")
        for _ in range(settings.repeat):
            for variant, argv in variants.items():
                spec = {"contender": "checkpointd", "n": n, "loop": loop}
                reps.setdefault(f"{variant}|{loop}", []).append(run_worker(argv, spec, timeout=900))
            spec = {"contender": "floor", "n": n, "loop": loop}
            reps.setdefault(f"floor|{loop}", []).append(
                run_worker(variants["after"], spec, timeout=900)
            )
    rows = []
    for loop in settings.loops:
        floor = median([r["runs_per_s"] for r in reps[f"floor|{loop}"]])
        before = median([r["runs_per_s"] for r in reps[f"before|{loop}"]])
        for variant in ("before", "after", "floor"):
            got = reps[f"{variant}|{loop}"]
            rate = median([r["runs_per_s"] for r in got])
            rows.append(
                {
                    "loop": loop,
                    "variant": variant,
                    "n": n,
                    "runs_per_s": rate,
                    "p50_ms": median([r["p50_ms"] for r in got]),
                    "p99_ms": median([r["p99_ms"] for r in got]),
                    "vs_floor": ratio(rate, floor),
                    "vs_before": ratio(rate, before),
                }
            )
    return {
        "description": __doc__,
        "before_commit": BEFORE,
        "reps": reps,
        "rows": rows,
        "targets": [],
    }


def main(settings: Settings) -> Path:
    return write_result(WORKLOAD, settings, run(settings))
