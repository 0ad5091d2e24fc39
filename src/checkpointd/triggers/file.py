"""The file trigger: fire once per version of each file that lands in watched directories.

It polls (which works on NFS and shared sidecar volumes where inotify sees nothing); with
``use_inotify: true`` and the optional ``watchfiles`` package installed, change notifications
only wake the poll loop early. Each scan runs in a worker thread and uses ``lstat`` alone, so a
big directory never blocks the event loop and a FIFO or device is never opened.

Once per version: a version's key (path, size, mtime_ns) is checked in the store before it
fires and marked seen after ``emit`` returns, so a restart neither re-fires a file nor misses
one that landed while the daemon was down (it is found by the first scan and fires after
``stable_for``, see ``filescan``). Within one process the tracker remembers which unchanged
files were handled, so a steady directory costs no store query per poll.

Seen keys live in the namespace ``file:{checkpoint}``: two checkpoints watching one directory
each get every file, and reordering a checkpoint's triggers does not re-fire anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

import structlog

from checkpointd.clock import SYSTEM_CLOCK, Clock
from checkpointd.config.models import FileTrigger
from checkpointd.events import TriggerEvent
from checkpointd.protocols import Emit, StateStore
from checkpointd.triggers.file_listing import scan_directories
from checkpointd.triggers.file_move import move_file
from checkpointd.triggers.filescan import (
    Decision,
    Entry,
    Listing,
    Rules,
    Tracker,
    file_key,
    is_within,
)

__all__ = ["FileSource", "WatchFactory"]

_LOG = structlog.get_logger("checkpointd.trigger.file")

# Early scans (a pending file's deadline, a change notification) start at least this many
# scan durations after the previous one ends.
_EARLY_SCAN_SPACING = 10.0
_MIN_EARLY_GAP = 0.02


class _StopEvent(Protocol):
    def is_set(self) -> bool: ...


WatchFactory = Callable[[Sequence[str], _StopEvent], AsyncIterator[object]]
"""Makes a change-notification stream over some directories (``watchfiles.awatch`` shape);
each item only means "something changed, scan now". It ends when the stop event is set."""


def _watchfiles_factory(recursive: bool) -> WatchFactory | None:
    try:
        # Imported by name: an optional dependency that mypy may not find installed.
        watchfiles = importlib.import_module("watchfiles")
    except ImportError:
        return None

    def factory(paths: Sequence[str], stop: _StopEvent) -> AsyncIterator[object]:
        changes: AsyncIterator[object] = watchfiles.awatch(
            *paths, watch_filter=None, recursive=recursive, stop_event=stop
        )
        return changes

    return factory


class FileSource:
    """A :class:`~checkpointd.protocols.TriggerSource` for one ``type: file`` trigger.

    Events have type ``file``, key ``file:{path}:{size}:{mtime_ns}`` and params ``path``
    (absolute, as listed under the configured directory), ``name``, ``directory`` (the file's
    own directory), ``root`` (the watched directory it was found under), ``relative_path``,
    ``size`` and ``mtime_ns``.

    Refused entries (symlinks, FIFOs, devices, directories matching the pattern, paths that
    resolve outside the watched directory) are logged once per path and counted through
    ``on_refused(reason)``. A directory that cannot be read is logged when its state changes and
    polled again; it never stops the trigger. ``watch`` replaces the watchfiles stream (tests).
    """

    def __init__(
        self,
        checkpoint: str,
        index: int,
        spec: FileTrigger,
        *,
        state: StateStore,
        clock: Clock = SYSTEM_CLOCK,
        log: Any = None,
        on_refused: Callable[[str], None] | None = None,
        watch: WatchFactory | None = None,
    ) -> None:
        self._checkpoint = checkpoint
        self._name = f"{checkpoint}/file[{index}]"
        self._spec = spec
        self._state = state
        self._clock = clock
        self._log = (log if log is not None else _LOG).bind(trigger=self._name)
        self._on_refused = on_refused
        self._namespace = f"file:{checkpoint}"
        self._roots = tuple(dict.fromkeys(os.path.abspath(d) for d in spec.all_directories))
        self._rules = Rules.from_spec(spec)
        # A zero interval (the config allows it) would spin; 10 ms is still "as fast as it can".
        self._poll_interval = max(spec.poll_interval.total_seconds(), 0.01)
        self._move_ok = (
            None if spec.move_on_success is None else os.path.abspath(spec.move_on_success)
        )
        self._move_failed = (
            None if spec.move_on_failure is None else os.path.abspath(spec.move_on_failure)
        )
        moves = [d for d in (self._move_ok, self._move_failed) if d is not None]
        # Files moved into a sub-directory of a watched one must not fire again from there.
        self._exclude = frozenset(moves + [os.path.realpath(d) for d in moves])
        self._tracker = Tracker(self._rules.stable_for, require_marker=spec.marker is not None)
        self._dir_state: dict[str, str] = {}
        self._watch = watch
        if watch is None and spec.use_inotify:
            self._watch = _watchfiles_factory(spec.recursive)
            if self._watch is None:
                self._log.warning(
                    "use_inotify is set but the watchfiles package is not installed; polling only",
                    hint="pip install watchfiles",
                )
        self._wake = asyncio.Event()
        self._roots_changed = asyncio.Event()
        self._readable_roots: tuple[str, ...] = ()
        self._next_deadline: float | None = None
        self._scan_cost = 0.0
        self._scanned_at = 0.0
        self._slow = False
        self.scans = 0
        """How many scans have completed, with the emits they called for."""

    @property
    def name(self) -> str:
        return self._name

    @property
    def directories(self) -> tuple[str, ...]:
        return self._roots

    async def run(self, emit: Emit) -> None:
        """Poll until cancelled, emitting one event per stable new file version."""
        async with asyncio.TaskGroup() as tasks:
            if self._watch is not None:
                tasks.create_task(self._watch_loop(self._watch), name=f"{self._name} watch")
            await self._poll_loop(emit)

    async def scan_once(self, emit: Emit) -> bool:
        """One scan and the emits it calls for. False when it stopped early because emitting
        took long (backpressure): the rest waits for a fresh scan."""
        # Folding 100,000 entries into the tracker takes a while too: both run in the worker
        # thread. Nothing else touches the tracker meanwhile (this coroutine is waiting).
        listing, decision, done_at = await asyncio.to_thread(self._scan_and_observe)
        self._note_directories(listing)
        self._next_deadline = decision.next_deadline
        # The work itself, not the wait for the event loop to pick the result up.
        self._scan_cost = done_at - listing.started
        self._scanned_at = listing.finished
        for entry, reason in decision.refused:
            self._log.warning(
                "file refused",
                path=entry.path,
                reason=reason,
                kind=entry.kind,
                resolved=entry.resolved,
            )
            if self._on_refused is not None:
                self._on_refused(reason)
        # A listing goes stale while emit waits (backpressure): after a while, rescan before
        # firing more. "A while" grows with the scan's cost, so that a slow store (say, the
        # first has_seen of 100,000 files after a restart) does not cause a rescan per second.
        stale_at = self._clock.monotonic() + max(
            self._poll_interval, _EARLY_SCAN_SPACING * self._scan_cost
        )
        try:
            for entry in decision.ready:
                if self._clock.monotonic() > stale_at:
                    return False
                await self._fire(entry, emit)
            return True
        finally:
            self.scans += 1

    def _scan_and_observe(self) -> tuple[Listing, Decision, float]:
        listing = scan_directories(
            self._roots,
            self._rules,
            recursive=self._spec.recursive,
            exclude=self._exclude,
            monotonic=self._clock.monotonic,
        )
        decision = self._tracker.observe(listing)
        return listing, decision, self._clock.monotonic()

    async def finish(self, event: TriggerEvent, status_ok: bool) -> str | None:
        """Move the event's file to ``move_on_success`` / ``move_on_failure`` after its run.

        Returns the new path, or None when nothing was moved (no directory configured, not one
        of this trigger's files, or the file changed or vanished since it fired). A failed move
        is logged, never raised: the run's result is already stored.
        """
        target = self._move_ok if status_ok else self._move_failed
        path = event.params.get("path")
        if target is None or event.type != "file" or path is None:
            return None
        if not any(is_within(path, root) for root in self._roots):
            # Another file trigger's event (the daemon asks every source of the checkpoint).
            return None
        try:
            version = (int(event.params["size"]), int(event.params["mtime_ns"]))
            moved = await asyncio.to_thread(move_file, path, version, target)
        except (OSError, KeyError, ValueError) as exc:
            self._log.warning("could not move file", path=path, target=target, error=str(exc))
            return None
        if moved is None:
            self._log.info("file changed or vanished since it fired; not moved", path=path)
        else:
            self._log.info("file moved", path=path, to=moved, status_ok=status_ok)
        return moved

    # ------------------------------------------------------------------ internals

    async def _poll_loop(self, emit: Emit) -> None:
        while True:
            self._wake.clear()
            complete = await self.scan_once(emit)
            if not complete:
                continue
            # Polls are timed from the end of the previous scan (fixed delay, not fixed rate):
            # the n-th scan after the one that first saw a version starts at least
            # n * poll_interval after that scan ended, so stable_for = 2 * poll_interval takes
            # two more polls, not three, however long scans take.
            after = self._scanned_at
            cost = self._scan_cost
            # However short poll_interval is for the directory's size, idle at least as long
            # as a scan takes: a huge directory gets slower polls, not a saturated core.
            interval = max(self._poll_interval, cost)
            self._note_slow_scans(interval, cost)
            # Early scans (a pending file's deadline, a change notification) keep a gap of
            # ten scan durations, so they never make scanning more than a tenth of the time.
            gap = min(interval, max(_MIN_EARLY_GAP, _EARLY_SCAN_SPACING * cost))
            wake_at = after + interval
            if self._next_deadline is not None:
                wake_at = min(wake_at, max(self._next_deadline, after + gap))
            await self._sleep_until(wake_at)
            if self._wake.is_set():
                await asyncio.sleep(max(0.0, after + gap - self._clock.monotonic()))

    def _note_slow_scans(self, interval: float, cost: float) -> None:
        slow = interval > self._poll_interval
        if slow and not self._slow:
            self._log.warning(
                "scans take longer than poll_interval; polling less often",
                scan_seconds=round(cost, 3),
                poll_interval_seconds=self._poll_interval,
                effective_interval_seconds=round(interval, 3),
                files=len(self._tracker),
                hint="raise poll_interval, or use move_on_success to keep the directory small",
            )
        self._slow = slow

    async def _sleep_until(self, when: float) -> None:
        delay = when - self._clock.monotonic()
        if delay <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()

    async def _fire(self, entry: Entry, emit: Emit) -> None:
        key = file_key(entry)
        if await self._state.has_seen(self._namespace, key):
            self._tracker.mark_done(entry)
            return
        event = TriggerEvent(
            type="file",
            key=key,
            fired_at=self._clock.now(),
            checkpoint=self._checkpoint,
            params={
                "path": entry.path,
                "name": entry.name,
                "directory": entry.directory,
                "root": entry.root,
                "relative_path": entry.relative_path,
                "size": str(entry.size),
                "mtime_ns": str(entry.mtime_ns),
            },
        )
        accepted = await emit(event)
        # Marked seen even when emit says "duplicate": the journal already has the key.
        await self._state.mark_seen(self._namespace, [key])
        self._tracker.mark_done(entry)
        self._log.debug("file fired", path=entry.path, key=key, duplicate=not accepted)

    def _note_directories(self, listing: Listing) -> None:
        """Log each directory whose readability changed since the last scan."""
        failed = listing.failed_dirs
        for directory, error in failed.items():
            if self._dir_state.get(directory) != error:
                self._log.warning(
                    "cannot read watched directory; will keep polling",
                    directory=directory,
                    error=error,
                )
        for directory in self._dir_state.keys() - failed.keys():
            self._log.info("directory error cleared", directory=directory)
        self._dir_state = dict(failed)
        readable = tuple(r for r in self._roots if r not in failed)
        if readable != self._readable_roots:
            self._readable_roots = readable
            self._roots_changed.set()

    async def _watch_loop(self, factory: WatchFactory) -> None:
        """Wake the poll loop on change notifications; restart when the set of readable roots
        changes. Never raises (polling goes on regardless)."""
        last_error: str | None = None
        while True:
            await self._roots_changed.wait()
            self._roots_changed.clear()
            roots = self._readable_roots
            if not roots:
                continue
            try:
                async for _changes in factory(roots, self._roots_changed):
                    self._wake.set()
                last_error = None
            except Exception as exc:  # a broken watcher must not stop polling
                if str(exc) != last_error:
                    last_error = str(exc)
                    self._log.warning(
                        "change notifications failed; polling only until the next retry",
                        error=last_error,
                    )
            if not self._roots_changed.is_set():
                # The stream ended or failed on its own: retry later, polling meanwhile.
                await asyncio.sleep(max(self._poll_interval, 1.0))
                self._roots_changed.set()
