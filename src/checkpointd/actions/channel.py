"""The channel protocol: how one delivery from the outbox leaves checkpointd.

A *channel* (webhook, Slack, PagerDuty, Python, Kafka) is built once per
configured action and makes single attempts: the dispatcher owns retries,
backoff, timeouts, concurrency limits and the circuit breaker, so a channel
only has to

- ``send(delivery)``: try once; return a :class:`DeliveryOutcome` when the
  destination accepted it, or raise :class:`~checkpointd.errors.DeliveryError`
  with ``retryable`` (would trying again help?) and ``retry_after`` (seconds the
  destination asked us to wait, e.g. an HTTP ``Retry-After``). Any other
  exception counts as a retryable failure; ``TimeoutError`` too.
- ``preview(delivery)``: what ``send`` would transmit, without sending
  (``checkpointd actions test``), with secrets masked.
- ``close()``: release what the channel holds (producers, clients); the shared
  HTTP session is not the channel's to close.

Every string a channel puts into a ``DeliveryError``, a ``DeliveryOutcome``,
a ``Preview`` or a log line must be free of secrets: no webhook path, no
signing secret, no routing key. ``destination`` names where deliveries go in
the same safe form (``https://hooks.slack.com/***``, ``kafka:topic``); the
dispatcher also uses it as the key of the per-destination concurrency limit
and circuit breaker.

Each channel module exposes one factory with the same name::

    def build_channel(action: <its config model>, context: ChannelContext, name: str) -> Channel

(``name`` is the action's name: its ``name:`` in the config, else
``<checkpoint>.<type>[<index>]``), and ``checkpointd.actions.registry`` picks it
by the action's ``type``. Building must not do I/O (it also runs for
``checkpointd actions test``); connect lazily on the first ``send``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from checkpointd.checkpoints.result import CheckpointResult, Status
from checkpointd.clock import SYSTEM_CLOCK, Clock
from checkpointd.errors import DeliveryError
from checkpointd.store.model import NotificationKind

if TYPE_CHECKING:
    import aiohttp

    from checkpointd.config.models import DaemonActionsConfig, KafkaConfig

__all__ = [
    "Channel",
    "ChannelContext",
    "Delivery",
    "DeliveryError",
    "DeliveryOutcome",
    "NotificationKind",
    "Preview",
]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox row as a channel sees it: what to report, to which action, which try."""

    id: str
    """Stable for the life of the delivery: sent as ``Idempotency-Key`` on every attempt."""
    run_id: str
    checkpoint: str
    action: str
    """The action's name (``<checkpoint>.<type>[<index>]`` unless the config names it)."""
    action_type: str
    kind: NotificationKind
    previous_status: Status | None
    """The checkpoint's status before this run (None for its first run)."""
    attempt: int
    """1 for the first attempt, 2 for the first retry, ..."""
    result: CheckpointResult

    @property
    def idempotency_key(self) -> str:
        """The key receivers deduplicate on; equal to :attr:`id`."""
        return self.id

    def result_dict(self) -> dict[str, Any]:
        """The result in the shared JSON shape (``CheckpointResult.to_dict()``)."""
        return self.result.to_dict()


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What the destination said when it accepted a delivery."""

    status_code: int | None = None
    detail: str = ""
    """Short and secret-free; stored with the delivery and shown by ``checkpointd deliveries``."""


@dataclass(frozen=True, slots=True)
class Preview:
    """What ``send`` would transmit, secrets masked, for ``checkpointd actions test``."""

    destination: str
    method: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = ""


@runtime_checkable
class Channel(Protocol):
    """One configured action's way out. See the module docstring for the rules."""

    @property
    def name(self) -> str:
        """The action's name."""
        ...

    @property
    def action_type(self) -> str:
        """``webhook``, ``slack``, ``pagerduty``, ``python``, ``kafka``."""
        ...

    @property
    def destination(self) -> str:
        """Where deliveries go, secret-free; the concurrency and breaker key."""
        ...

    async def send(self, delivery: Delivery) -> DeliveryOutcome:
        """Try once; raise ``DeliveryError(message, retryable=, retry_after=)`` on failure."""
        ...

    def preview(self, delivery: Delivery) -> Preview:
        """What ``send`` would transmit, with secrets masked; no I/O."""
        ...

    async def close(self) -> None:
        """Release what this channel holds (not the shared HTTP session)."""
        ...


SessionFactory = Callable[[], "aiohttp.ClientSession"]


@dataclass(frozen=True, slots=True)
class ChannelContext:
    """What a channel factory may use: shared, process-wide things and daemon settings.

    ``session()`` returns the one aiohttp ``ClientSession`` of the process (created
    on first use, inside the loop; closed by the action service, never by a
    channel). ``settings`` is ``daemon.actions`` (host allow-list, connect
    timeout, ...); ``kafka`` is the top-level ``kafka:`` section, if any;
    ``executor`` runs blocking user code (sync Python actions).
    """

    session: SessionFactory
    settings: DaemonActionsConfig
    kafka: KafkaConfig | None = None
    clock: Clock = SYSTEM_CLOCK
    executor: Executor | None = None
