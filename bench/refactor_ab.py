"""The layers refactor, before and after: runner overhead, validation throughput, Kafka.

Not part of the default run (it needs the git history): ``python -m bench --only
refactor_ab``. "before" is the whole ``src/`` and ``bench/`` of ``BEFORE`` (the commit
before the refactor), extracted with ``git archive`` into a scratch directory, so it
runs its own bench workers and its own package (today's workers import the moved module
paths); "after" is the working tree. Both run on the same interpreter and venv, with
``PYTHONPATH=<tree>/src:<tree>`` and the tree as working directory, each repetition in
fresh processes; the sides take turns repetition by repetition (before then after, then
after then before, ...), so the load of this shared machine hits them alike. A probe
prints ``checkpointd.__file__`` per side first and checks that ``checkpointd.runtime``
exists only after.

Measured, with each workload's own worker:

- runner overhead (``bench.runner_overhead``): N trivial runs through
  ``AsyncCheckpointRunner``, 8 at a time, in memory (``checkpointd``) and with the durable
  SQLite store as journal (``checkpointd+store``), on each event loop; the bare-asyncio
  ``floor`` runs once per repetition as the common baseline;
- validation throughput (``bench.validation_throughput``): the four validators on the
  workload's parquet and CSV files (planted defects), the checkpointd contender; the
  hand-written ``polars`` query once per repetition as the common baseline; the counts
  found are checked to agree;
- Kafka (``bench.kafka_throughput``'s ``throughput``: the real daemon as a subprocess,
  durable store, uvloop): ``per_message`` and ``kafka_batch`` over a pre-filled topic of
  4 partitions, on one broker (``scripts/kafka-broker``, ``KAFKA_PORT=29092``,
  ``KAFKA_BROKER_DIR=/tmp/kb-bench``) started for the whole A/B and stopped at the end.

Every figure is the median of the repetitions of each side; ``ratio`` is after/before of
the medians, ``pair_min``..``pair_max`` the spread of the after/before ratios of the
repetitions taken next to each other. A change is called beyond noise only when every
pair agrees on its direction and the ratio of medians lies outside the before side's own
spread (min/median..max/median); with few repetitions on a shared 2-core machine that
is a rough test: read the spreads. ``REFACTOR_AB_PARTS=runner_overhead,kafka`` (any of
``runner_overhead``, ``validation_throughput``, ``kafka``) measures only those parts.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    Settings,
    Target,
    WorkerError,
    log,
    median,
    ratio,
    run_worker,
    write_result,
)

WORKLOAD = "refactor_ab"
BEFORE = "8b18253"
SIDES = ("before", "after")
KAFKA_ENV = {"KAFKA_PORT": "29092", "KAFKA_BROKER_DIR": "/tmp/kb-bench"}
RETRIES = 2
"""A worker that fails is retried (after ``RETRY_PAUSE`` s): the working tree is mid-edit."""
RETRY_PAUSE = 45.0

# What each workload reports: (field, higher is better); the first is the headline.
RUNNER_FIELDS = (
    ("runs_per_s", True),
    ("p50_ms", False),
    ("p99_ms", False),
    ("peak_rss_mib", False),
)
VALIDATION_FIELDS = (("rows_per_s", True), ("peak_rss_mib", False))
KAFKA_FIELDS = (("msg_per_s", True), ("cpu_us_per_msg", False))

PROBE = """
import importlib.util, json
import checkpointd, checkpointd.cli, checkpointd.checkpoints.checkpoint
import bench, bench.runner_overhead, bench.validation_throughput, bench.kafka_throughput
print(json.dumps({
    "checkpointd": checkpointd.__file__,
    "bench": bench.__file__,
    "has_runtime": importlib.util.find_spec("checkpointd.runtime") is not None,
}))
"""

# Runs one Kafka throughput repetition with the side's own bench.kafka_throughput (which
# starts the side's daemon: ``python -m checkpointd run``, PYTHONPATH inherited).
KAFKA_DRIVER = """
import json, sys
from pathlib import Path
import checkpointd
import bench.kafka_throughput as k
spec = json.loads(sys.argv[-1])
out = k.throughput(spec["bootstrap"], spec["topic"], spec["count"], k.MODES[spec["mode"]],
                   Path(spec["work"]))
out["checkpointd_file"] = checkpointd.__file__
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Side:
    name: str
    tree: Path

    def argv(self, settings: Settings, *tail: str) -> list[str]:
        # run_worker sets PYTHONPATH to today's root; ``env`` puts this tree's first.
        return ["env", f"PYTHONPATH={self.tree / 'src'}:{self.tree}", settings.python, *tail]

    def module(self, settings: Settings, module: str) -> list[str]:
        return self.argv(settings, "-m", f"bench.{module}", "--worker")

    def run(
        self, settings: Settings, argv: list[str], spec: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """``run_worker`` in this tree, retried when it fails (a half-done edit)."""
        for attempt in range(RETRIES + 1):
            try:
                return run_worker(argv, spec, timeout=timeout, cwd=self.tree)
            except (WorkerError, subprocess.TimeoutExpired) as exc:
                if attempt == RETRIES:
                    raise
                log(f"{WORKLOAD}: {self.name} failed, retrying in {RETRY_PAUSE:.0f}s:\n{exc}")
                time.sleep(RETRY_PAUSE)
        raise AssertionError("unreachable")


def _before_tree(workdir: Path) -> Path:
    tree = workdir / f"before-{BEFORE}"
    tree.mkdir(parents=True)
    archive = subprocess.Popen(
        ["git", "-C", str(ROOT), "archive", BEFORE, "src", "bench"], stdout=subprocess.PIPE
    )
    subprocess.run(["tar", "-x", "-C", str(tree)], stdin=archive.stdout, check=True)
    assert archive.stdout is not None
    archive.stdout.close()
    if archive.wait() != 0:
        raise RuntimeError(f"git archive {BEFORE} failed")
    return tree


def _tree_digest(tree: Path) -> str:
    """A digest of the tree's src/ and bench/ sources: did "after" change mid-run?"""
    digest = hashlib.sha256()
    for folder in ("src", "bench"):
        for path in sorted((tree / folder).rglob("*.py")):
            digest.update(str(path.relative_to(tree)).encode())
            try:
                digest.update(path.read_bytes())
            except OSError:
                digest.update(b"<gone>")
    return digest.hexdigest()[:16]


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    return done.stdout.strip()


def _probe(settings: Settings, side: Side) -> dict[str, Any]:
    """Which checkpointd and bench the side imports; refuses a side that imports the other."""
    got = side.run(settings, side.argv(settings, "-c", PROBE), {}, timeout=120)
    log(f"{WORKLOAD}: {side.name}: checkpointd from {got['checkpointd']}")
    tree = side.tree.resolve()
    imported = (Path(got["checkpointd"]).resolve().parent, Path(got["bench"]).resolve().parent)
    if imported != (tree / "src" / "checkpointd", tree / "bench"):
        raise RuntimeError(f"{side.name} imports the wrong tree: {got}")
    if got["has_runtime"] != (side.name == "after"):
        raise RuntimeError(f"{side.name}: checkpointd.runtime present={got['has_runtime']}")
    return got


def _order(rep: int) -> tuple[str, ...]:
    """Before first on even repetitions, after first on odd ones."""
    return SIDES if rep % 2 == 0 else SIDES[::-1]


# ---------------------------------------------------------------- the three parts


def runner_part(settings: Settings, sides: dict[str, Side], reps: dict[str, list[Any]]) -> None:
    n = 2_000 if settings.quick else 10_000
    after = sides["after"]
    for loop in settings.loops:
        log(f"{WORKLOAD}: runner overhead, N={n} on {loop}")
        for rep in range(settings.repeat):
            for contender in ("checkpointd", "checkpointd+store"):
                for name in _order(rep):
                    side = sides[name]
                    spec = {"contender": contender, "n": n, "loop": loop}
                    out = side.run(settings, side.module(settings, "runner_overhead"), spec, 900)
                    reps.setdefault(f"runner|{contender}|{loop}|{n}|{name}", []).append(out)
            spec = {"contender": "floor", "n": n, "loop": loop}
            out = after.run(settings, after.module(settings, "runner_overhead"), spec, 900)
            reps.setdefault(f"runner|floor|{loop}|{n}|baseline", []).append(out)


def validation_part(
    settings: Settings, sides: dict[str, Side], reps: dict[str, list[Any]]
) -> list[dict[str, Any]]:
    from bench.validation_throughput import write_data

    sizes = [200_000, 1_000_000] if settings.quick else [1_000_000, 10_000_000]
    data = settings.workdir / "validation"
    data.mkdir(parents=True, exist_ok=True)
    warm = write_data(data, 10_000)
    after = sides["after"]
    mismatches = []
    for rows in sizes:
        log(f"{WORKLOAD}: validation, writing {rows:,} rows")
        paths = write_data(data, rows)
        for fmt, path in paths.items():
            log(f"{WORKLOAD}: validation, {rows:,} rows of {fmt}")
            spec = {"rows": rows, "path": str(path), "warmup_path": str(warm[fmt])}
            for rep in range(settings.repeat):
                for name in _order(rep):
                    side = sides[name]
                    argv = side.module(settings, "validation_throughput")
                    out = side.run(settings, argv, {**spec, "contender": "checkpointd"}, 900)
                    reps.setdefault(f"validation|checkpointd|{fmt}|{rows}|{name}", []).append(out)
                argv = after.module(settings, "validation_throughput")
                out = after.run(settings, argv, {**spec, "contender": "polars"}, 900)
                reps.setdefault(f"validation|polars|{fmt}|{rows}|baseline", []).append(out)
            want = reps[f"validation|polars|{fmt}|{rows}|baseline"][0]["found"]
            for name in SIDES:
                for got in reps[f"validation|checkpointd|{fmt}|{rows}|{name}"]:
                    if got["found"] != want:
                        mismatches.append(
                            {"side": name, "format": fmt, "rows": rows, "found": got["found"]}
                        )
        for path in paths.values():
            path.unlink(missing_ok=True)
    return mismatches


def _broker(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "kafka-broker"), *command],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **KAFKA_ENV},
        check=False,
    )


@contextmanager
def broker() -> Iterator[str]:
    """One fresh broker for the whole A/B; stopped at the end, whatever happens."""
    try:
        done = _broker("start")
        if done.returncode != 0:
            raise RuntimeError(f"the Kafka broker did not start:\n{done.stdout}{done.stderr}")
        values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
        log(f"{WORKLOAD}: broker on {values['bootstrap']} (pid {values.get('pid')})")
        yield values["bootstrap"]
    finally:
        stopped = _broker("stop")
        log(f"{WORKLOAD}: broker stop: {(stopped.stdout + stopped.stderr).strip()}")


def kafka_part(settings: Settings, sides: dict[str, Side], reps: dict[str, list[Any]]) -> None:
    from bench.kafka_throughput import Sizes, fill, new_topic

    sizes = Sizes.of(settings.quick)
    cases = (("per_message", sizes.per_message), ("kafka_batch", sizes.batch))
    with broker() as bootstrap:
        topics = {}
        for mode, count in cases:
            log(f"{WORKLOAD}: kafka, filling a topic with {count:,} messages for {mode}")
            topics[mode] = asyncio.run(new_topic(bootstrap, f"ab-{mode}"))
            asyncio.run(fill(bootstrap, topics[mode], count))
        for rep in range(settings.repeat):
            for mode, count in cases:
                for name in _order(rep):
                    side = sides[name]
                    work = settings.workdir / "kafka" / f"{mode}-{name}-{rep}"
                    spec = {
                        "bootstrap": bootstrap,
                        "topic": topics[mode],
                        "count": count,
                        "mode": mode,
                        "work": str(work),
                    }
                    log(f"{WORKLOAD}: kafka {mode} #{rep + 1} {name}")
                    out = side.run(settings, side.argv(settings, "-c", KAFKA_DRIVER), spec, 1500)
                    want = side.tree.resolve() / "src" / "checkpointd"
                    if Path(out["checkpointd_file"]).resolve().parent != want:
                        raise RuntimeError(f"{name} ran {out['checkpointd_file']}, not {want}")
                    reps.setdefault(f"kafka|{mode}|uvloop|{count}|{name}", []).append(out)
                    shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- summary


def _values(reps: list[dict[str, Any]], field: str) -> list[float]:
    return [float(r[field]) for r in reps if isinstance(r.get(field), int | float)]


def compare(
    reps: dict[str, list[dict[str, Any]]],
    case: str,
    fields: tuple[tuple[str, bool], ...],
    baseline: str | None,
) -> dict[str, Any]:
    """Medians of both sides, after/before with the spread of the pairs, and a verdict."""
    before, after = reps.get(f"{case}|before", []), reps.get(f"{case}|after", [])
    part, contender, where, size = case.split("|")
    row: dict[str, Any] = {
        "part": part,
        "contender": contender,
        "where": where,
        "size": int(size),
        "repetitions": min(len(before), len(after)),
    }
    for field, higher in fields:
        b, a = _values(before, field), _values(after, field)
        pairs = [ratio(x, y) for x, y in zip(a, b, strict=False)]
        mb, ma = median(b), median(a)
        r = ratio(ma, mb)
        spread = (ratio(min(b), mb), ratio(max(b), mb)) if b else (None, None)
        verdict = "not measured"
        if pairs and spread[0] is not None:
            worse = (r < spread[0]) if higher else (r > spread[1])
            better = (r > spread[1]) if higher else (r < spread[0])
            all_worse = all((p < 1) if higher else (p > 1) for p in pairs)
            all_better = all((p > 1) if higher else (p < 1) for p in pairs)
            verdict = (
                "worse beyond noise"
                if worse and all_worse
                else "better beyond noise"
                if better and all_better
                else "within noise"
            )
        row[field] = {
            "higher_is_better": higher,
            "before": mb,
            "before_min": min(b) if b else None,
            "before_max": max(b) if b else None,
            "after": ma,
            "after_min": min(a) if a else None,
            "after_max": max(a) if a else None,
            "ratio": r,
            "pair_min": min(pairs) if pairs else None,
            "pair_max": max(pairs) if pairs else None,
            "before_spread": spread,
            "verdict": verdict,
        }
    if baseline is not None:
        headline = fields[0][0]
        base = median(_values(reps.get(baseline, []), headline))
        row["baseline"] = {
            "key": baseline,
            headline: base,
            "min": min(_values(reps.get(baseline, []), headline), default=None),
            "max": max(_values(reps.get(baseline, []), headline), default=None),
            "before_vs_baseline": ratio(row[headline]["before"], base),
            "after_vs_baseline": ratio(row[headline]["after"], base),
        }
    return row


def summarize(reps: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    cases = sorted({key.rpartition("|")[0] for key in reps if not key.endswith("|baseline")})
    order = {"runner": 0, "validation": 1, "kafka": 2}
    for case in sorted(cases, key=lambda c: (order[c.split("|")[0]], c)):
        part, _contender, where, size = case.split("|")
        fields: tuple[tuple[str, bool], ...]
        baseline: str | None
        if part == "runner":
            fields, baseline = RUNNER_FIELDS, f"runner|floor|{where}|{size}|baseline"
        elif part == "validation":
            fields, baseline = VALIDATION_FIELDS, f"validation|polars|{where}|{size}|baseline"
        else:
            fields, baseline = KAFKA_FIELDS, None
        rows.append(compare(reps, case, fields, baseline))
    return rows


def targets(rows: list[dict[str, Any]]) -> list[Target]:
    out = []
    for row in rows:
        field = next(iter(k for k in row if isinstance(row[k], dict) and "verdict" in row[k]))
        got = row[field]
        name = f"refactor A/B {row['part']}: {row['contender']} ({row['where']}, {row['size']:,})"
        if got["ratio"] is None or got["ratio"] != got["ratio"]:
            out.append(Target(name, "no regression beyond noise", "not measured", None))
            continue
        measured = (
            f"{got['ratio']:.3f}× after/before {field} "
            f"(pairs {got['pair_min']:.3f}–{got['pair_max']:.3f}; before's own spread "
            f"{got['before_spread'][0]:.3f}–{got['before_spread'][1]:.3f}): {got['verdict']}"
        )
        out.append(
            Target(
                name, "no regression beyond noise", measured, got["verdict"] != "worse beyond noise"
            )
        )
    return out


def table(rows: list[dict[str, Any]]) -> str:
    """The headline figure of every case, for the log."""
    lines = []
    for row in rows:
        field = next(iter(k for k in row if isinstance(row[k], dict) and "verdict" in row[k]))
        got = row[field]
        lines.append(
            f"{row['part']:<10} {row['contender']:<18} {row['where']:<8} {row['size']:>9,} "
            f"{field:<11} before {got['before']:>12,.1f}  after {got['after']:>12,.1f}  "
            f"ratio {got['ratio']:.3f} ({got['pair_min']:.3f}–{got['pair_max']:.3f})  "
            f"{got['verdict']}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- entry


PARTS: dict[str, Callable[[Settings, dict[str, Side], dict[str, list[Any]]], Any]] = {
    "runner_overhead": runner_part,
    "validation_throughput": validation_part,
    "kafka": kafka_part,
}


def run(settings: Settings) -> dict[str, Any]:
    started = time.monotonic()
    sides = {"before": Side("before", _before_tree(settings.workdir)), "after": Side("after", ROOT)}
    digest_start = _tree_digest(ROOT)
    probes = {name: _probe(settings, side) for name, side in sides.items()}
    reps: dict[str, list[Any]] = {}
    failed: dict[str, str] = {}
    mismatches: Any = []
    parts = os.environ.get("REFACTOR_AB_PARTS", ",".join(PARTS)).split(",")
    for part in parts:
        t0 = time.monotonic()
        try:
            got = PARTS[part](settings, sides, reps)
            if part == "validation_throughput":
                mismatches = got
        except Exception as exc:  # one part failing must not cost the others
            failed[part] = f"{type(exc).__name__}: {str(exc)[-1500:]}"
            log(f"{WORKLOAD}: {part} FAILED: {failed[part]}")
        log(f"{WORKLOAD}: {part} took {time.monotonic() - t0:.0f}s")
    digest_end = _tree_digest(ROOT)
    rows = summarize(reps)
    log(f"{WORKLOAD}:\n{table(rows)}")
    if digest_end != digest_start:
        log(f"{WORKLOAD}: WARNING: the working tree's src/ or bench/ changed during the run")
    return {
        "description": __doc__,
        "before_commit": _git("rev-parse", BEFORE),
        "after": {
            "head": _git("rev-parse", "HEAD"),
            "dirty_files": len(_git("status", "--porcelain", "src", "bench").splitlines()),
            "tree_digest_start": digest_start,
            "tree_digest_end": digest_end,
            "changed_during_run": digest_end != digest_start,
        },
        "probes": probes,
        "parts": parts,
        "failed": failed,
        "count_mismatches": mismatches,
        "seconds": round(time.monotonic() - started, 1),
        "reps": reps,
        "rows": rows,
        "targets": [t.as_dict() for t in targets(rows)],
    }


def main(settings: Settings) -> Path:
    result = run(settings)
    path = write_result(WORKLOAD, settings, result)
    if result["failed"]:
        raise RuntimeError(f"{WORKLOAD}: parts failed: {result['failed']} (partial result: {path})")
    return path
