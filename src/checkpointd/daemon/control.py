"""What operators ask of a running daemon: health, readiness, overview, manual runs, reload.

The HTTP layer (``daemon/http.py``) calls these through its ``DaemonApi``
protocol; signals and the config watcher call :meth:`DaemonControl.reload`.

A reload is all or nothing: the file is parsed and validated, then every new
checkpoint and trigger source is built, and only when all of that worked does
anything running change. Then, in order: removed checkpoints' triggers stop
and their metric series go; changed checkpoints get new objects (a run in
flight keeps the object, hence the config, it started with); live daemon
settings apply; new trigger sources start.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from checkpointd.checkpoints.result import CheckpointResult, format_timestamp
from checkpointd.config import Config, diff_configs, load_config
from checkpointd.config.diff import ConfigDiff
from checkpointd.daemon.http import ServiceUnavailable, is_loopback
from checkpointd.errors import CheckpointdError, ConfigError
from checkpointd.events import TriggerEvent
from checkpointd.ids import uuid7
from checkpointd.logs import configure_logging
from checkpointd.protocols import TriggerSource
from checkpointd.runtime.config import AsyncRunnerConfig

if TYPE_CHECKING:
    from checkpointd.daemon.app import Daemon
    from checkpointd.runtime.overlap import GuardedCheckpoint

log = structlog.get_logger("checkpointd.control")

LOOP_RESPONSIVE_SECONDS = 5.0
"""/healthz fails when the event loop lagged more than this."""

WATCH_CONFIG_EVERY = 1.0

BREATHE_EVERY = 50
"""Items a reload builds or registers between two yields to the loop (each is ~0.1-0.2 ms:
50 keep any one step of a 1,000-checkpoint reload to a few milliseconds)."""


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    summary: str
    errors: list[str] = field(default_factory=list)


class DaemonControl:
    """Operator-facing behaviour of a :class:`~checkpointd.daemon.app.Daemon`; it is the
    ``DaemonApi`` the HTTP layer serves."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    # ------------------------------------------------------------ health

    def is_healthy(self) -> bool:
        return self.health()[0]

    def health(self) -> tuple[bool, dict[str, Any]]:
        lag = self.daemon.looplag.current_lag()
        dead = self.daemon._dead_critical()
        dead_sources = self.daemon.triggers.dead()
        ok = lag < LOOP_RESPONSIVE_SECONDS and dead is None
        return ok, {
            "event_loop_lag_seconds": round(lag, 4),
            "dead_critical_task": dead,
            "dead_trigger_sources": dead_sources,
        }

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        checks = {
            "config_loaded": True,
            # writable, not just healthy: a full disk turns the daemon unready, not dead.
            "store_writable": self.daemon.store is not None and self.daemon.store.writable,
            "triggers_started": self.daemon._started,
            "draining": self.daemon.draining,
            # A daemon that cannot reach its broker hears nothing from Kafka: not ready.
            "kafka_connected": self.daemon.kafka is None or self.daemon.kafka.ready,
        }
        ok = (
            checks["store_writable"]
            and checks["triggers_started"]
            and checks["kafka_connected"]
            and not checks["draining"]
        )
        return bool(ok), checks

    def status_line(self) -> str:
        stats = self.daemon.runner.get_stats() if self.daemon.runner else None
        running = stats.running if stats else 0
        done = stats.completed if stats else 0
        return (
            f"{len(self.daemon.checkpoints)} checkpoints, {len(self.daemon.triggers)} triggers, "
            f"{running} running, {done} completed"
        )

    # ---------------------------------------------------------- queries

    async def checkpoints_overview(self) -> list[dict[str, Any]]:
        assert self.daemon.store is not None
        out = []
        # One query for them all: with thousands of checkpoints, one each took seconds.
        latest = await self.daemon.store.last_results(list(self.daemon.checkpoints))
        for name, guarded in self.daemon.checkpoints.items():
            cp = guarded.checkpoint.config
            last = latest.get(name)
            next_fire = None
            for source in self.daemon.triggers.sources(name):
                when = getattr(source, "next_fire_time", None)
                if when is not None and (next_fire is None or when < next_fire):
                    next_fire = when
            out.append(
                {
                    "name": name,
                    "description": cp.description,
                    "triggers": [t.model_dump(mode="json", exclude_none=True) for t in cp.triggers],
                    "last_status": last.status.value if last else None,
                    "last_run": last.to_dict() if last else None,
                    "next_fire_time": format_timestamp(next_fire) if next_fire else None,
                    "running": guarded.running,
                }
            )
        return out

    async def list_runs(
        self, *, checkpoint: str | None, status: str | None, limit: int
    ) -> list[CheckpointResult]:
        assert self.daemon.store is not None
        return await self.daemon.store.list_runs(checkpoint=checkpoint, status=status, limit=limit)

    async def get_run(self, run_id: str) -> CheckpointResult | None:
        assert self.daemon.store is not None
        return await self.daemon.store.get_run(run_id)

    def render_metrics(self) -> tuple[bytes, str]:
        return self.daemon.metrics.render()

    # ----------------------------------------------------------- manual

    async def trigger_manual(self, name: str) -> str | None:
        """Journal and queue a manual run; its id, or None when there is no such checkpoint.

        Raises ServiceUnavailable while the daemon starts or drains: an id is only
        handed out for a run that was journaled and will run.
        """
        if name not in self.daemon.checkpoints:
            return None
        if not self.daemon._started or self.daemon.draining:
            raise ServiceUnavailable("checkpointd is not taking runs now (starting or draining)")
        run_id = uuid7()
        event = TriggerEvent(
            type="manual",
            key=f"manual:{run_id}",
            fired_at=self.daemon.clock.now(),
            checkpoint=name,
            run_id=run_id,
        )
        if not await self.daemon._emit(event):
            raise ServiceUnavailable("checkpointd is not taking runs now (draining)")
        return run_id

    # ----------------------------------------------------------- reload

    async def reload(self, reason: str) -> ReloadResult:
        """Parse and validate first; apply only what changed; never apply an invalid config."""
        assert self.daemon._reload_lock is not None
        async with self.daemon._reload_lock:
            if not self.daemon._started or self.daemon.draining:
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
                self.daemon.notifier.status(self.status_line())

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
            plan.guards[name] = daemon._guard(cp)
            plan.sources[name] = daemon._build_sources(cp)
            await _breathe(n)
        for n, change in enumerate(diff.changed, 1):
            cp = by_name[change.name]
            plan.guards[change.name] = daemon._guard(cp, daemon.checkpoints[change.name].gate)
            if change.triggers_changed:
                plan.sources[change.name] = daemon._build_sources(cp)
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
            daemon.watch_config(d.watch_config)
        if live & {"daemon.retention.max_age", "daemon.retention.max_runs_per_checkpoint"}:
            daemon.sweep_retention_now(d.retention)

    async def watch_config_loop(self) -> None:
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

    guards: dict[str, GuardedCheckpoint] = field(default_factory=dict)
    sources: dict[str, list[TriggerSource]] = field(default_factory=dict)


def _fingerprint(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
