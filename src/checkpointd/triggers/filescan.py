"""The file trigger's decisions, with no I/O: which names count, which entries are refused,
when a file version is stable, and its idempotency key.

The scanner in ``triggers/file_listing.py`` lists directories and hands over what it saw; a
:class:`Tracker` turns successive listings into "these versions are ready to fire".

Stability is measured on the daemon's own monotonic clock, never from a file's mtime: a file is
ready once two scans, ``stable_for`` apart, saw the same size and mtime. Trusting an old mtime
would fire at once after a restart, but mtimes come from the writer's (or NFS server's) clock and
tools such as ``tar`` or ``cp -p`` set old mtimes on files still being written; waiting one
``stable_for`` after a restart is the cheaper mistake.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple

if TYPE_CHECKING:
    from checkpointd.config.models import FileTrigger

EntryKind = Literal["file", "symlink", "directory", "other"]
"""What ``lstat`` says a directory entry is (``other``: FIFO, socket, device)."""

RefuseReason = Literal["symlink", "outside", "not_regular"]
"""Why an entry that matched the pattern will never fire."""

NameVerdict = Literal["candidate", "ignored", "marker"]


_Match = Callable[[str], "re.Match[str] | None"]


def _matcher(globs: Sequence[str]) -> _Match | None:
    """One compiled regex for several globs (one ``match`` per name instead of one per glob)."""
    if not globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs)).match


@dataclass(frozen=True, slots=True)
class Rules:
    """The name rules of one file trigger.

    Globs match case-sensitively against the file name, or against the path relative to the
    watched directory (``/``-separated) when the glob itself contains ``/``. ``ignore``
    replaces the default list (``*.part``, ``*.tmp``, ``.*``) when configured, so a config that
    sets it and still wants dotfiles skipped must list ``.*`` itself.
    """

    pattern: str = "*"
    ignore: tuple[str, ...] = ()
    marker: str | None = None
    stable_for: float = 0.0
    _pattern: _Match = field(init=False, repr=False, compare=False)
    _ignore_name: _Match | None = field(init=False, repr=False, compare=False)
    _ignore_rel: _Match | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pattern = _matcher([self.pattern])
        assert pattern is not None
        object.__setattr__(self, "_pattern", pattern)
        object.__setattr__(self, "_ignore_name", _matcher([g for g in self.ignore if "/" not in g]))
        object.__setattr__(self, "_ignore_rel", _matcher([g for g in self.ignore if "/" in g]))

    @classmethod
    def of(
        cls,
        pattern: str = "*",
        ignore: Iterable[str] = (),
        marker: str | None = None,
        stable_for: float = 0.0,
    ) -> Rules:
        return cls(pattern, tuple(ignore), marker, stable_for)

    @classmethod
    def from_spec(cls, spec: FileTrigger) -> Rules:
        return cls.of(spec.pattern, spec.ignore, spec.marker, spec.stable_for.total_seconds())

    def is_ignored(self, name: str, relpath: str) -> bool:
        """True when an ignore glob matches (also used to skip sub-directories)."""
        if self._ignore_name is not None and self._ignore_name(name) is not None:
            return True
        return self._ignore_rel is not None and self._ignore_rel(relpath) is not None

    def verdict(self, name: str, relpath: str) -> NameVerdict:
        """Classify a name before anything is stat'ed. The marker is recognised before the
        ignore globs apply, so a marker such as ``.done`` works with the default ``.*``."""
        if name == self.marker:
            return "marker"
        if self.is_ignored(name, relpath):
            return "ignored"
        text = relpath if "/" in self.pattern else name
        return "ignored" if self._pattern(text) is None else "candidate"


class Entry(NamedTuple):
    """One directory entry whose name is a candidate, as ``lstat`` saw it.

    ``path`` is absolute as listed (under the configured directory, not resolved). ``resolved``
    is where it really leads and ``root_resolved`` the real watched directory; ``resolved`` is
    empty when the scanner reached the entry through real (non-symlink) directories only, so
    it cannot lead elsewhere. (A NamedTuple: a scan builds one per file, and this is the
    cheapest immutable record to build.)
    """

    path: str
    root: str
    size: int
    mtime_ns: int
    kind: EntryKind = "file"
    resolved: str = ""
    root_resolved: str = ""

    @property
    def version(self) -> tuple[int, int]:
        return (self.size, self.mtime_ns)

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def directory(self) -> str:
        return os.path.dirname(self.path)

    @property
    def relative_path(self) -> str:
        """The path below the watched directory (the name, for a non-recursive trigger)."""
        return self.path[len(self.root) :].lstrip(os.sep)


def is_within(path: str, directory: str) -> bool:
    """True when ``path`` is ``directory`` or below it (both absolute and normalised)."""
    if path == directory:
        return True
    prefix = directory if directory.endswith(os.sep) else directory + os.sep
    return path.startswith(prefix)


def refuse_reason(entry: Entry) -> RefuseReason | None:
    """Why this entry must never fire, or None when it is a regular file inside its directory.

    A symlink that leads outside is reported as ``outside`` (the more alarming fact); one that
    stays inside is still refused as ``symlink``: the run would read whatever it points to at
    run time, which is not the version whose key was journaled.
    """
    if entry.resolved and not is_within(entry.resolved, entry.root_resolved or entry.root):
        return "outside"
    if entry.kind == "symlink":
        return "symlink"
    if entry.kind != "file":
        return "not_regular"
    return None


def file_key(entry: Entry) -> str:
    """The idempotency key of one file version: ``file:{path}:{size}:{mtime_ns}``."""
    return f"file:{entry.path}:{entry.size}:{entry.mtime_ns}"


@dataclass(frozen=True, slots=True)
class Listing:
    """What one scan saw.

    ``entries`` are the candidates (names already filtered); ``marker_dirs`` the directories
    holding the marker file; ``failed_dirs`` the directories that could not be read, with why.
    ``started``/``finished`` are monotonic times bracketing the scan.
    """

    entries: Sequence[Entry]
    started: float
    finished: float
    marker_dirs: frozenset[str] = frozenset()
    failed_dirs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after one scan.

    ``ready``: stable versions not yet fired by this process, oldest mtime first (the caller
    still asks the store whether an earlier process fired them). ``refused``: entries refused
    for the first time (or for a new reason), to log once. ``next_deadline``: the monotonic time
    at which the earliest unstable version could become stable, or None.
    """

    ready: list[Entry]
    refused: list[tuple[Entry, RefuseReason]]
    next_deadline: float | None


class _Track:
    """The stability state of the version currently at one path."""

    __slots__ = ("done", "mtime_ns", "since", "size")

    def __init__(self, size: int, mtime_ns: int, since: float) -> None:
        self.size = size
        self.mtime_ns = mtime_ns
        self.since = since
        self.done = False


class Tracker:
    """Stability and "already handled" state for the files currently present.

    It keeps one small record per path in the latest listing and forgets paths that vanish, so
    its size follows the directory, not the history (the store remembers fired keys). A path
    marked done stays done while its size and mtime are unchanged, which is what lets a steady
    directory cost no store queries per poll. Paths under a directory that could not be read
    this time keep their records, so a transient error does not restart their stability clock.
    """

    def __init__(self, stable_for: float, *, require_marker: bool = False) -> None:
        self._stable_for = stable_for
        self._require_marker = require_marker
        self._tracks: dict[str, _Track] = {}
        self._refused: dict[str, RefuseReason] = {}

    def __len__(self) -> int:
        return len(self._tracks)

    def observe(self, listing: Listing) -> Decision:
        """Fold one listing into the state and say which versions are ready."""
        stable_for = self._stable_for
        # A new version counts from the end of the scan that first saw it, and is judged at
        # the start of a later scan: the guaranteed unchanged span, however long scans take.
        now = listing.started
        tracks: dict[str, _Track] = {}
        refused: dict[str, RefuseReason] = {}
        newly_refused: list[tuple[Entry, RefuseReason]] = []
        ready: list[Entry] = []
        deadline: float | None = None
        old_tracks = self._tracks
        for entry in listing.entries:
            # The common case (a regular file reached through real directories) skips the call.
            reason = None if entry.kind == "file" and not entry.resolved else refuse_reason(entry)
            if reason is not None:
                refused[entry.path] = reason
                if self._refused.get(entry.path) != reason:
                    newly_refused.append((entry, reason))
                continue
            track = old_tracks.get(entry.path)
            if track is None or track.size != entry.size or track.mtime_ns != entry.mtime_ns:
                track = _Track(entry.size, entry.mtime_ns, listing.finished)
            tracks[entry.path] = track
            if track.done:
                continue
            due = track.since + stable_for
            if stable_for <= 0 or now >= due:
                if not self._require_marker or entry.directory in listing.marker_dirs:
                    ready.append(entry)
            elif deadline is None or due < deadline:
                deadline = due
        if listing.failed_dirs:
            failed = tuple(listing.failed_dirs)
            for path, track in old_tracks.items():
                if path not in tracks and any(is_within(path, d) for d in failed):
                    tracks[path] = track
            for path, reason in self._refused.items():
                if path not in refused and any(is_within(path, d) for d in failed):
                    refused[path] = reason
        self._tracks = tracks
        self._refused = refused
        ready.sort(key=lambda e: (e.mtime_ns, e.path))
        return Decision(ready=ready, refused=newly_refused, next_deadline=deadline)

    def mark_done(self, entry: Entry) -> None:
        """Remember that this version was handled (fired now, or fired by an earlier process)."""
        track = self._tracks.get(entry.path)
        if track is not None and (track.size, track.mtime_ns) == entry.version:
            track.done = True

    def is_done(self, path: str) -> bool:
        track = self._tracks.get(path)
        return track is not None and track.done
