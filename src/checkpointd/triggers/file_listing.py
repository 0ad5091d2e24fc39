"""Listing the file trigger's watched directories: what is there, by ``lstat`` alone (blocking).

:func:`scan_directories` walks the watched directories in a worker thread and
hands ``filescan`` a :class:`~.filescan.Listing` of the candidate entries, the
directories holding a marker file, and the directories it could not read. It
never opens an entry (a FIFO or device is never touched) and never follows a
symlinked directory; a symlinked file is listed with where it resolves, so that
the tracker can refuse one that leads outside its watched directory.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Sequence

from checkpointd.triggers.filescan import Entry, EntryKind, Listing, Rules

__all__ = ["scan_directories"]

_Pending = list[tuple[str, str, str]]
"""Directories still to list: (path as listed, real path, path relative to the root + "/")."""


def scan_directories(
    roots: Sequence[str],
    rules: Rules,
    *,
    recursive: bool = False,
    exclude: frozenset[str] = frozenset(),
    monotonic: Callable[[], float] = time.monotonic,
) -> Listing:
    """List the candidate files under absolute ``roots`` (blocking: run it in a thread).

    Only ``lstat`` is used. Symlinked directories are never followed, sub-directories whose
    name matches an ignore glob or that are in ``exclude`` are not entered, and in a
    non-recursive scan a sub-directory whose name matches the pattern is listed (to be refused).
    """
    started = monotonic()
    scan = _Scan(rules, recursive=recursive, exclude=exclude)
    for root in roots:
        scan.root(root)
    return Listing(
        list(scan.entries.values()), started, monotonic(), frozenset(scan.markers), scan.failed
    )


class _Scan:
    """One scan's findings, gathered directory by directory."""

    def __init__(self, rules: Rules, *, recursive: bool, exclude: frozenset[str]) -> None:
        self._rules = rules
        self._recursive = recursive
        self._exclude = exclude
        self.entries: dict[str, Entry] = {}
        self.markers: set[str] = set()
        self.failed: dict[str, str] = {}

    def root(self, root: str) -> None:
        """List ``root`` and, in a recursive scan, the sub-directories it may enter."""
        root_real = os.path.realpath(root)
        pending: _Pending = [(root, root_real, "")]
        while pending:
            directory, real_dir, rel = pending.pop()
            try:
                self._directory(root, root_real, directory, real_dir, rel, pending)
            except FileNotFoundError as exc:
                # A sub-directory removed since its parent was listed is simply gone.
                if directory == root:
                    self.failed[directory] = _describe(exc)
            except OSError as exc:
                self.failed[directory] = _describe(exc)

    def _directory(
        self, root: str, root_real: str, directory: str, real_dir: str, rel: str, pending: _Pending
    ) -> None:
        """Note the entries of one directory; queue the sub-directories to enter."""
        # The per-entry path of every scan (100,000 files a poll): kept in one loop.
        rules, entries = self._rules, self.entries
        with os.scandir(directory) as listing:
            for item in listing:
                name = item.name
                relpath = rel + name
                if self._recursive:
                    try:
                        is_dir = item.is_dir(follow_symlinks=False)
                    except OSError:
                        continue
                    if is_dir:
                        real_sub = os.path.join(real_dir, name)
                        if (
                            item.path not in self._exclude
                            and real_sub not in self._exclude
                            and not rules.is_ignored(name, relpath)
                        ):
                            pending.append((item.path, real_sub, relpath + "/"))
                        continue
                verdict = rules.verdict(name, relpath)
                if verdict == "ignored":
                    continue
                try:
                    st = item.stat(follow_symlinks=False)
                except OSError:
                    continue  # gone between listing and lstat
                kind = _kind(st.st_mode)
                if verdict == "marker":
                    if kind == "file":
                        self.markers.add(directory)
                elif kind == "symlink":
                    resolved = os.path.realpath(item.path)
                    entries[item.path] = Entry(
                        item.path, root, st.st_size, st.st_mtime_ns, kind, resolved, root_real
                    )
                else:
                    # Reached through real directories only: it cannot lead outside.
                    entries[item.path] = Entry(item.path, root, st.st_size, st.st_mtime_ns, kind)


def _kind(mode: int) -> EntryKind:
    if stat.S_ISREG(mode):  # checked first: nearly every entry is a regular file
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    return "other"


def _describe(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
