"""The daemon: ``serve()`` → ``startup()`` → ``main_loop()`` → ``shutdown()``.

Signal handlers only set flags (:meth:`Daemon.handle_exit`,
:meth:`Daemon.handle_reload`); the work happens on the loop. Shutdown runs in
a fixed order: triggers stop, ``/readyz`` turns 503, in-flight runs drain for
up to ``graceful_shutdown_timeout``, the rest are cancelled (recorded as
cancelled, journaled as interrupted), the store is flushed, the HTTP server
closes. A second SIGINT cuts the drain short.

Every long-lived task of the daemon runs in the one ``asyncio.TaskGroup`` that
``serve()`` holds (:mod:`checkpointd.daemon.supervision`); a critical one that
ends stops the daemon with exit code 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Awaitable, Coroutine
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from checkpointd.actions.service import ActionService
from checkpointd.checkpoints.checkpoint import Checkpoint
from checkpointd.clock import SYSTEM_CLOCK, Clock
from checkpointd.config.models import CheckpointConfig, Config, RetentionConfig
from checkpointd.daemon.control import DaemonControl
from checkpointd.daemon.http import HttpServer, build_app
from checkpointd.daemon.looplag import LoopLagMonitor
from checkpointd.daemon.metrics import Metrics
from checkpointd.daemon.outcomes import RunSink, recover_runs
from checkpointd.daemon.retention import RetentionSweeper
from checkpointd.daemon.sdnotify import SdNotifier
from checkpointd.daemon.supervision import TaskSupervisor
from checkpointd.errors import CheckpointdError, RunnerError
from checkpointd.events import TriggerEvent
from checkpointd.protocols import TriggerSource
from checkpointd.runtime.executor import RunExecutor
from checkpointd.runtime.overlap import OverlapCheckpoint, OverlapGate
from checkpointd.runtime.runner import AsyncCheckpointRunner, AsyncRunnerConfig
from checkpointd.runtime.triggerset import TriggerSet, build_sources
from checkpointd.store.model import JournalEntry
from checkpointd.store.sqlite.store import SqliteStore
from checkpointd.triggers.kafka import KafkaHub

log = structlog.get_logger("checkpointd.daemon")

RUN_THREAD_PREFIX = "checkpointd-run"


class Daemon:
    """One checkpointd process. Build it outside the loop; ``await serve()`` inside."""

    def __init__(
        self,
        config: Config,
        *,
        registry: CollectorRegistry | None = None,
        notifier: SdNotifier | None = None,
        clock: Clock = SYSTEM_CLOCK,
        insecure: bool = False,
    ) -> None:
        self.config = config
        self.insecure = insecure
        """``--insecure``: a reload may leave a non-loopback listener without a token."""
        self.http_token = config.daemon.http.token
        """The bearer token mutating HTTP calls need now (a reload may change it)."""
        self.clock = clock
        self.metrics = Metrics(registry or CollectorRegistry(), clock=clock)
        self.notifier = notifier or SdNotifier()
        self.store: SqliteStore | None = None
        self.runner: AsyncCheckpointRunner | None = None
        self.actions: ActionService | None = None
        """Outbox, channels and dispatcher of the notifications (built at startup)."""
        self.http: HttpServer | None = None
        self.triggers = TriggerSet(self._emit)
        self.kafka: KafkaHub | None = None
        """The one Kafka consumer every kafka trigger attaches to (built at startup)."""
        self.checkpoints: dict[str, OverlapCheckpoint] = {}
        # Loading and validation run here, not in the loop's default executor: a run cut off
        # by its timeout or by the drain may leave its thread busy, and asyncio would wait
        # for the default executor at exit. See daemon/main.py for how exit handles that.
        self.executor = RunExecutor(
            config.daemon.max_concurrent_checkpoints, thread_name_prefix=RUN_THREAD_PREFIX
        )
        self.looplag = LoopLagMonitor(on_sample=self.metrics.set_event_loop_lag)
        self.should_exit = False
        self.force_exit = False
        self.exit_code = 0
        self.tasks: TaskSupervisor | None = None
        """The daemon's long-lived tasks (while ``serve()`` runs)."""
        self.retention: RetentionSweeper | None = None
        self._started = False
        self._draining = False
        self._recovered: list[JournalEntry] = []
        self._exit_event: asyncio.Event | None = None
        self._force_event: asyncio.Event | None = None
        self.control = DaemonControl(self, emit=self._emit)

    # ------------------------------------------------------------ signals

    @property
    def draining(self) -> bool:
        """True from the moment a stop was asked for: ``/readyz`` fails, events are refused."""
        return self.should_exit or self._draining

    @property
    def started(self) -> bool:
        """True once start-up finished: triggers run, runs are taken."""
        return self._started

    def handle_exit(self, sig: int | None = None) -> None:
        """SIGTERM/SIGINT: start draining; a second SIGINT forces the stop."""
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
            if self._force_event is not None:
                self._force_event.set()
        self.should_exit = True
        if self._exit_event is not None:
            self._exit_event.set()

    def handle_reload(self) -> None:
        """SIGHUP: reload the config file on the loop."""
        if self.tasks is None or self.tasks.closed:  # the very end of a shutdown
            log.warning("reload ignored: checkpointd is starting or draining", reason="sighup")
            return
        self._spawn(self.control.reload("sighup"), "reload")

    # ---------------------------------------------------------- lifecycle

    async def serve(self, shutdown_trigger: Awaitable[Any] | None = None) -> int:
        """Run until a signal, ``handle_exit()`` or ``shutdown_trigger`` completes.

        Returns the process exit code: 0 after a clean drain, 1 when start-up
        failed or a part of the daemon died. The daemon's long-lived tasks all run
        in one TaskGroup, which ``serve()`` leaves once the shutdown is done.
        """
        self._exit_event = asyncio.Event()
        self._force_event = asyncio.Event()
        crashed: Exception | None = None
        async with asyncio.TaskGroup() as group:
            self.tasks = TaskSupervisor(group, on_death=self._critical_ended)
            self._install_signal_handlers()
            try:
                await self._live(shutdown_trigger)
            except Exception as exc:  # re-raised below as itself, not in an ExceptionGroup
                crashed = exc
            finally:
                await self.tasks.close()
        if crashed is not None:
            raise crashed
        return self.exit_code

    async def _live(self, shutdown_trigger: Awaitable[Any] | None) -> None:
        try:
            await self.startup()
        except CheckpointdError as exc:
            log.error("start-up failed", error=str(exc))
            self.exit_code = 1
            await self.shutdown()
            return
        if shutdown_trigger is not None:
            self._spawn(self._wait_trigger(shutdown_trigger), "shutdown-trigger")
        try:
            await self.main_loop()
        finally:
            await self.shutdown()

    async def startup(self) -> None:
        """Open the store, start the runner, HTTP and the triggers, then report ready."""
        config = self.config
        d = config.daemon
        self.notifier.status("starting")
        self.metrics.config_loaded()
        self.store = await SqliteStore.open(
            d.state_dir,
            on_recover=self._collect_recovered,
            retention=d.retention,
            clock=self.clock,
        )
        actions = await self._start_runner()
        http = await self._start_http(actions)
        self._spawn(actions.run(), "action-dispatcher", critical=True)
        self._spawn(self.looplag.run(), "looplag", critical=True)
        assert self.runner is not None
        recovered = await recover_runs(
            self._recovered,
            policy=d.on_crash,
            store=self.store,
            runner=self.runner,
            known=self.checkpoints,
            metrics=self.metrics,
        )
        self.kafka = KafkaHub.for_daemon(
            config.kafka, store=self.store, registry=self.metrics.registry, clock=self.clock
        )
        await self.kafka.start()
        for cp in config.checkpoints:
            self.triggers.start(cp.name, self.build_sources(cp))
        self._start_watchers()
        self._started = True
        # Everything built so far (imported modules, the config, a checkpoint object per
        # checkpoint) lives as long as the process. Frozen, the cyclic GC stops walking it:
        # a full collection with 1,000 checkpoints loaded stalled the loop ~0.2 s, often
        # during a reload (bench/reload.py). Frozen objects are still freed by refcount.
        gc.freeze()
        self.notifier.ready()
        self.notifier.status(self.control.status_line())
        log.info(
            "checkpointd started",
            checkpoints=len(self.checkpoints),
            triggers=len(self.triggers),
            listen=f"{d.http.host}:{http.bound_port}",
            state_dir=str(d.state_dir),
            recovered=recovered,
        )

    async def _start_runner(self) -> ActionService:
        """Build the checkpoints, the actions' outbox and the runner; start the runner."""
        assert self.store is not None
        d = self.config.daemon
        for cp in self.config.checkpoints:
            self.checkpoints[cp.name] = self.overlap_checkpoint(cp)
            self.metrics.register_checkpoint(cp.name)
        # The actions' journal is the store whose save_results also writes the outbox rows,
        # in the same transaction as the results.
        self.actions = ActionService(
            lambda: self.config, self.store, registry=self.metrics.registry, clock=self.clock
        )
        self.runner = AsyncCheckpointRunner(
            list(self.checkpoints.values()),
            AsyncRunnerConfig.from_daemon(d),
            journal=self.actions.journal,
            sink=RunSink(self.metrics, sources=self.triggers.sources, known=self.checkpoints),
            clock=self.clock,
        )
        self.metrics.set_pool_slots(d.max_concurrent_checkpoints)
        await self.runner.start_async()
        self.metrics.watch_result_queue(self.runner.result_queue)
        return self.actions

    async def _start_http(self, actions: ActionService) -> HttpServer:
        """The API, the actions' routes with it, listening."""
        http = self.config.daemon.http
        app = build_app(self.control, token=self._current_token, max_body_bytes=http.max_body_bytes)
        actions.add_routes(app, self._current_token)
        self.http = HttpServer(app, http.host, http.port)
        await self.http.start()
        return self.http

    def _start_watchers(self) -> None:
        """The daemon's own long-lived tasks, once everything they watch is up."""
        assert self.store is not None
        # Always: a reload may turn retention on (a sweep without it costs nothing).
        self.retention = RetentionSweeper(self.store)
        self._spawn(self.retention.run(), "retention", critical=True)
        self.control.watch_config(self.config.daemon.watch_config)
        if self.notifier.enabled and self.notifier.watchdog_interval() is not None:
            self._spawn(
                self.notifier.watchdog_loop(self.control.is_healthy), "watchdog", critical=True
            )
        self._spawn(self._watch_parts(), "watch-parts")

    async def main_loop(self) -> None:
        """Wait for a reason to stop: a signal, the shutdown trigger, or a part that died."""
        assert self._exit_event is not None
        await self._exit_event.wait()
        if self.runner is not None and self.runner.stop_reason is not None:
            log.warning("runner stopped itself", reason=self.runner.stop_reason)
            self.exit_code = 1
            return
        dead = self.control.dead_critical()
        if dead:
            log.error("critical task died; exiting so the supervisor restarts us", task=dead)
            self.exit_code = 1

    async def shutdown(self) -> None:
        self._draining = True
        self.notifier.stopping()
        self.notifier.status("draining")
        log.info("stopping: triggers first, then draining in-flight runs")
        await self.triggers.stop()
        if self.kafka is not None:  # finishes in-flight emits, commits, disconnects
            await self.kafka.stop()
        if self.runner is not None:
            drain = asyncio.ensure_future(self.runner.stop_async())
            assert self._force_event is not None
            force = asyncio.ensure_future(self._force_event.wait())
            await asyncio.wait({drain, force}, return_when=asyncio.FIRST_COMPLETED)
            if not drain.done():
                log.warning("second interrupt: cancelling in-flight runs now")
                self.runner.cancel_all()
                await drain
            force.cancel()
        if self.actions is not None:  # in-flight deliveries finish; pending ones wait for a restart
            grace = min(5.0, self.config.daemon.graceful_shutdown_timeout.total_seconds())
            await self.actions.stop(grace)
        if self.tasks is not None:
            await self.tasks.close()
        if self.http is not None:
            await self.http.stop()
        if self.store is not None:
            await self.store.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        log.info("checkpointd stopped", exit_code=self.exit_code)

    # ------------------------------------------------------------- wiring

    def _current_token(self) -> str | None:
        return self.http_token.get_secret_value() if self.http_token else None

    def overlap_checkpoint(
        self, cp: CheckpointConfig, gate: OverlapGate | None = None
    ) -> OverlapCheckpoint:
        """A new checkpoint object for ``cp``; a changed one keeps its ``gate`` (overlap)."""
        # Runs load and validate on the daemon's own executor: asyncio.Runner waits for the
        # default executor's threads at exit, which would let one busy run outlast the drain.
        checkpoint = Checkpoint(cp, clock=self.clock, executor=self.executor)
        return OverlapCheckpoint(checkpoint, metrics=self.metrics, clock=self.clock, gate=gate)

    def build_sources(self, cp: CheckpointConfig) -> list[TriggerSource]:
        """The trigger sources of ``cp``, built but not started."""
        assert self.store is not None
        return build_sources(
            cp, state=self.store, metrics=self.metrics, clock=self.clock, kafka=self.kafka
        )

    async def _emit(self, event: TriggerEvent) -> bool:
        """Every trigger's path in: journal, then wait for a pool slot (backpressure).

        An event the daemon cannot take (it is stopping, or a reload removed the checkpoint
        while the event was on its way) raises: False would mean "a duplicate, already
        journaled", and the trigger would acknowledge an event nobody holds.
        """
        name = event.checkpoint
        runner = self.runner
        if runner is None or self.draining:
            raise RunnerError(f"the daemon is stopping: event {event.key} not accepted")
        if name is None or name not in self.checkpoints:
            raise RunnerError(f"no checkpoint {name!r} (removed by a reload?): event not accepted")
        accepted = await runner.submit_event(name, event)
        if accepted:
            self.metrics.trigger_event(event.type, name)
            lag = (self.clock.now() - event.fired_at).total_seconds()
            self.metrics.observe_trigger_lag(event.type, lag)
        return accepted

    async def _collect_recovered(self, entries: list[JournalEntry]) -> None:
        self._recovered.extend(entries)

    # -------------------------------------------------------------- tasks

    def _spawn(
        self, coro: Coroutine[Any, Any, object], name: str, *, critical: bool = False
    ) -> asyncio.Task[None]:
        assert self.tasks is not None, "the daemon's tasks start inside serve()"
        return self.tasks.spawn(coro, name, critical=critical)

    def _critical_ended(self, task: str, how: str) -> None:
        if self.draining:
            return
        log.error("critical task ended", task=task, error=how)
        if self._exit_event is not None:  # main_loop sees control.dead_critical() name it
            self._exit_event.set()

    async def _watch_parts(self) -> None:
        """Wake main_loop when the store or the runner stops by itself (their tasks are
        their own, not the TaskGroup's): wait for whichever ends first."""
        assert self._exit_event is not None
        assert self.runner is not None
        assert self.store is not None
        parts = [
            asyncio.ensure_future(self.runner.wait_stopping()),
            asyncio.ensure_future(self.store.wait_ended()),
        ]
        try:
            await asyncio.wait(parts, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for part in parts:
                part.cancel()
        self._exit_event.set()

    async def _wait_trigger(self, trigger: Awaitable[Any]) -> None:
        await trigger
        self.handle_exit()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, self.handle_exit, signal.SIGTERM)
            loop.add_signal_handler(signal.SIGINT, self.handle_exit, signal.SIGINT)
            loop.add_signal_handler(signal.SIGHUP, self.handle_reload)

    def sweep_retention_now(self, retention: RetentionConfig) -> None:
        """Keep what ``retention`` says from now on, starting with a sweep at once."""
        if self.retention is not None:
            self.retention.sweep_now(retention)
