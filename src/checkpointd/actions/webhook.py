"""The ``webhook`` channel: POST the result JSON to a URL.

Body: the result in the shared JSON shape (``CheckpointResult.to_dict()``),
or the output of the action's ``template`` (sent as ``application/json``
when it parses as JSON, else as text). Headers on every attempt:

- ``Idempotency-Key``: the delivery's id, the same on every retry;
- ``X-Checkpointd-Notification``: ``notify`` or ``recovered``;
- ``X-Checkpointd-Previous-Status``: the checkpoint's status before this run;
- ``X-Checkpointd-Signature: t=<unix>,v1=<hex>`` when ``secret`` is set
  (see :mod:`checkpointd.actions.signing`);
- the action's ``headers`` (they cannot replace the ones above).
"""

from __future__ import annotations

import json

from checkpointd.actions.channel import ChannelContext, Delivery, DeliveryOutcome, Preview
from checkpointd.actions.httppost import HttpTarget, post
from checkpointd.actions.redact import mask_headers, redact_url
from checkpointd.actions.signing import SIGNATURE_HEADER, sign
from checkpointd.actions.templates import Template, compile_template, template_context
from checkpointd.config.models import WebhookAction

__all__ = ["WebhookChannel", "build_channel"]


class WebhookChannel:
    """POSTs deliveries of one ``webhook`` action."""

    action_type = "webhook"

    def __init__(self, name: str, config: WebhookAction, context: ChannelContext) -> None:
        self.name = name
        self.config = config
        self.destination = redact_url(config.url)
        self._context = context
        self._template: Template | None = (
            compile_template(config.template) if config.template else None
        )
        self._target = HttpTarget(
            url=config.url,
            destination=f"webhook {name!r} ({self.destination})",
            timeout=config.timeout,
            verify_tls=config.verify_tls,
        )

    def body(self, delivery: Delivery) -> tuple[bytes, str]:
        """The request body and its content type (the same bytes on every attempt)."""
        if self._template is None:
            payload = json.dumps(delivery.result_dict(), separators=(",", ":"))
            return payload.encode(), "application/json"
        text = self._template.render(template_context(delivery), what=self._target.destination)
        try:
            json.loads(text)
        except ValueError:
            return text.encode(), "text/plain; charset=utf-8"
        return text.encode(), "application/json"

    def headers(self, delivery: Delivery, body: bytes, content_type: str) -> dict[str, str]:
        """Every header of one attempt (signed with the current time when a secret is set)."""
        headers = dict(self.config.headers)
        headers["Content-Type"] = content_type
        headers["Idempotency-Key"] = delivery.idempotency_key
        headers["X-Checkpointd-Notification"] = delivery.kind
        if delivery.previous_status is not None:
            headers["X-Checkpointd-Previous-Status"] = delivery.previous_status.value
        if self.config.secret is not None:
            timestamp = int(self._context.clock.now().timestamp())
            headers[SIGNATURE_HEADER] = sign(self.config.secret.get_secret_value(), body, timestamp)
        return headers

    async def send(self, delivery: Delivery) -> DeliveryOutcome:
        body, content_type = self.body(delivery)
        return await post(
            self._context, self._target, body, self.headers(delivery, body, content_type)
        )

    def preview(self, delivery: Delivery) -> Preview:
        body, content_type = self.body(delivery)
        headers = mask_headers(self.headers(delivery, body, content_type))
        return Preview(self.destination, "POST", headers, body.decode())

    async def close(self) -> None:
        return None


def build_channel(action: WebhookAction, context: ChannelContext, name: str) -> WebhookChannel:
    """The channel of one ``webhook`` action named ``name``."""
    return WebhookChannel(name, action, context)
