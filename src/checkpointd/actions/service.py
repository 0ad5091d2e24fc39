"""The daemon's actions, wired: outbox hook, channels, dispatcher, operator calls.

:class:`ActionService` is what the daemon holds. It

- wraps the store in :class:`OutboxJournal`, whose ``save_results`` writes
  each result's deliveries in the same transaction as the result (the
  runner's journal); after the commit the dispatcher is woken;
- builds one channel per configured action, lazily and again when a reload
  changes the action, on one shared aiohttp session whose resolver refuses
  link-local addresses;
- runs the :class:`~checkpointd.actions.delivery.DeliveryDispatcher` task;
- answers operators: list deliveries, show one, requeue dead ones (the CLI
  and ``/api/v1/deliveries``).

The current config is read through ``config`` (a callable) at every use, so a
reload's new or changed actions apply to the next result; deliveries already
in the outbox are sent by the action of the same name under the new config.
``daemon.actions`` itself is read once: it needs a restart.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import aiohttp
from prometheus_client import CollectorRegistry

from checkpointd.actions.channel import Channel, ChannelContext
from checkpointd.actions.delivery import DeliveryDispatcher, DeliveryRoute
from checkpointd.actions.host_policy import GuardedResolver
from checkpointd.actions.metrics import ActionMetrics
from checkpointd.actions.outbox import Candidate, DeliveryStatus, OutboxEntry, plan_deliveries
from checkpointd.actions.plan import ActionSpec, action_specs
from checkpointd.actions.redact import Scrubber, secrets_of
from checkpointd.actions.registry import build_channel
from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.clock import SYSTEM_CLOCK, Clock
from checkpointd.config.models import ActionConfig, Config
from checkpointd.events import TriggerEvent
from checkpointd.logs import get_logger
from checkpointd.protocols import Store
from checkpointd.store.model import DeliveryPlan, DeliveryPlanner

if TYPE_CHECKING:
    from aiohttp import web

    from checkpointd.webauth import TokenSource

__all__ = ["ActionService", "OutboxJournal", "make_session"]

_log = get_logger(component="actions")

ACTION_THREAD_PREFIX = "checkpointd-run-action"
"""Worker threads of sync Python actions. The ``checkpointd-run`` prefix lets the
daemon's exit path treat a thread stuck in user code like a stuck run thread."""

ResultItems = Sequence[tuple[CheckpointResult, TriggerEvent | None]]


def make_session(config: Config) -> aiohttp.ClientSession:
    """The process's HTTP client for actions (call inside the running loop)."""
    settings = config.daemon.actions
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(allow_link_local=settings.allow_link_local),
        limit=settings.max_in_flight,
        limit_per_host=0,  # the dispatcher enforces per-destination limits itself
    )
    return aiohttp.ClientSession(connector=connector, trust_env=False)


class OutboxJournal:
    """The runner's journal: the store, with the outbox written alongside every result."""

    def __init__(self, store: Store, service: ActionService) -> None:
        self.store = store
        self._service = service

    async def journal_accept(self, event: TriggerEvent, checkpoint: str) -> bool:
        return await self.store.journal_accept(event, checkpoint)

    async def journal_mark_running(self, event: TriggerEvent, checkpoint: str) -> None:
        await self.store.journal_mark_running(event, checkpoint)

    async def save_results(self, items: ResultItems) -> None:
        """Store the results and their deliveries in one transaction, then wake the dispatcher."""
        await self.store.save_results(items, deliveries=self._service.delivery_planner(items))
        self._service.wake()


class _Bound:
    """A built channel and the config it was built from."""

    __slots__ = ("action", "channel")

    def __init__(self, action: ActionConfig, channel: Channel) -> None:
        self.action = action
        self.channel = channel


class ActionService:
    """Outbox, channels and dispatcher of one daemon. Build it once the store is open."""

    def __init__(
        self,
        config: Callable[[], Config],
        store: Store,
        *,
        registry: CollectorRegistry | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self.store = store
        self.settings = config().daemon.actions
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix=ACTION_THREAD_PREFIX)
        self.context = ChannelContext(
            session=self._get_session,
            settings=self.settings,
            kafka=config().kafka,
            clock=clock,
            executor=self._executor,
        )
        self.metrics = ActionMetrics(registry) if registry is not None else None
        self._channels: dict[tuple[str, str], _Bound] = {}
        self._retired: list[Channel] = []
        self._synced_for: Config | None = None
        self._actions_by_checkpoint: dict[str, list[tuple[ActionSpec, ActionConfig]]] = {}
        self._max_concurrency: dict[str, int] = {}
        self._scrubber = Scrubber()
        self.dispatcher = DeliveryDispatcher(
            store.outbox,
            self.route,
            self.settings,
            metrics=self.metrics,
            clock=clock,
            scrub=self.scrub,
            rng=rng,
        )
        self.journal = OutboxJournal(store, self)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # ------------------------------------------------------------ life cycle

    async def run(self) -> None:
        """Deliver from the outbox until :meth:`stop` (the daemon supervises this task)."""
        await self.dispatcher.run()

    def start(self) -> None:
        """Run :meth:`run` in a task of its own (embedders and tests; the daemon spawns it)."""
        self._task = asyncio.get_running_loop().create_task(
            self.run(), name="checkpointd-action-dispatcher"
        )
        self._task.add_done_callback(self._watch)

    @property
    def healthy(self) -> bool:
        """False once the dispatcher task died (the daemon treats it as critical)."""
        return self._task is None or not self._task.done() or self._stopping

    async def stop(self, grace: float = 5.0) -> None:
        """Let in-flight deliveries finish for ``grace`` s, stop, close channels and session."""
        self._stopping = True
        await self.dispatcher.stop(grace)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait([self._task])
        for channel in [*(b.channel for b in self._channels.values()), *self._retired]:
            try:
                await channel.close()
            except Exception as exc:  # closing is best effort; report and go on
                _log.warning("closing an action channel failed", action=channel.name,
                             error=self.scrub(f"{type(exc).__name__}: {exc}"))  # fmt: skip
        self._channels.clear()
        self._retired.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _watch(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._stopping:
            return
        exc = task.exception()
        _log.error("the action dispatcher died; notifications stop until a restart",
                   error=self.scrub(repr(exc)))  # fmt: skip

    def wake(self) -> None:
        """New deliveries were committed, or some were requeued."""
        self.dispatcher.wake()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = make_session(self._config())
        return self._session

    # ------------------------------------------------------------ channels

    def _sync(self) -> dict[str, list[tuple[ActionSpec, ActionConfig]]]:
        """Each checkpoint's actions under the current config (recomputed after a reload)."""
        config = self._config()
        if config is self._synced_for:
            return self._actions_by_checkpoint
        self._actions_by_checkpoint = {
            cp.name: list(zip(action_specs(cp), cp.actions.items, strict=True))
            for cp in config.checkpoints
        }
        self._max_concurrency = {
            cp.name: cp.actions.max_concurrency
            for cp in config.checkpoints
            if cp.actions.strategy == "concurrent" and cp.actions.max_concurrency is not None
        }
        self._scrubber = Scrubber(
            secret
            for cp in config.checkpoints
            for action in cp.actions.items
            for secret in secrets_of(action, config.kafka)
        )
        keep = {
            (name, spec.name)
            for name, actions in self._actions_by_checkpoint.items()
            for spec, _ in actions
        }
        for key in [k for k in self._channels if k not in keep]:
            self._retired.append(self._channels.pop(key).channel)
        if self.metrics is not None:
            self.metrics.forget_actions({name for _, name in keep})
        self._synced_for = config
        return self._actions_by_checkpoint

    def scrub(self, text: str) -> str:
        """``text`` with every secret of the current config masked."""
        self._sync()
        return self._scrubber(text)

    def channel(self, checkpoint: str, spec: ActionSpec, action: ActionConfig) -> Channel:
        """The channel of one action, rebuilt when its config changed."""
        key = (checkpoint, spec.name)
        bound = self._channels.get(key)
        if bound is not None and bound.action == action:
            return bound.channel
        if bound is not None:
            self._retired.append(bound.channel)
        channel = build_channel(action, self.context, spec.name)
        self._channels[key] = _Bound(action, channel)
        if self.metrics is not None:
            breaker = self.dispatcher.breaker(channel.destination)
            self.metrics.register_action(spec.name, lambda: breaker.is_open)
        return channel

    def route(self, checkpoint: str, action_name: str) -> DeliveryRoute | None:
        """How to deliver for ``action_name`` of ``checkpoint`` now; None if it is gone."""
        for spec, action in self._sync().get(checkpoint, ()):
            if spec.name == action_name:
                return DeliveryRoute(
                    channel=self.channel(checkpoint, spec, action),
                    max_attempts=action.max_attempts,
                    timeout=action.timeout.total_seconds(),
                    backoff=action.backoff or self.settings.backoff,
                    run_concurrency=self._max_concurrency.get(checkpoint),
                )
        return None

    # ------------------------------------------------------------ the outbox hook

    def delivery_planner(self, items: ResultItems) -> DeliveryPlanner:
        """What ``save_results`` runs in its transaction to plan these results' deliveries.

        Channels are resolved here, outside the transaction; inside it, the store reads
        the previous statuses and writes the rows ``outbox.plan_deliveries`` returns.
        """
        candidates = []
        for result, _event in items:
            actions = [
                (spec, self.channel(result.checkpoint, spec, action).destination)
                for spec, action in self._sync().get(result.checkpoint, ())
            ]
            candidates.append(Candidate(result, actions))
        now = self._clock.now()

        def plan(last: Mapping[str, Status]) -> DeliveryPlan:
            planned = plan_deliveries(candidates, last, now)
            if planned.rows:
                _log.debug("notifications queued", count=len(planned.rows))
            return planned

        return plan

    # ------------------------------------------------------------ operators

    async def list_deliveries(
        self,
        *,
        status: DeliveryStatus | None = None,
        checkpoint: str | None = None,
        limit: int = 50,
    ) -> list[OutboxEntry]:
        """Deliveries newest first."""
        return await self.store.outbox.entries(status=status, checkpoint=checkpoint, limit=limit)

    async def get_delivery(self, delivery_id: str) -> OutboxEntry | None:
        """One delivery, or None."""
        return await self.store.outbox.get(delivery_id)

    async def counts(self) -> dict[str, int]:
        """Deliveries by status."""
        found = await self.store.outbox.counts()
        return {str(status): count for status, count in found.items()}

    async def retry(self, ids: Sequence[str] | None = None) -> list[str]:
        """Requeue dead deliveries (``ids``, or all when None); returns the ids requeued."""
        now = self._clock.now()
        requeued = await self.store.outbox.requeue(now, ids)
        if requeued:
            _log.info("dead deliveries requeued", count=len(requeued))
            self.wake()
        return requeued

    def add_routes(self, app: web.Application, token: TokenSource) -> None:
        """Serve ``/api/v1/deliveries`` on ``app`` (before it starts)."""
        from checkpointd.actions.routes import add_delivery_routes

        add_delivery_routes(app, self, token)
