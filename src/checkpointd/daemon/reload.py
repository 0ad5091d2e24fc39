"""Reloading the config file of a running daemon (SIGHUP, ``POST /-/reload``, the watcher).

A reload is all or nothing: the file is parsed and validated, then every new
checkpoint and trigger source is built, and only when all of that worked does
anything running change. Then, in order: removed checkpoints' triggers stop
and their metric series go; changed checkpoints get new objects (a run in
flight keeps the object, hence the config, it started with); live daemon
settings apply; new trigger sources start.

With ``daemon.watch_config: true`` a critical task of the daemon reloads
whenever the file's content changes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import structlog

from checkpointd.config import Config, diff_configs, load_config
from checkpointd.daemon.http import is_loopback
from checkpointd.errors import CheckpointdError, ConfigError
from checkpointd.logs import configure_logging
from checkpointd.runtime.config import AsyncRunnerConfig

if TYPE_CHECKING:
    from pydantic import SecretStr

    from checkpointd.config.diff import ConfigDiff
    from checkpointd.config.models import CheckpointConfig, RetentionConfig
    from checkpointd.daemon.metrics import Metrics
    from checkpointd.daemon.sdnotify import SdNotifier
    from checkpointd.daemon.supervision import TaskSupervisor
    from checkpointd.protocols import TriggerSource
    from checkpointd.runtime.executor import RunExecutor
    from checkpointd.runtime.overlap import OverlapCheckpoint, OverlapGate
    from checkpointd.runtime.runner import AsyncCheckpointRunner
    from checkpointd.runtime.triggerset import TriggerSet

__all__ = ["ReloadResult", "Reloadable", "Reloader"]

log = structlog.get_logger("checkpointd.control")

WATCH_CONFIG_EVERY = 1.0

BREATHE_EVERY = 50
"""Items a reload builds or registers between two yields to the loop (each is ~0.1-0.2 ms:
50 keep any one step of a 1,000-checkpoint reload to a few milliseconds)."""


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    summary: str
    errors: list[str] = field(default_factory=list)


class Reloadable(Protocol):
    """The daemon as a reload sees it (:class:`~checkpointd.daemon.app.Daemon` is one)."""

    config: Config
    """The config running now; a reload replaces it."""
    http_token: SecretStr | None
    """The bearer token mutating HTTP calls need; a reload may change it."""

    @property
    def insecure(self) -> bool:
        """``--insecure``: a reload may leave a non-loopback listener without a token."""
        ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def notifier(self) -> SdNotifier: ...

    @property
    def executor(self) -> RunExecutor: ...

    @property
    def triggers(self) -> TriggerSet: ...

    @property
    def checkpoints(self) -> dict[str, OverlapCheckpoint]:
        """The checkpoints by name; a reload adds, replaces and removes entries."""
        ...

    @property
    def runner(self) -> AsyncCheckpointRunner | None: ...

    @property
    def tasks(self) -> TaskSupervisor | None:
        """Where the config watcher runs (while the daemon serves)."""
        ...

    @property
    def started(self) -> bool:
        """True once start-up finished (triggers running)."""
        ...

    @property
    def draining(self) -> bool:
        """True from the moment a stop was asked for."""
        ...

    def overlap_checkpoint(
        self, cp: CheckpointConfig, gate: OverlapGate | None = None
    ) -> OverlapCheckpoint:
        """A new checkpoint object for ``cp`` (sharing ``gate`` with the one it replaces)."""
        ...

    def build_sources(self, cp: CheckpointConfig) -> list[TriggerSource]:
        """The trigger sources of ``cp``, built but not started."""
        ...

    def sweep_retention_now(self, retention: RetentionConfig) -> None:
        """Keep what ``retention`` says from now on, starting with a sweep at once."""
        ...


class Reloader:
    """Reloads ``daemon``'s config, one reload at a time; ``status_line`` goes to systemd after."""

    def __init__(self, daemon: Reloadable, *, status_line: Callable[[], str]) -> None:
        self.daemon = daemon
        self._status_line = status_line
        self._lock = asyncio.Lock()  # SIGHUP, HTTP and the watcher may ask at once
        self._watch: asyncio.Task[None] | None = None

    async def reload(self, reason: str) -> ReloadResult:
        """Parse and validate first; apply only what changed; never apply an invalid config."""
        async with self._lock:
            if not self.daemon.started or self.daemon.draining:
                log.warning("reload ignored: checkpointd is starting or draining", reason=reason)
                return ReloadResult(
                    False, "not reloading now", ["checkpointd is starting or draining"]
                )
            source = self.daemon.config.source
            if source is None:
                return ReloadResult(False, "no config file to reload", ["config has no source"])
            self.daemon.notifier.reloading()
            try:
                return await self._reload(source, reason)
            finally:
                self.daemon.notifier.ready()
                self.daemon.notifier.status(self._status_line())

    def watch_config(self, enabled: bool) -> None:
        """Start or stop reloading when the config file changes (``daemon.watch_config``)."""
        tasks = self.daemon.tasks
        assert tasks is not None, "the config watcher runs while the daemon serves"
        watching = self._watch is not None and not self._watch.done()
        if enabled and not watching and self.daemon.config.source is not None:
            self._watch = tasks.spawn(self._watch_loop(), "watch-config", critical=True)
        elif not enabled and watching:
            task, self._watch = self._watch, None
            assert task is not None
            tasks.release(task)  # its end is not a failure now
            if task is not asyncio.current_task():
                task.cancel()
            # else: the watcher's own reload turned watching off; its loop returns once
            # the reload is done (cancelling it here would cut the reload short).

    async def _reload(self, source: Path, reason: str) -> ReloadResult:
        try:
            # Both in a worker thread: parsing is slow and the diff compares every
            # checkpoint (configs are frozen, so reading the current one there is safe).
            new, diff = await asyncio.to_thread(_load_and_diff, source, self.daemon.config)
        except ConfigError as exc:
            return self._refused(reason, [str(i) for i in exc.issues])
        unsafe = self._unsafe(new)
        if unsafe is not None:
            return self._refused(reason, [unsafe])
        try:
            plan = await self._prepare(new, diff)
        except (ValueError, CheckpointdError) as exc:
            return self._refused(reason, [f"{source}: {exc}"])
        await self._apply(new, diff, plan)
        self.daemon.metrics.config_reload_succeeded()
        summary = diff.describe()
        log.info("config reloaded", reason=reason, changes=summary)
        return ReloadResult(True, summary)

    def _refused(self, reason: str, errors: list[str]) -> ReloadResult:
        self.daemon.metrics.config_reload_failed()
        for error in errors:
            log.error("reload refused: config invalid", issue=error, reason=reason)
        return ReloadResult(False, "config invalid; still running the previous one", errors)

    def _unsafe(self, new: Config) -> str | None:
        """Why ``new`` must not take effect on the listener that is open now, or None."""
        if new.daemon.http.token is not None or self.daemon.insecure:
            return None
        host = self.daemon.config.daemon.http.host  # listen changes wait for a restart
        if is_loopback(host):
            return None
        return (
            f"daemon.http.token: removing the token would leave {host} open to anyone; "
            "keep a token, or restart with --insecure"
        )

    async def _prepare(self, new: Config, diff: ConfigDiff) -> _Plan:
        """Build every object the new config needs; raises before anything running changed."""
        daemon = self.daemon
        by_name = {cp.name: cp for cp in new.checkpoints}
        plan = _Plan()
        for n, name in enumerate(diff.added, 1):
            cp = by_name[name]
            plan.guards[name] = daemon.overlap_checkpoint(cp)
            plan.sources[name] = daemon.build_sources(cp)
            await _breathe(n)
        for n, change in enumerate(diff.changed, 1):
            cp = by_name[change.name]
            plan.guards[change.name] = daemon.overlap_checkpoint(
                cp, daemon.checkpoints[change.name].gate
            )
            if change.triggers_changed:
                plan.sources[change.name] = daemon.build_sources(cp)
            await _breathe(n)
        return plan

    async def _apply(self, new: Config, diff: ConfigDiff, plan: _Plan) -> None:
        """Swap the prepared objects in; in-flight runs keep the objects they began with."""
        daemon = self.daemon
        runner = daemon.runner
        assert runner is not None
        if diff.needs_restart:
            log.warning(
                "some changes need a restart to take effect", keys=sorted(diff.restart_required)
            )
        # Triggers first: no event may reach a checkpoint between its removal and the rest.
        await daemon.triggers.stop_many([*diff.removed, *plan.sources])
        for name in diff.removed:
            daemon.checkpoints.pop(name, None)
            runner.remove_checkpoint(name)
            daemon.metrics.remove_checkpoint(name)
        for name, guarded in plan.guards.items():
            daemon.checkpoints[name] = guarded
            runner.add_checkpoint(guarded)
        daemon.config = new
        self._apply_live(new, diff)
        await daemon.triggers.start_many(plan.sources)
        # Zero-valued series for the new names (the changed ones have theirs already).
        for n, name in enumerate(diff.added, 1):
            daemon.metrics.register_checkpoint(name)
            await _breathe(n)

    def _apply_live(self, new: Config, diff: ConfigDiff) -> None:
        daemon, d = self.daemon, new.daemon
        runner = daemon.runner
        assert runner is not None
        live = set(diff.live)
        if live & {"daemon.log.level", "daemon.log.format"}:
            configure_logging(d.log.level, d.log.format)
        daemon.http_token = d.http.token
        if "daemon.max_concurrent_checkpoints" in live:
            # Threads first, so that a grown pool's runs never wait for one.
            daemon.executor.resize(d.max_concurrent_checkpoints)
            runner.resize(d.max_concurrent_checkpoints)
            daemon.metrics.set_pool_slots(d.max_concurrent_checkpoints)
        # The result queue is sized once; the runner's other knobs it reads each time it
        # needs them.
        runner.config = dataclasses.replace(
            AsyncRunnerConfig.from_daemon(d),
            result_queue_size=runner.config.result_queue_size,
        )
        if "daemon.watch_config" in live:
            self.watch_config(d.watch_config)
        if live & {"daemon.retention.max_age", "daemon.retention.max_runs_per_checkpoint"}:
            daemon.sweep_retention_now(d.retention)

    async def _watch_loop(self) -> None:
        """``daemon.watch_config: true``: reload when the file's content changes."""
        path = self.daemon.config.source
        assert path is not None
        last = _fingerprint(path)
        while self.daemon.config.daemon.watch_config:
            await asyncio.sleep(WATCH_CONFIG_EVERY)
            current = _fingerprint(path)
            if current is not None and current != last:
                last = current
                await self.reload("file-changed")


def _load_and_diff(path: Path, current: Config) -> tuple[Config, ConfigDiff]:
    """``load_config`` with the cyclic garbage collector paused, and its diff to ``current``.

    Parsing a big file keeps hundreds of thousands of YAML nodes alive at once; the
    collections that allocation triggers each walk all of them, and a collection stops
    every thread, the event loop's included: 0.15-0.2 s of CPU per collection with 1,000
    checkpoints (bench/reload.py). The parse makes no cyclic garbage worth collecting;
    what it leaves behind is freed by reference counting when the nodes go.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        new = load_config(path)
    finally:
        if enabled:
            gc.enable()
    return new, diff_configs(current, new)


async def _breathe(done: int) -> None:
    """Let the loop run other work every ``BREATHE_EVERY`` items of a long reload step."""
    if done % BREATHE_EVERY == 0:
        await asyncio.sleep(0)


@dataclass
class _Plan:
    """What a reload will swap in: new checkpoint objects and trigger sources, by name."""

    guards: dict[str, OverlapCheckpoint] = field(default_factory=dict)
    sources: dict[str, list[TriggerSource]] = field(default_factory=dict)


def _fingerprint(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
