"""What operators ask of a running daemon: health, readiness, overview, manual runs, reload.

The HTTP layer (``daemon/http.py``) calls these through its ``DaemonApi``
protocol; signals and the config watcher reload through
:class:`~checkpointd.daemon.reload.Reloader`, which :class:`DaemonControl`
holds. Neither knows the daemon's class: each names what it needs of it as a
Protocol (:class:`ControlledDaemon`, :class:`~checkpointd.daemon.reload.Reloadable`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from checkpointd.checkpoints.result import CheckpointResult, format_timestamp
from checkpointd.daemon.http import ServiceUnavailable
from checkpointd.daemon.reload import Reloadable, Reloader, ReloadResult
from checkpointd.events import TriggerEvent
from checkpointd.ids import uuid7
from checkpointd.protocols import ScheduledSource

if TYPE_CHECKING:
    from checkpointd.clock import Clock
    from checkpointd.daemon.looplag import LoopLagMonitor
    from checkpointd.protocols import Emit, Store
    from checkpointd.triggers.kafka import KafkaHub

__all__ = ["ControlledDaemon", "DaemonControl", "ReloadResult"]

LOOP_RESPONSIVE_SECONDS = 5.0
"""/healthz fails when the event loop lagged more than this."""


class ControlledDaemon(Reloadable, Protocol):
    """The daemon as its control sees it (:class:`~checkpointd.daemon.app.Daemon` is one):
    what a reload needs, and the parts health, readiness and the queries read."""

    @property
    def clock(self) -> Clock: ...

    @property
    def looplag(self) -> LoopLagMonitor: ...

    @property
    def store(self) -> Store | None: ...

    @property
    def kafka(self) -> KafkaHub | None: ...


class DaemonControl:
    """Operator-facing behaviour of a daemon; it is the ``DaemonApi`` the HTTP layer serves.

    ``emit`` is the daemon's way in for events, the one its triggers use: a manual run
    is journaled and queued like any other.
    """

    def __init__(self, daemon: ControlledDaemon, *, emit: Emit) -> None:
        self.daemon = daemon
        self._emit = emit
        self.reloader = Reloader(daemon, status_line=self.status_line)

    # ------------------------------------------------------------ health

    def is_healthy(self) -> bool:
        return self.health()[0]

    def dead_critical(self) -> str | None:
        """What stopped although it should run until shutdown (``store-writer``, ``runner``,
        a critical task's name), or None."""
        daemon = self.daemon
        if daemon.store is not None and not daemon.store.healthy:
            return "store-writer"
        if daemon.runner is not None and not daemon.runner.healthy:
            return "runner"
        return daemon.tasks.dead if daemon.tasks is not None else None

    def health(self) -> tuple[bool, dict[str, Any]]:
        lag = self.daemon.looplag.current_lag()
        dead = self.dead_critical()
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
            "triggers_started": self.daemon.started,
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
                when = source.next_fire_time if isinstance(source, ScheduledSource) else None
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
        if not self.daemon.started or self.daemon.draining:
            raise ServiceUnavailable("checkpointd is not taking runs now (starting or draining)")
        run_id = uuid7()
        event = TriggerEvent(
            type="manual",
            key=f"manual:{run_id}",
            fired_at=self.daemon.clock.now(),
            checkpoint=name,
            run_id=run_id,
        )
        if not await self._emit(event):
            raise ServiceUnavailable("checkpointd is not taking runs now (draining)")
        return run_id

    # ----------------------------------------------------------- reload

    async def reload(self, reason: str) -> ReloadResult:
        """Re-read the config file (see :meth:`Reloader.reload`)."""
        return await self.reloader.reload(reason)

    def watch_config(self, enabled: bool) -> None:
        """Start or stop reloading when the config file changes (``daemon.watch_config``)."""
        self.reloader.watch_config(enabled)
