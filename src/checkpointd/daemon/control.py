"""What operators ask of a running daemon: health, readiness, overview, manual runs, reload.

The HTTP layer (``daemon/http.py``) calls these through its ``DaemonApi``
protocol; signals and the config watcher call :meth:`ControlMixin.reload`.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from checkpointd.checkpoints.result import CheckpointResult, format_timestamp
from checkpointd.config import Config, diff_configs, load_config
from checkpointd.config.diff import ConfigDiff
from checkpointd.errors import ConfigError
from checkpointd.ids import uuid7
from checkpointd.triggers.event import TriggerEvent

if TYPE_CHECKING:
    from checkpointd.daemon.app import Daemon

log = structlog.get_logger("checkpointd.control")

LOOP_RESPONSIVE_SECONDS = 5.0
"""/healthz fails when the event loop lagged more than this."""

WATCH_CONFIG_EVERY = 1.0


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
            "store_writable": self.daemon.store is not None and self.daemon.store.healthy,
            "triggers_started": self.daemon._started,
            "draining": self.daemon._draining,
        }
        ok = checks["store_writable"] and checks["triggers_started"] and not checks["draining"]
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
        for name, guarded in self.daemon.checkpoints.items():
            cp = guarded.checkpoint.config
            last = await self.daemon.store.last_result(name)
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
        if name not in self.daemon.checkpoints:
            return None
        run_id = uuid7()
        event = TriggerEvent(
            type="manual",
            key=f"manual:{run_id}",
            fired_at=self.daemon.clock.now(),
            checkpoint=name,
            run_id=run_id,
        )
        await self.daemon._emit(event)
        return run_id

    # ----------------------------------------------------------- reload

    async def reload(self, reason: str) -> ReloadResult:
        """Parse and validate first; apply only what changed; never apply an invalid config."""
        assert self.daemon._reload_lock is not None
        async with self.daemon._reload_lock:
            source = self.daemon.config.source
            if source is None:
                return ReloadResult(False, "no config file to reload", ["config has no source"])
            self.daemon.notifier.reloading()
            try:
                new = await asyncio.to_thread(load_config, source)
            except ConfigError as exc:
                self.daemon.metrics.config_reload_failed()
                for issue in exc.issues:
                    log.error("reload refused: config invalid", issue=str(issue), reason=reason)
                self.daemon.notifier.ready()
                return ReloadResult(
                    False,
                    "config invalid; still running the previous one",
                    [str(i) for i in exc.issues],
                )
            diff = diff_configs(self.daemon.config, new)
            await self._apply(new, diff)
            self.daemon.metrics.config_reload_succeeded()
            self.daemon.notifier.ready()
            self.daemon.notifier.status(self.status_line())
            summary = diff.describe()
            log.info("config reloaded", reason=reason, changes=summary)
            return ReloadResult(True, summary)

    async def _apply(self, new: Config, diff: ConfigDiff) -> None:
        """Add, remove and replace checkpoints; in-flight runs keep the objects they began with."""
        assert self.daemon.runner is not None
        if diff.needs_restart:
            log.warning(
                "some changes need a restart to take effect", keys=sorted(diff.restart_required)
            )
        for name in diff.removed:
            await self.daemon.triggers.stop(name)
            self.daemon.checkpoints.pop(name, None)
            self.daemon.runner.remove_checkpoint(name)
            self.daemon.metrics.remove_checkpoint(name)
        for change in diff.changed:
            cp = new.checkpoint(change.name)
            if not change.only_triggers or change.actions_changed:
                guarded = self.daemon._guard(cp)
                self.daemon.checkpoints[change.name] = guarded
                self.daemon.runner.add_checkpoint(guarded)
            else:
                self.daemon.checkpoints[change.name].checkpoint.config = cp
            if change.triggers_changed:
                await self.daemon.triggers.stop(change.name)
        self.daemon.config = new
        for change in diff.changed:
            if change.triggers_changed:
                self.daemon._start_sources(new.checkpoint(change.name))
        for name in diff.added:
            cp = new.checkpoint(name)
            guarded = self.daemon._guard(cp)
            self.daemon.checkpoints[name] = guarded
            self.daemon.runner.add_checkpoint(guarded)
            self.daemon._start_sources(cp)

    async def watch_config_loop(self) -> None:
        """``daemon.watch_config: true``: reload when the file's content changes."""
        path = self.daemon.config.source
        assert path is not None
        last = _fingerprint(path)
        while True:
            await asyncio.sleep(WATCH_CONFIG_EVERY)
            current = _fingerprint(path)
            if current is not None and current != last:
                last = current
                await self.reload("file-changed")


def _fingerprint(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
