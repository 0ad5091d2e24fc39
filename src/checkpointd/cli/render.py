"""Plain-text tables for the terminal: pure functions from results to strings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from checkpointd.checkpoints.result import CheckpointResult, Status, format_timestamp

_MARK = {
    Status.SUCCESS: "ok",
    Status.WARNING: "WARN",
    Status.FAILURE: "FAIL",
    Status.ERROR: "ERROR",
    Status.TIMEOUT: "TIMEOUT",
    Status.CANCELLED: "CANCELLED",
    Status.SKIPPED: "skipped",
}


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces, with a rule under the header."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _shorten(value: str, width: int) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"


def render_result(result: CheckpointResult) -> str:
    """A run as an operator reads it: a headline, then one row per validator."""
    head = (
        f"{result.checkpoint}: {_MARK[result.status]} ({result.status.value}) "
        f"in {result.duration_seconds:.3f}s, attempt {result.attempt}"
    )
    if result.row_count is not None:
        head += f", {result.row_count} rows"
    parts = [head, f"run {result.run_id}"]
    if result.trigger is not None:
        parts.append(f"trigger {result.trigger.type} {result.trigger.key}")
    if result.error:
        parts.append(f"error: {result.error}")
    if result.validators:
        rows = []
        for v in result.validators:
            target = v.column or ",".join(v.columns) or "-"
            sample = ", ".join(repr(s) for s in v.sample)
            rows.append(
                [
                    _MARK[v.status],
                    v.name or v.type,
                    _shorten(target, 24),
                    v.severity,
                    f"{v.failed_count}/{v.checked_count}",
                    f"{v.failed_ratio:.2%}",
                    _shorten(sample, 40),
                    _shorten(v.message, 60),
                ]
            )
        headers = ["", "validator", "column", "severity", "failed", "ratio", "sample", "message"]
        parts.append("")
        parts.append(table(headers, rows))
    return "\n".join(parts)


def render_history(results: Sequence[CheckpointResult]) -> str:
    """Newest first, one row per run."""
    if not results:
        return "no runs recorded yet"
    rows = [
        [
            format_timestamp(r.started_at),
            r.checkpoint,
            r.status.value,
            f"{r.duration_seconds:.3f}s",
            r.attempt,
            r.trigger.type if r.trigger else "-",
            sum(1 for v in r.validators if not v.status.is_ok),
            r.run_id,
        ]
        for r in results
    ]
    headers = ["started", "checkpoint", "status", "duration", "attempt", "trigger", "failed", "run"]
    return table(headers, rows)
