"""Print the figures the reliability tests left in .cache/reliability/ as a Markdown table.

python -m tests.reliability.report      (scripts/reliability runs it after the suite)
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tests.reliability.support import FIGURES_DIR

HIDDEN = {"test", "mode", "series"}
"""Keys not shown in the table (the soak's sample series stays in its JSON file)."""


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_format(v)}" for k, v in value.items())
    if isinstance(value, list):
        return " → ".join(_format(v) for v in value)
    return str(value)


def render() -> str:
    rows = ["| test | mode | figures |", "| --- | --- | --- |"]
    for path in sorted(FIGURES_DIR.glob("*.json")):
        data = json.loads(path.read_text())
        shown = "; ".join(f"{k} = {_format(v)}" for k, v in data.items() if k not in HIDDEN)
        rows.append(f"| `{data['test'].split('::')[-1]}` | {data['mode']} | {shown} |")
    return "\n".join(rows)


def main() -> int:
    if not FIGURES_DIR.is_dir():
        print(f"no figures in {FIGURES_DIR}: run the suite first", file=sys.stderr)
        return 1
    print(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
