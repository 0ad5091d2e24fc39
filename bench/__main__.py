"""``python -m bench``: run the benchmarks, write results, regenerate docs/benchmarks.md.

``scripts/bench`` sets up the environments first and is the usual way in. Options:
``--quick`` (small sizes, 3 repetitions), ``--only WORKLOAD ...``, ``--report-only``
(regenerate the doc and charts from bench/results/*.json without measuring).
``--only before_after`` measures the run-path fix against the commit before it;
``--only refactor_ab`` the layers refactor against the commit before it.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import BENCH, Settings, log

# Workloads in the order they run, each as (module, function writing its result).
WORKLOADS: dict[str, tuple[str, str]] = {
    "runner_overhead": ("bench.runner_overhead", "main"),
    "validation_throughput": ("bench.validation_throughput", "main"),
    "schedule_accuracy": ("bench.schedule_accuracy", "main"),
    "file_trigger": ("bench.file_trigger", "write"),
    "kafka": ("bench.kafka", "main"),
    "overload": ("bench.overload", "main"),
    "operations": ("bench.operations", "main"),
}
# Run only when named with --only.
OPTIONAL: dict[str, tuple[str, str]] = {
    "before_after": ("bench.before_after", "main"),
    "refactor_ab": ("bench.refactor_ab", "main"),
}

TRUTHOUND_YAML = """\
# truthound's cheapest configuration: no run JSON, no HTML docs, no baseline per run.
persist_runs: false
persist_docs: false
auto_create_baseline: false
auto_create_workspace: false
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 3 repetitions")
    parser.add_argument("--repeat", type=int, help="repetitions (default 5, quick 3)")
    parser.add_argument(
        "--only", nargs="+", choices=[*WORKLOADS, *OPTIONAL], help="these workloads"
    )
    parser.add_argument("--report-only", action="store_true", help="only regenerate the doc")
    args = parser.parse_args(argv)

    from bench import report

    if args.report_only:
        report.write_all()
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="checkpointd-bench-"))
    (workdir / "truthound").mkdir()
    (workdir / "truthound" / "truthound.yaml").write_text(TRUTHOUND_YAML)
    settings = Settings.make(quick=args.quick, repeat=args.repeat, workdir=workdir)
    if settings.truthound_python is None:
        log("truthound's venv is missing (scripts/bench creates it): its rows will be empty")
    failed = []
    started = time.monotonic()
    try:
        for name in args.only or list(WORKLOADS):
            module, function = {**WORKLOADS, **OPTIONAL}[name]
            t0 = time.monotonic()
            log(f"== {name}")
            try:
                entry: Callable[[Settings], Any] = getattr(
                    importlib.import_module(module), function
                )
                path = entry(settings)
                log(f"== {name}: {path} ({time.monotonic() - t0:.0f}s)")
            except Exception:
                failed.append(name)
                log(f"== {name} FAILED:\n{traceback.format_exc()}")
            report.write_all()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    log(f"done in {time.monotonic() - started:.0f}s; docs/benchmarks.md and {BENCH / 'results'}")
    if failed:
        log(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
