"""The daemon: ``serve()`` → ``startup()`` → ``main_loop()`` → ``shutdown()``.

Signal handlers only set flags (:meth:`Daemon.handle_exit`,
:meth:`Daemon.handle_reload`); the work happens on the loop. Shutdown runs in
a fixed order: triggers stop, ``/readyz`` turns 503, in-flight runs drain for
up to ``graceful_shutdown_timeout``, the rest are cancelled (recorded as
cancelled, journaled as interrupted), the store is flushed, the HTTP server
closes. A second SIGINT cuts the drain short.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Awaitable, Sequence
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from checkpointd.actions.service import ActionService
from checkpointd.checkpoints.checkpoint import Checkpoint
from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.clock import SYSTEM_CLOCK, Clock
from checkpointd.config.models import CheckpointConfig, Config, RetentionConfig
from checkpointd.daemon.control import DaemonControl
from checkpointd.daemon.http import HttpServer, build_app
from checkpointd.daemon.looplag import LoopLagMonitor
from checkpointd.daemon.metrics import Metrics
from checkpointd.daemon.sdnotify import SdNotifier
from checkpointd.errors import CheckpointdError, RunnerError
from checkpointd.events import TriggerEvent
from checkpointd.protocols import TriggerSource
from checkpointd.runtime.executor import RunExecutor
from checkpointd.runtime.overlap import GuardedCheckpoint, OverlapGate
from checkpointd.runtime.runner import AsyncCheckpointRunner, AsyncRunnerConfig
from checkpointd.runtime.triggerset import TriggerSet, build_sources
from checkpointd.store.model import JournalEntry, RetentionReport
from checkpointd.store.sqlite.store import Store
from checkpointd.triggers.kafka import KafkaHub

log = structlog.get_logger("checkpointd.daemon")

RUN_THREAD_PREFIX = "checkpointd-run"

RETENTION_EVERY = 600.0
"""Seconds between retention sweeps."""


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
        self.store: Store | None = None
        self.runner: AsyncCheckpointRunner | None = None
        self.actions: ActionService | None = None
        """Outbox, channels and dispatcher of the notifications (built at startup)."""
        self.http: HttpServer | None = None
        self.triggers = TriggerSet(self._emit)
        self.kafka: KafkaHub | None = None
        """The one Kafka consumer every kafka trigger attaches to (built at startup)."""
        self.checkpoints: dict[str, GuardedCheckpoint] = {}
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
        self._started = False
        self._draining = False
        self._recovered: list[JournalEntry] = []
        self._background: set[asyncio.Task[Any]] = set()
        # Long-lived tasks that must run until shutdown; one that ends is a dead daemon.
        self._critical: list[asyncio.Task[Any]] = []
        self._config_watch: asyncio.Task[Any] | None = None
        self._retention_wake = asyncio.Event()
        self._exit_event: asyncio.Event | None = None
        self._force_event: asyncio.Event | None = None
        self._reload_lock: asyncio.Lock | None = None
        self.control = DaemonControl(self)

    # ------------------------------------------------------------ signals

    @property
    def draining(self) -> bool:
        """True from the moment a stop was asked for: ``/readyz`` fails, events are refused."""
        return self.should_exit or self._draining

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
        self._spawn(self.control.reload("sighup"), "reload")

    # ---------------------------------------------------------- lifecycle

    async def serve(self, shutdown_trigger: Awaitable[Any] | None = None) -> int:
        """Run until a signal, ``handle_exit()`` or ``shutdown_trigger`` completes.

        Returns the process exit code: 0 after a clean drain, 1 when start-up
        failed or a critical task died.
        """
        self._exit_event = asyncio.Event()
        self._force_event = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._install_signal_handlers()
        try:
            await self.startup()
        except CheckpointdError as exc:
            log.error("start-up failed", error=str(exc))
            await self.shutdown()
            return 1
        if shutdown_trigger is not None:
            self._spawn(self._wait_trigger(shutdown_trigger), "shutdown-trigger")
        try:
            await self.main_loop()
        finally:
            await self.shutdown()
        return self.exit_code

    async def startup(self) -> None:
        config = self.config
        d = config.daemon
        self.notifier.status("starting")
        self.metrics.config_loaded()
        self.store = await Store.open(
            d.state_dir,
            on_recover=self._collect_recovered,
            retention=d.retention,
            clock=self.clock,
        )
        for cp in config.checkpoints:
            self.checkpoints[cp.name] = self._guard(cp)
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
            sink=self,
            clock=self.clock,
        )
        self.metrics.set_pool_slots(d.max_concurrent_checkpoints)
        await self.runner.start_async()
        self.metrics.watch_result_queue(self.runner.result_queue)
        app = build_app(
            self.control, token=self._current_token, max_body_bytes=d.http.max_body_bytes
        )
        self.actions.add_routes(app, self._current_token)
        self.http = HttpServer(app, d.http.host, d.http.port)
        await self.http.start()
        self._spawn(self.actions.run(), "action-dispatcher", critical=True)
        self._spawn(self.looplag.run(), "looplag", critical=True)
        recovered = await self._recover()
        self.kafka = KafkaHub.for_daemon(
            config.kafka, store=self.store, registry=self.metrics.registry, clock=self.clock
        )
        await self.kafka.start()
        for cp in config.checkpoints:
            self._start_sources(cp)
        # Always: a reload may turn retention on (a sweep without it costs nothing).
        self._spawn(self._retention_loop(), "retention", critical=True)
        self.watch_config(d.watch_config)
        if self.notifier.enabled and self.notifier.watchdog_interval() is not None:
            self._spawn(
                self.notifier.watchdog_loop(self.control.is_healthy), "watchdog", critical=True
            )
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
            listen=f"{d.http.host}:{self.http.bound_port}",
            state_dir=str(d.state_dir),
            recovered=recovered,
        )

    async def main_loop(self) -> None:
        assert self._exit_event is not None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._exit_event.wait()
            if self.runner is not None and self.runner.stop_reason is not None:
                log.warning("runner stopped itself", reason=self.runner.stop_reason)
                self.exit_code = 1
                break
            dead = self._dead_critical()
            if dead:
                log.error("critical task died; exiting so the supervisor restarts us", task=dead)
                self.exit_code = 1
                break
            if self._exit_event.is_set():
                break

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
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.http is not None:
            await self.http.stop()
        if self.store is not None:
            await self.store.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        log.info("checkpointd stopped", exit_code=self.exit_code)

    # ------------------------------------------------------------- wiring

    def _current_token(self) -> str | None:
        return self.http_token.get_secret_value() if self.http_token else None

    def _guard(self, cp: CheckpointConfig, gate: OverlapGate | None = None) -> GuardedCheckpoint:
        # Runs load and validate on the daemon's own executor: asyncio.Runner waits for the
        # default executor's threads at exit, which would let one busy run outlast the drain.
        checkpoint = Checkpoint(cp, clock=self.clock, executor=self.executor)
        return GuardedCheckpoint(checkpoint, metrics=self.metrics, clock=self.clock, gate=gate)

    def _build_sources(self, cp: CheckpointConfig) -> list[TriggerSource]:
        assert self.store is not None
        return build_sources(
            cp, state=self.store, metrics=self.metrics, clock=self.clock, kafka=self.kafka
        )

    def _start_sources(self, cp: CheckpointConfig) -> None:
        self.triggers.start(cp.name, self._build_sources(cp))

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

    async def handle(self, items: Sequence[tuple[CheckpointResult, TriggerEvent | None]]) -> None:
        """ResultSink: count, log, and finish file triggers (move on success/failure)."""
        for result, event in items:
            # A run of a checkpoint a reload removed must not bring its metric series back.
            if result.checkpoint in self.checkpoints:
                self.metrics.observe_result(result)
            log.info(
                "run finished",
                run_id=result.run_id,
                checkpoint=result.checkpoint,
                status=result.status.value,
                duration=round(result.duration_seconds, 4),
                attempt=result.attempt,
                error=result.error,
            )
            if event is not None and event.type == "file" and result.status is not Status.SKIPPED:
                for source in self.triggers.sources(result.checkpoint):
                    finish = getattr(source, "finish", None)
                    if finish is not None:
                        await finish(event, result.status.is_ok)

    async def _collect_recovered(self, entries: list[JournalEntry]) -> None:
        self._recovered.extend(entries)

    async def _recover(self) -> int:
        """Journal rows a crash (or a drain) left behind: re-run or mark interrupted; how many."""
        assert self.store is not None
        assert self.runner is not None
        entries = list(self._recovered)
        if self.config.daemon.on_crash == "rerun":
            entries += await self.store.journal_entries(state="interrupted")
        if not entries:
            return 0
        self.metrics.runs_recovered(len(entries))
        policy = self.config.daemon.on_crash
        log.warning("recovering runs left unfinished", count=len(entries), policy=policy)
        for entry in entries:
            if policy == "rerun" and entry.checkpoint in self.checkpoints:
                await self.runner.resubmit_event(entry.checkpoint, entry.to_event())
            else:
                await self.store.journal_mark(entry.key, entry.checkpoint, "interrupted")
        return len(entries)

    # -------------------------------------------------------------- tasks

    def _spawn(
        self, coro: Awaitable[Any], name: str, *, critical: bool = False
    ) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        if critical:
            self._critical.append(task)
            task.add_done_callback(self._critical_done)
        return task

    def _critical_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or self.draining or task not in self._critical:
            return
        exc = task.exception()
        log.error(
            "critical task ended",
            task=task.get_name(),
            error=repr(exc) if exc is not None else "returned",
        )
        if self._exit_event is not None:  # main_loop notices it at once, not within a second
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

    def watch_config(self, enabled: bool) -> None:
        """Start or stop reloading when the config file changes (``daemon.watch_config``)."""
        watching = self._config_watch is not None and not self._config_watch.done()
        if enabled and not watching and self.config.source is not None:
            self._config_watch = self._spawn(
                self.control.watch_config_loop(), "watch-config", critical=True
            )
        elif not enabled and watching:
            task, self._config_watch = self._config_watch, None
            assert task is not None
            self._critical.remove(task)  # its end is not a failure now
            if task is not asyncio.current_task():
                task.cancel()
            # else: the watcher's own reload turned watching off; its loop returns once
            # the reload is done (cancelling it here would cut the reload short).

    def _dead_critical(self) -> str | None:
        if self.store is not None and not self.store.healthy:
            return "store-writer"
        if self.runner is not None and not self.runner.healthy:
            return "runner"
        for task in self._critical:
            if task.done() and not task.cancelled():
                return task.get_name()
        return None

    def sweep_retention_now(self, retention: RetentionConfig) -> None:
        """Keep what ``retention`` says from now on, starting with a sweep at once."""
        if self.store is not None:
            self.store.retention = retention
            self._retention_wake.set()

    async def _retention_loop(self) -> None:
        assert self.store is not None
        while True:
            try:
                report = await self.store.apply_retention()
                if report != RetentionReport():
                    log.info("retention applied", report=str(report))
            except CheckpointdError as exc:
                log.error("retention failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RETENTION_EVERY):
                    await self._retention_wake.wait()
            self._retention_wake.clear()
