"""What every workload shares: settings, statistics, workers in fresh processes, results.

Measuring. Each repetition of each contender runs in a fresh process (``run_worker``),
so its peak RSS is its own, and the orchestrator interleaves contenders repetition by
repetition (a, b, c, a, b, c, ...), so load from the rest of this shared machine hits
them alike. A worker warms up before it times anything and prints one JSON line.

Reporting. Figures are medians of the repetitions; comparisons are ratios of medians
taken in the same run. ``write_result`` stores ``bench/results/<workload>.json`` with the
machine, the settings, every repetition, the medians, the ratios and the targets.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
TRUTHOUND_WORKER = BENCH / "truthound_worker.py"
TRUTHOUND_ENV = "CHECKPOINTD_BENCH_TRUTHOUND_PYTHON"


@dataclass(frozen=True)
class Settings:
    """How much to measure: ``quick`` is a smoke run (small sizes, 3 repetitions)."""

    quick: bool = False
    repeat: int = 5
    python: str = sys.executable
    truthound_python: str | None = None
    workdir: Path = Path("/tmp")
    loops: tuple[str, ...] = ("asyncio", "uvloop")
    notes: list[str] = field(default_factory=list)

    @classmethod
    def make(cls, *, quick: bool, repeat: int | None, workdir: Path) -> Settings:
        th = os.environ.get(TRUTHOUND_ENV) or str(ROOT / ".venv-truthound" / "bin" / "python")
        return cls(
            quick=quick,
            repeat=repeat or (3 if quick else 5),
            truthound_python=th if os.access(th, os.X_OK) else None,
            workdir=workdir,
        )


# ---------------------------------------------------------------- statistics


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def medians(reps: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Median of every numeric field over the repetitions."""
    keys = [k for k, v in reps[0].items() if isinstance(v, int | float)] if reps else []
    return {k: median([float(r[k]) for r in reps if r.get(k) is not None]) for k in keys}


# ---------------------------------------------------------------- processes


def peak_rss_mib() -> float:
    """This process's peak resident set size so far: ``VmHWM``, in MiB.

    Not ``getrusage``'s ``ru_maxrss``: Linux keeps that across ``execve``, so a worker
    would inherit the high-water mark of the orchestrator that forked it (which may
    have just generated 10M rows). ``VmHWM`` belongs to the new program's memory.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib(pid: int) -> float | None:
    """Current RSS of ``pid`` from /proc, None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (all its threads) from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class WorkerError(RuntimeError):
    """A worker process failed; the message carries the end of its stderr."""


def run_worker(
    argv: Sequence[str], spec: Mapping[str, Any], *, timeout: float, cwd: Path | None = None
) -> dict[str, Any]:
    """Run ``argv + [json(spec)]`` and return the JSON object on its last stdout line."""
    started = time.monotonic()
    proc = subprocess.run(
        [*argv, json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0"},
    )
    if proc.returncode != 0:
        raise WorkerError(
            f"{' '.join(argv[:3])} {spec} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise WorkerError(f"{' '.join(argv[:3])} printed no result:\n{proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(lines[-1])
    out.setdefault("process_seconds", round(time.monotonic() - started, 3))
    return out


def module_worker(settings: Settings, module: str) -> list[str]:
    """argv that runs ``bench.<module>``'s worker in this environment."""
    return [settings.python, "-m", f"bench.{module}", "--worker"]


def worker_main(measure: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Entry of a worker process: ``--worker JSON`` in, one JSON line out."""
    spec = json.loads(sys.argv[-1])
    result = measure(spec)
    result.setdefault("peak_rss_mib", round(peak_rss_mib(), 1))
    print(json.dumps(result), flush=True)


def loop_runner(loop_name: str) -> Any:
    """An ``asyncio.Runner`` on the named event loop (``asyncio`` or ``uvloop``)."""
    import asyncio

    if loop_name == "uvloop":
        import uvloop

        return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    return asyncio.Runner()


# ---------------------------------------------------------------- results


def machine_info() -> dict[str, Any]:
    """Where the figures were measured, so a reader can weigh them."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((ln.split(":", 1)[1].strip() for ln in info if "model name" in ln), cpu)
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except OSError:
        commit = ""
    versions: dict[str, str] = {"python": platform.python_version()}
    for name in ("polars", "uvloop", "aiosqlite", "checkpointd"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:
            versions[name] = "?"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem, 1),
        "kernel": platform.release(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "git_commit": commit,
        "versions": versions,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


@dataclass
class Target:
    """A figure the issue sets; measured and reported, never asserted."""

    name: str
    goal: str
    measured: str
    met: bool | None  # None: not measured

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "goal": self.goal, "measured": self.measured, "met": self.met}


def write_result(workload: str, settings: Settings, data: dict[str, Any]) -> Path:
    """Write ``bench/results/<workload>.json`` (machine info and settings added)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {
        "workload": workload,
        "machine": machine_info(),
        "settings": {"quick": settings.quick, "repeat": settings.repeat},
        **data,
    }
    path = RESULTS / f"{workload}.json"
    path.write_text(json.dumps(clean(doc), indent=2) + "\n")
    return path


def clean(value: Any) -> Any:
    """``value`` as strict JSON: NaN and infinities become null, paths strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def log(message: str) -> None:
    """Progress on stderr (stdout of workers is the result channel)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
