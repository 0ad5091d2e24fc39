"""The file trigger's pure decisions: names, refusals, keys and stability, with no filesystem."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from checkpointd.config.models import FileTrigger
from checkpointd.triggers.filescan import (
    Entry,
    EntryKind,
    Listing,
    Rules,
    Tracker,
    file_key,
    is_within,
    refuse_reason,
)

DEFAULT_IGNORE = ("*.part", "*.tmp", ".*")
ROOT = "/data/in"


def entry(
    name: str,
    size: int = 10,
    mtime_ns: int = 1_000,
    *,
    kind: EntryKind = "file",
    resolved: str | None = None,
    root: str = ROOT,
) -> Entry:
    path = f"{root}/{name}"
    return Entry(path, root, size, mtime_ns, kind, resolved or path, root)


def listing(
    at: float,
    entries: Sequence[Entry],
    *,
    took: float = 0.0,
    markers: Sequence[str] = (),
    failed: Sequence[str] = (),
) -> Listing:
    return Listing(
        list(entries), at, at + took, frozenset(markers), {d: "Permission denied" for d in failed}
    )


def ready_names(tracker: Tracker, scan: Listing) -> list[str]:
    return [e.relative_path for e in tracker.observe(scan).ready]


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("pattern", "ignore", "marker", "name", "relpath", "expected"),
    [
        ("*", DEFAULT_IGNORE, None, "a.csv", "a.csv", "candidate"),
        ("*.csv", DEFAULT_IGNORE, None, "a.json", "a.json", "ignored"),
        ("*.csv", DEFAULT_IGNORE, None, "A.CSV", "A.CSV", "ignored"),  # case-sensitive
        ("*", DEFAULT_IGNORE, None, "a.csv.part", "a.csv.part", "ignored"),
        ("*", DEFAULT_IGNORE, None, "upload.tmp", "upload.tmp", "ignored"),
        ("*.csv", DEFAULT_IGNORE, None, ".a.csv", ".a.csv", "ignored"),  # dotfile
        ("*.csv", (), None, ".a.csv", ".a.csv", "candidate"),  # ignore list replaced
        ("*", DEFAULT_IGNORE, "_SUCCESS", "_SUCCESS", "_SUCCESS", "marker"),
        ("*", DEFAULT_IGNORE, ".done", ".done", ".done", "marker"),  # marker beats ".*"
        ("*", DEFAULT_IGNORE, "_SUCCESS", "_SUCCESS.csv", "_SUCCESS.csv", "candidate"),
        ("day=*/*.csv", DEFAULT_IGNORE, None, "a.csv", "day=1/a.csv", "candidate"),
        ("day=*/*.csv", DEFAULT_IGNORE, None, "a.csv", "a.csv", "ignored"),
        ("*.csv", ("archive/*",), None, "a.csv", "archive/a.csv", "ignored"),
        ("*.csv", ("archive/*",), None, "a.csv", "a.csv", "candidate"),
    ],
)
def test_name_verdicts(pattern, ignore, marker, name, relpath, expected):
    assert Rules.of(pattern, ignore, marker).verdict(name, relpath) == expected


def test_rules_from_the_config_use_its_defaults():
    rules = Rules.from_spec(FileTrigger(type="file", directory="in", stable_for="5s"))
    assert rules.stable_for == 5.0
    assert rules.ignore == DEFAULT_IGNORE
    assert rules.verdict(".x", ".x") == "ignored"


# ---------------------------------------------------------------- refusals and keys


@pytest.mark.parametrize(
    ("kind", "resolved", "expected"),
    [
        ("file", f"{ROOT}/a.csv", None),
        ("symlink", f"{ROOT}/b.csv", "symlink"),  # stays inside, still refused
        ("symlink", "/etc/passwd", "outside"),
        ("symlink", ROOT, "symlink"),  # points at the watched directory itself
        ("file", "/elsewhere/a.csv", "outside"),  # a parent was swapped for a symlink
        ("file", "/data/inbox/a.csv", "outside"),  # a shared prefix is not "inside"
        ("other", f"{ROOT}/a.csv", "not_regular"),  # FIFO, socket, device
        ("directory", f"{ROOT}/a.csv", "not_regular"),
    ],
)
def test_refuse_reasons(kind, resolved, expected):
    assert refuse_reason(entry("a.csv", kind=kind, resolved=resolved)) == expected


@pytest.mark.parametrize(
    ("path", "directory", "inside"),
    [
        ("/a/b", "/a", True),
        ("/a", "/a", True),
        ("/ab", "/a", False),
        ("/a/b", "/", True),
        ("/a/b/c", "/a/b/", True),
    ],
)
def test_is_within(path, directory, inside):
    assert is_within(path, directory) is inside


def test_the_key_names_path_size_and_mtime():
    assert file_key(entry("a.csv", 42, 1_700_000_000_123_456_789)) == (
        "file:/data/in/a.csv:42:1700000000123456789"
    )


def test_entry_paths():
    nested = entry("day=1/a.csv")
    assert (nested.name, nested.directory, nested.relative_path) == (
        "a.csv",
        "/data/in/day=1",
        "day=1/a.csv",
    )


# ---------------------------------------------------------------- stability


def test_a_new_file_is_ready_once_unchanged_for_stable_for():
    tracker = Tracker(2.0)
    assert ready_names(tracker, listing(0.0, [entry("a")])) == []
    assert ready_names(tracker, listing(1.0, [entry("a")])) == []
    assert ready_names(tracker, listing(2.0, [entry("a")])) == ["a"]


def test_stability_counts_from_the_end_of_the_scan_that_first_saw_the_version():
    tracker = Tracker(2.0)
    tracker.observe(listing(0.0, [entry("a")], took=0.5))
    assert ready_names(tracker, listing(2.4, [entry("a")])) == []
    assert ready_names(tracker, listing(2.5, [entry("a")])) == ["a"]


def test_a_growing_file_is_never_ready():
    tracker = Tracker(2.0)
    for second in range(10):
        scan = listing(float(second), [entry("a", size=100 * second, mtime_ns=second)])
        assert ready_names(tracker, scan) == []


def test_a_touched_file_restarts_its_wait():
    tracker = Tracker(2.0)
    tracker.observe(listing(0.0, [entry("a", mtime_ns=1)]))
    assert ready_names(tracker, listing(1.5, [entry("a", mtime_ns=2)])) == []
    assert ready_names(tracker, listing(3.0, [entry("a", mtime_ns=2)])) == []
    assert ready_names(tracker, listing(3.5, [entry("a", mtime_ns=2)])) == ["a"]


def test_with_no_stable_for_a_file_is_ready_on_first_sight():
    assert ready_names(Tracker(0.0), listing(0.0, [entry("a")], took=0.5)) == ["a"]


def test_a_done_version_stays_done_and_a_new_version_fires_again():
    tracker = Tracker(1.0)
    tracker.observe(listing(0.0, [entry("a", 10, 1)]))
    (ready,) = tracker.observe(listing(1.0, [entry("a", 10, 1)])).ready
    tracker.mark_done(ready)
    assert tracker.is_done(ready.path)
    assert ready_names(tracker, listing(5.0, [entry("a", 10, 1)])) == []
    assert ready_names(tracker, listing(6.0, [entry("a", 20, 2)])) == []
    assert ready_names(tracker, listing(7.0, [entry("a", 20, 2)])) == ["a"]


def test_marking_an_older_version_done_does_not_hide_the_current_one():
    tracker = Tracker(0.0)
    tracker.observe(listing(0.0, [entry("a", 20, 2)]))
    tracker.mark_done(entry("a", 10, 1))
    assert ready_names(tracker, listing(1.0, [entry("a", 20, 2)])) == ["a"]


def test_a_vanished_file_is_forgotten_and_waits_again_when_it_returns():
    tracker = Tracker(1.0)
    tracker.observe(listing(0.0, [entry("a"), entry("b")]))
    for e in tracker.observe(listing(1.0, [entry("a"), entry("b")])).ready:
        tracker.mark_done(e)
    tracker.observe(listing(2.0, [entry("b")]))
    assert len(tracker) == 1
    assert ready_names(tracker, listing(3.0, [entry("a"), entry("b")])) == []
    assert ready_names(tracker, listing(4.0, [entry("a"), entry("b")])) == ["a"]


def test_ready_files_come_oldest_first():
    tracker = Tracker(0.0)
    scan = listing(0.0, [entry("new", mtime_ns=3), entry("old", mtime_ns=1), entry("mid", 1, 2)])
    assert ready_names(tracker, scan) == ["old", "mid", "new"]


def test_the_next_deadline_is_the_earliest_pending_file():
    tracker = Tracker(2.0)
    tracker.observe(listing(0.0, [entry("a")]))
    decision = tracker.observe(listing(1.0, [entry("a"), entry("b")], took=0.25))
    assert decision.next_deadline == 2.0
    decision = tracker.observe(listing(2.0, [entry("a"), entry("b")]))
    assert [e.name for e in decision.ready] == ["a"]
    assert decision.next_deadline == 3.25
    tracker.mark_done(decision.ready[0])
    for e in tracker.observe(listing(3.5, [entry("a"), entry("b")])).ready:
        tracker.mark_done(e)
    assert tracker.observe(listing(4.0, [entry("a"), entry("b")])).next_deadline is None


def test_an_unreadable_directory_keeps_the_stability_of_its_files():
    tracker = Tracker(2.0)
    tracker.observe(listing(0.0, [entry("a"), entry("sub/b")]))
    tracker.observe(listing(1.0, [entry("a")], failed=[f"{ROOT}/sub"]))
    assert len(tracker) == 2
    assert ready_names(tracker, listing(2.0, [entry("a"), entry("sub/b")])) == ["a", "sub/b"]


# ---------------------------------------------------------------- markers


def test_with_a_marker_a_stable_file_waits_for_the_marker_in_its_own_directory():
    tracker = Tracker(1.0, require_marker=True)
    files = [entry("a"), entry("sub/b")]
    tracker.observe(listing(0.0, files))
    assert ready_names(tracker, listing(5.0, files)) == []
    assert ready_names(tracker, listing(6.0, files, markers=[f"{ROOT}/sub"])) == ["sub/b"]
    assert ready_names(tracker, listing(7.0, files, markers=[ROOT, f"{ROOT}/sub"])) == [
        "a",
        "sub/b",
    ]


def test_a_file_waiting_for_its_marker_sets_no_deadline():
    tracker = Tracker(1.0, require_marker=True)
    tracker.observe(listing(0.0, [entry("a")]))
    assert tracker.observe(listing(2.0, [entry("a")])).next_deadline is None


# ---------------------------------------------------------------- refusals


def test_a_refused_entry_is_reported_once_per_path_and_reason():
    tracker = Tracker(0.0)
    link = entry("l", kind="symlink", resolved="/etc/passwd")
    first = tracker.observe(listing(0.0, [link, entry("a")]))
    assert [(e.name, why) for e, why in first.refused] == [("l", "outside")]
    assert [e.name for e in first.ready] == ["a"]
    assert tracker.observe(listing(1.0, [link])).refused == []
    inside = entry("l", kind="symlink", resolved=f"{ROOT}/a")
    assert [why for _, why in tracker.observe(listing(2.0, [inside])).refused] == ["symlink"]
    tracker.observe(listing(3.0, []))
    assert [why for _, why in tracker.observe(listing(4.0, [inside])).refused] == ["symlink"]


def test_a_refused_entry_never_becomes_ready():
    tracker = Tracker(0.0)
    fifo = entry("p", kind="other")
    for second in range(3):
        assert ready_names(tracker, listing(float(second), [fifo])) == []
    assert len(tracker) == 0
