"""The ``pagerduty`` channel: PagerDuty Events API v2.

A run that is not a success *triggers* an alert; a return to success (the
``recovered`` form, sent by default: ``send_recovery: true``) *resolves* it.
Both use the dedup key ``checkpointd/<checkpoint>``, so repeated failures of
one checkpoint update one incident instead of opening many, and the resolve
closes that incident. The routing key travels in the body and is masked in
previews; it never appears in errors or logs.
"""

from __future__ import annotations

import json
from typing import Any, Final

from checkpointd.actions.channel import ChannelContext, Delivery, DeliveryOutcome, Preview
from checkpointd.actions.httppost import HttpTarget, post
from checkpointd.actions.redact import REDACTED, redact_url
from checkpointd.actions.templates import run_url
from checkpointd.checkpoints.result import Status, format_timestamp
from checkpointd.config.models import PagerDutyAction

__all__ = ["PagerDutyChannel", "build_channel", "build_event", "dedup_key"]

SUMMARY_LIMIT: Final = 1024
MAX_DETAILS: Final = 10


def dedup_key(checkpoint: str) -> str:
    """One PagerDuty incident per checkpoint."""
    return f"checkpointd/{checkpoint}"


def build_event(
    delivery: Delivery, *, routing_key: str, severity: str, base_url: str | None = None
) -> dict[str, Any]:
    """The Events API v2 body for ``delivery``; pure."""
    result = delivery.result
    key = dedup_key(result.checkpoint)
    if delivery.kind == "recovered" or result.status is Status.SUCCESS:
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": key}
    failed = result.failed_validators
    summary = f"checkpointd: {result.checkpoint} {result.status.value}"
    if failed:
        summary += f" ({len(failed)} of {len(result.validators)} validators did not pass)"
    if result.error:
        summary += f": {result.error}"
    if len(summary) > SUMMARY_LIMIT:
        summary = summary[: SUMMARY_LIMIT - 1] + "…"
    details: dict[str, Any] = {
        "run_id": result.run_id,
        "status": result.status.value,
        "attempt": result.attempt,
        "error": result.error,
        "failed_validators": [v.to_dict() for v in failed[:MAX_DETAILS]],
    }
    if len(failed) > MAX_DETAILS:
        details["more_failed_validators"] = len(failed) - MAX_DETAILS
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": summary,
            "source": "checkpointd",
            "severity": severity,
            "component": result.checkpoint,
            "group": "data-quality",
            "class": result.status.value,
            "timestamp": format_timestamp(result.finished_at),
            "custom_details": details,
        },
        "client": "checkpointd",
    }
    link = run_url(base_url, result.run_id)
    if link:
        event["client_url"] = link
        event["links"] = [{"href": link, "text": "checkpointd run"}]
    return event


class PagerDutyChannel:
    """Sends trigger/resolve events of one ``pagerduty`` action."""

    action_type = "pagerduty"

    def __init__(self, name: str, config: PagerDutyAction, context: ChannelContext) -> None:
        self.name = name
        self.config = config
        self._context = context
        self.destination = redact_url(config.url)
        self._target = HttpTarget(
            url=config.url,
            destination=f"pagerduty {name!r} ({self.destination})",
            timeout=config.timeout,
        )

    def event(self, delivery: Delivery, *, masked: bool = False) -> dict[str, Any]:
        key = REDACTED if masked else self.config.routing_key.get_secret_value()
        return build_event(
            delivery, routing_key=key, severity=self.config.severity, base_url=self.config.base_url
        )

    def _headers(self, delivery: Delivery) -> dict[str, str]:
        return {"Content-Type": "application/json", "Idempotency-Key": delivery.idempotency_key}

    async def send(self, delivery: Delivery) -> DeliveryOutcome:
        event = self.event(delivery)
        body = json.dumps(event).encode()
        outcome = await post(self._context, self._target, body, self._headers(delivery))
        return DeliveryOutcome(outcome.status_code, f"{outcome.detail} ({event['event_action']})")

    def preview(self, delivery: Delivery) -> Preview:
        body = json.dumps(self.event(delivery, masked=True), indent=2)
        return Preview(self.destination, "POST", self._headers(delivery), body)

    async def close(self) -> None:
        return None


def build_channel(action: PagerDutyAction, context: ChannelContext, name: str) -> PagerDutyChannel:
    """The channel of one ``pagerduty`` action named ``name``."""
    return PagerDutyChannel(name, action, context)
