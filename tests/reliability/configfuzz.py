"""Hypothesis strategies that break the example config the way people (and tools) do.

:func:`mutated_configs` starts from ``examples/quickstart/checkpointd.yaml`` and applies one
to three mutations to its YAML tree: a value of the wrong type, a missing key, an unknown key
(often a typo), a bad duration, a bad cron expression, an environment reference (unset,
malformed, nested), a plugin ``type`` swapped for another. Now and then the dumped text is
damaged too: cut short, junk inserted, a tab in the indentation, a line doubled, bytes that
are not UTF-8. The result is the file's bytes.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import strategies as st

from tests.reliability.support import ROOT

EXAMPLE_DIR = ROOT / "examples" / "quickstart"
EXAMPLE = EXAMPLE_DIR / "checkpointd.yaml"

DURATION_KEYS = frozenset(
    {
        "graceful_shutdown_timeout",
        "trigger_poll_interval",
        "timeout",
        "delay",
        "max_delay",
        "interval",
        "jitter",
        "stable_for",
        "poll_interval",
        "max_age",
        "max_wait",
    }
)

BAD_DURATIONS: tuple[Any, ...] = (
    "10 minutes", "-1s", "1.5.3s", "1e3s", "s", "", "1y", "P1D", "0x10s", "∞", ".inf",
    "nan", "99999999999d", "1h-30m", "5 m s", "30", "1,5s", True, [], {}, -5, 1e308,
    float("inf"), float("nan"),
)  # fmt: skip
"""Durations no parser should take (``"30"`` is the one that is valid: 30 seconds)."""

BAD_CRONS: tuple[str, ...] = (
    "* * * *", "61 * * * *", "*/0 * * * *", "a b c d e", "* * * * * * * *", "@fortnightly",
    "", "1-/2 * * * *", "0 0 30 2 *", "*/-5 * * * *", "60-1 * * * *", "\t", "0 0 * * 8",
    "* * * * MON-", "0 25 * * *", "${CHECKPOINTD_FUZZ_UNSET}",
)  # fmt: skip

ENV_REFS: tuple[str, ...] = (
    "${CHECKPOINTD_FUZZ_UNSET}", "${CHECKPOINTD_FUZZ_UNSET:-}", "${CHECKPOINTD_FUZZ_UNSET:-30s}",
    "${", "${}", "${1BAD}", "${A B}", "$$", "$${X}", "${CHECKPOINTD_FUZZ_NUMBER}",
    "x${CHECKPOINTD_FUZZ_UNSET:-${NESTED}}y", "${CHECKPOINTD_FUZZ_BRACE}", "$", "${:-x}",
)  # fmt: skip

JUNK: tuple[str, ...] = (
    ":", "- ", "{", "[", "'", '"', "&a", "*a", "<<: *a", "!!python/object:os.system", "\t",
    "\x00", "\x1f", "\x7f", "\ufeff", "\u2028", "? ", "%YAML 9.9\n", "---\n", "...\n",
)  # fmt: skip
"""Text spliced into the YAML: syntax, tags, anchors, control and odd Unicode characters."""

FUZZ_ENV = {"CHECKPOINTD_FUZZ_NUMBER": "12", "CHECKPOINTD_FUZZ_BRACE": "${OTHER}"}
"""Variables the env references may find (a number; a value that looks like a reference)."""

TYPOS: tuple[str, ...] = (
    "timout", "validator", "trigers", "data-source", "Type", "colums", "max_retry",
    "state-dir", "cronn", "pattern ", "",
)  # fmt: skip

PLUGIN_TYPES: tuple[str, ...] = (
    "csv", "parquet", "ndjson", "inline", "kafka_batch", "not_null", "unique", "range",
    "in_set", "regex", "row_count", "schedule", "file", "kafka", "manual", "webhook", "slack",
    "nonsense", "",
)  # fmt: skip

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=24),
    st.sampled_from(BAD_DURATIONS + BAD_CRONS + ENV_REFS),
)
values: st.SearchStrategy[Any] = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


Location = tuple[Any, Any]  # (container, key or index)


def _locations(node: Any) -> list[Location]:
    """Every (container, key) pair under ``node``, depth first."""
    found: list[Location] = []
    if isinstance(node, dict):
        for key, child in node.items():
            found.append((node, key))
            found.extend(_locations(child))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found.append((node, index))
            found.extend(_locations(child))
    return found


def _dicts(node: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(node, dict):
        out.append(node)
        for child in node.values():
            out.extend(_dicts(child))
    elif isinstance(node, list):
        for child in node:
            out.extend(_dicts(child))
    return out


def _mutate(tree: Any, data: st.DataObject) -> str:
    """Apply one mutation to ``tree`` in place; what it did."""
    kind = data.draw(
        st.sampled_from(
            ["replace", "delete", "unknown_key", "duration", "cron", "env", "type", "empty"]
        )
    )
    locations = _locations(tree)
    if kind == "duration":
        spots = [loc for loc in locations if loc[1] in DURATION_KEYS]
        if spots:
            container, key = data.draw(st.sampled_from(spots))
            container[key] = data.draw(st.sampled_from(BAD_DURATIONS) | st.text(max_size=12))
            return f"duration {key}"
        kind = "replace"
    if kind == "cron":
        schedules = [d for d in _dicts(tree) if d.get("type") == "schedule"]
        if schedules:
            target = data.draw(st.sampled_from(schedules))
            target.pop("interval", None)
            target["cron"] = data.draw(st.sampled_from(BAD_CRONS) | st.text(max_size=20))
            return "cron"
        kind = "replace"
    if kind == "env":
        spots = [loc for loc in locations if isinstance(loc[0][loc[1]], str)]
        if spots:
            container, key = data.draw(st.sampled_from(spots))
            ref = data.draw(st.sampled_from(ENV_REFS))
            whole = data.draw(st.booleans())
            container[key] = ref if whole else f"{container[key]}{ref}"
            return f"env {key}"
        kind = "replace"
    if kind == "type":
        typed = [d for d in _dicts(tree) if "type" in d]
        if typed:
            target = data.draw(st.sampled_from(typed))
            target["type"] = data.draw(st.sampled_from(PLUGIN_TYPES))
            return "type"
        kind = "replace"
    if kind == "unknown_key":
        target = data.draw(st.sampled_from(_dicts(tree) or [tree]))
        name = data.draw(st.sampled_from(TYPOS) | st.text(min_size=1, max_size=10))
        target[name] = data.draw(values)
        return "unknown key"
    if kind == "empty":
        spots = [loc for loc in locations if isinstance(loc[0][loc[1]], dict | list)]
        if spots:
            container, key = data.draw(st.sampled_from(spots))
            container[key] = type(container[key])()
            return "emptied"
        kind = "replace"
    if not locations:
        return "nothing to mutate"
    container, key = data.draw(st.sampled_from(locations))
    if kind == "delete":
        del container[key]
        return f"deleted {key}"
    container[key] = data.draw(values)
    return f"replaced {key}"


def _damage(text: str, data: st.DataObject) -> bytes:
    """Sometimes break the YAML text itself."""
    how = data.draw(
        st.sampled_from(["none"] * 6 + ["truncate", "junk", "tab", "double", "bytes", "bom"])
    )
    if how == "none" or not text:
        return text.encode()
    at = data.draw(st.integers(min_value=0, max_value=len(text)))
    if how == "truncate":
        return text[:at].encode()
    if how == "junk":
        junk = data.draw(st.sampled_from(JUNK) | st.text(max_size=4))
        return (text[:at] + junk + text[at:]).encode()
    lines = text.splitlines(keepends=True)
    index = data.draw(st.integers(min_value=0, max_value=len(lines) - 1))
    if how == "tab":
        lines[index] = "\t" + lines[index].lstrip(" ")
        return "".join(lines).encode()
    if how == "double":
        lines.insert(index, lines[index])
        return "".join(lines).encode()
    if how == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    return text[:at].encode() + b"\xff\xfe\x80" + text[at:].encode()


@st.composite
def mutated_configs(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    """The example config, mutated: (file bytes, what was done)."""
    data = draw(st.data())
    tree = copy.deepcopy(_BASE)
    done = [_mutate(tree, data) for _ in range(draw(st.integers(min_value=1, max_value=3)))]
    text = yaml.dump(tree, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
    return _damage(text, data), done


_BASE: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when present: 10x faster
