"""The ``slack`` channel: a Block Kit message to an incoming webhook.

The message says what an operator needs first: status and checkpoint in the
header, then run facts, the error if any, and each failing validator with its
counts and a few sample values; a link to the run when ``base_url`` is set.
It stays inside Slack's limits (header 150 characters, a text block 3000,
10 fields per section, 50 blocks per message; longer content is cut with
``…``). With ``template``, the rendered text replaces the fallback ``text``
and is shown as the first section.

The webhook URL is the credential (its path is the secret): it is only ever
shown as ``https://hooks.slack.com/***``.
"""

from __future__ import annotations

import json
from typing import Any, Final

from checkpointd.actions.channel import ChannelContext, Delivery, DeliveryOutcome, Preview
from checkpointd.actions.httppost import HttpTarget, post
from checkpointd.actions.redact import redact_url
from checkpointd.actions.templates import Template, compile_template, run_url, template_context
from checkpointd.checkpoints.result import CheckpointResult, ValidatorResult
from checkpointd.config.models import SlackAction

__all__ = ["SlackChannel", "build_channel", "build_message"]

HEADER_LIMIT: Final = 150
TEXT_LIMIT: Final = 3000
FIELD_LIMIT: Final = 2000
MAX_BLOCKS: Final = 50
MAX_VALIDATORS: Final = 10
MAX_SAMPLES: Final = 5
SAMPLE_LIMIT: Final = 80

_EMOJI: Final = {
    "success": ":white_check_mark:",
    "warning": ":warning:",
    "failure": ":x:",
    "error": ":rotating_light:",
    "timeout": ":hourglass:",
    "cancelled": ":no_entry_sign:",
    "skipped": ":fast_forward:",
}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _sample(value: Any) -> str:
    return _cut(_escape(json.dumps(value, default=str)), SAMPLE_LIMIT)


def _validator_text(v: ValidatorResult) -> str:
    target = v.column or ", ".join(v.columns)
    title = f"*{_escape(v.name or v.type)}*" + (f" `{_escape(target)}`" if target else "")
    if v.checked_count:
        counts = f"{v.failed_count:,} of {v.checked_count:,} rows failed ({v.failed_ratio:.2%})"
    else:
        counts = f"{v.failed_count:,} rows failed"
    lines = [f"{title} — {v.status.value} ({v.severity}): {counts}"]
    if v.message:
        lines.append(_escape(v.message))
    if v.sample:
        shown = ", ".join(_sample(s) for s in v.sample[:MAX_SAMPLES])
        more = f" (+{len(v.sample) - MAX_SAMPLES} more)" if len(v.sample) > MAX_SAMPLES else ""
        lines.append(f"Sample: {shown}{more}")
    return _cut("\n".join(lines), TEXT_LIMIT)


def _headline(delivery: Delivery) -> str:
    result = delivery.result
    status = result.status.value
    if delivery.kind == "recovered":
        was = delivery.previous_status.value if delivery.previous_status else "failing"
        return f"{_EMOJI['success']} {result.checkpoint} recovered (was {was})"
    return f"{_EMOJI.get(status, '')} {result.checkpoint}: {status}".strip()


def _fallback_text(delivery: Delivery) -> str:
    result = delivery.result
    failed = result.failed_validators
    text = _headline(delivery)
    if failed:
        text += f" — {len(failed)} of {len(result.validators)} validators did not pass"
    if result.error:
        text += f" — {result.error}"
    return _cut(text, TEXT_LIMIT)


def _facts(result: CheckpointResult) -> dict[str, Any]:
    facts = [
        f"*Checkpoint*\n{_escape(result.checkpoint)}",
        f"*Status*\n{result.status.value}",
        f"*Run*\n`{result.run_id}`",
        f"*Duration*\n{result.duration_seconds:.3f}s",
    ]
    if result.trigger is not None:
        facts.append(f"*Trigger*\n{_escape(result.trigger.type)}")
    if result.row_count is not None:
        facts.append(f"*Rows*\n{result.row_count:,}")
    return {
        "type": "section",
        "fields": [{"type": "mrkdwn", "text": _cut(f, FIELD_LIMIT)} for f in facts[:10]],
    }


def build_message(
    delivery: Delivery, *, base_url: str | None = None, custom_text: str | None = None
) -> dict[str, Any]:
    """The Slack payload (``text`` + ``blocks``) for one delivery; pure."""
    result = delivery.result
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _cut(_headline(delivery), HEADER_LIMIT),
                     "emoji": True},
        },
    ]  # fmt: skip
    if custom_text:
        blocks.append(_section(custom_text))
    blocks.append(_facts(result))
    if result.error:
        blocks.append(_section(f"*Error*\n```{_cut(_escape(result.error), TEXT_LIMIT - 20)}```"))
    failed = result.failed_validators
    # Leave room for the overflow note, the link and the footer.
    room = MAX_BLOCKS - len(blocks) - 3
    shown = failed[: min(MAX_VALIDATORS, room)]
    if shown:
        blocks.append({"type": "divider"})
        blocks.extend(_section(_validator_text(v)) for v in shown)
    if len(failed) > len(shown):
        more = len(failed) - len(shown)
        blocks.append(_context(f"…and {more} more validator(s) that did not pass"))
    link = run_url(base_url, result.run_id)
    if link:
        blocks.append(_section(f"<{link}|View this run>"))
    blocks.append(_context(f"checkpointd · delivery `{delivery.id}`"))
    text = _cut(custom_text, TEXT_LIMIT) if custom_text else _fallback_text(delivery)
    return {"text": text, "blocks": blocks[:MAX_BLOCKS]}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, TEXT_LIMIT)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(text, TEXT_LIMIT)}]}


class SlackChannel:
    """Posts deliveries of one ``slack`` action to its incoming webhook."""

    action_type = "slack"

    def __init__(self, name: str, config: SlackAction, context: ChannelContext) -> None:
        self.name = name
        self.config = config
        self._context = context
        url = config.webhook_url.get_secret_value()
        self.destination = redact_url(url)
        self._template: Template | None = (
            compile_template(config.template) if config.template else None
        )
        self._target = HttpTarget(
            url=url, destination=f"slack {name!r} ({self.destination})", timeout=config.timeout
        )

    def message(self, delivery: Delivery) -> dict[str, Any]:
        """The payload for ``delivery`` (template rendered when configured)."""
        custom = None
        if self._template is not None:
            context = template_context(delivery, self.config.base_url)
            custom = self._template.render(context, what=self._target.destination)
        return build_message(delivery, base_url=self.config.base_url, custom_text=custom)

    def _headers(self, delivery: Delivery) -> dict[str, str]:
        # Slack ignores it; proxies and test receivers can deduplicate on it.
        return {"Content-Type": "application/json", "Idempotency-Key": delivery.idempotency_key}

    async def send(self, delivery: Delivery) -> DeliveryOutcome:
        body = json.dumps(self.message(delivery), ensure_ascii=False).encode()
        return await post(self._context, self._target, body, self._headers(delivery))

    def preview(self, delivery: Delivery) -> Preview:
        body = json.dumps(self.message(delivery), ensure_ascii=False, indent=2)
        return Preview(self.destination, "POST", self._headers(delivery), body)

    async def close(self) -> None:
        return None


def build_channel(action: SlackAction, context: ChannelContext, name: str) -> SlackChannel:
    """The channel of one ``slack`` action named ``name``."""
    return SlackChannel(name, action, context)
