"""What each channel sends, built without sending: webhook, Slack, PagerDuty, templates."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest

from checkpointd.actions.channel import ChannelContext, Delivery
from checkpointd.actions.pagerduty import PagerDutyChannel, build_event, dedup_key
from checkpointd.actions.registry import BrokenChannel, build_channel
from checkpointd.actions.signing import verify
from checkpointd.actions.slack import HEADER_LIMIT, MAX_BLOCKS, TEXT_LIMIT, build_message
from checkpointd.actions.templates import compile_template, template_context
from checkpointd.actions.webhook import WebhookChannel
from checkpointd.checkpoints.result import CheckpointResult, Status, ValidatorResult
from checkpointd.clock import FrozenClock
from checkpointd.config.models import (
    DaemonActionsConfig,
    PagerDutyAction,
    SlackAction,
    WebhookAction,
)
from checkpointd.errors import DeliveryError

T0 = datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)
CLOCK = FrozenClock(T0)
CONTEXT = ChannelContext(session=lambda: None, settings=DaemonActionsConfig(), clock=CLOCK)  # type: ignore[arg-type,return-value]


def _result(status=Status.FAILURE, validators=(), error=None, checkpoint="orders"):
    return CheckpointResult(
        run_id="0190aaaa-0000-7000-8000-000000000001",
        checkpoint=checkpoint,
        status=status,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=2),
        validators=tuple(validators),
        error=error,
        row_count=5000,
    )


RANGE_FAIL = ValidatorResult(
    type="range",
    status=Status.FAILURE,
    column="amount",
    checked_count=5000,
    failed_count=15,
    failed_ratio=0.003,
    sample=(1200.5, -3.0),
    message="15 values outside [0, 1000]",
)
NOT_NULL_OK = ValidatorResult(type="not_null", status=Status.SUCCESS, columns=("id",))


def _delivery(result, kind="notify", previous=None):
    return Delivery(
        id="0190bbbb-0000-7000-8000-00000000000d",
        run_id=result.run_id,
        checkpoint=result.checkpoint,
        action="orders.webhook[0]",
        action_type="webhook",
        kind=kind,
        previous_status=previous,
        attempt=1,
        result=result,
    )


# ---------------------------------------------------------------- webhook


def test_the_webhook_body_is_the_result_json_and_headers_carry_key_and_signature():
    config = WebhookAction(
        type="webhook",
        url="https://hooks.example/dq",
        secret="s3cret",
        headers={"X-Team": "data", "Idempotency-Key": "user-tries-to-override"},
    )
    channel = WebhookChannel("orders.webhook[0]", config, CONTEXT)
    delivery = _delivery(_result(validators=[RANGE_FAIL]), previous=Status.SUCCESS)
    body, content_type = channel.body(delivery)
    assert json.loads(body) == delivery.result.to_dict()
    assert content_type == "application/json"
    headers = channel.headers(delivery, body, content_type)
    assert headers["Idempotency-Key"] == delivery.id  # ours wins over a configured header
    assert headers["X-Team"] == "data"
    assert headers["X-Checkpointd-Notification"] == "notify"
    assert headers["X-Checkpointd-Previous-Status"] == "success"
    signature = headers["X-Checkpointd-Signature"]
    assert signature.startswith(f"t={int(T0.timestamp())},v1=")
    assert verify("s3cret", signature, body, now=T0.timestamp())


def test_the_webhook_body_is_identical_on_every_attempt():
    channel = WebhookChannel("w", WebhookAction(type="webhook", url="https://h.example/x"), CONTEXT)
    result = _result(validators=[RANGE_FAIL])
    first = channel.body(_delivery(result))
    again = channel.body(dataclasses.replace(_delivery(result), attempt=5))
    assert first == again


def test_a_webhook_template_renders_the_body():
    config = WebhookAction(
        type="webhook",
        url="https://h.example/x",
        template='{"text": "{{ checkpoint }} is {{ status }} ({{ failed_validators | length }})"}',
    )
    channel = WebhookChannel("w", config, CONTEXT)
    body, content_type = channel.body(_delivery(_result(validators=[RANGE_FAIL, NOT_NULL_OK])))
    assert json.loads(body) == {"text": "orders is failure (1)"}
    assert content_type == "application/json"


def test_the_webhook_preview_masks_custom_header_values():
    config = WebhookAction(
        type="webhook",
        url="https://h.example/x/SECRETPATH",
        headers={"Authorization": "Bearer abcdef"},
    )
    preview = WebhookChannel("w", config, CONTEXT).preview(_delivery(_result()))
    assert preview.destination == "https://h.example/***"
    assert preview.headers["Authorization"] == "***"
    assert "SECRETPATH" not in json.dumps([preview.destination, dict(preview.headers)])


# ---------------------------------------------------------------- templates


def test_templates_are_sandboxed_and_strict():
    context = template_context(_delivery(_result()))
    with pytest.raises(DeliveryError, match="unsafe") as info:
        compile_template("{{ result.__class__.__mro__ }}").render(context, what="w")
    assert info.value.retryable is False
    with pytest.raises(DeliveryError, match="undefined"):
        compile_template("{{ no_such_name }}").render(context, what="w")
    with pytest.raises(ValueError, match="line 1"):
        compile_template("{% if %}")


def test_a_template_with_a_syntax_error_is_a_config_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="invalid template"):
        WebhookAction(type="webhook", url="https://h.example/x", template="{{ oops")


# ---------------------------------------------------------------- slack


def test_the_slack_message_names_status_checkpoint_and_failing_validators():
    message = build_message(
        _delivery(_result(validators=[RANGE_FAIL, NOT_NULL_OK])), base_url="https://dq.example"
    )
    header = message["blocks"][0]
    assert header["type"] == "header"
    assert "orders: failure" in header["text"]["text"]
    text = json.dumps(message)
    assert "15 of 5,000 rows failed" in text
    assert "1200.5" in text
    assert "-3.0" in text
    assert "https://dq.example/api/v1/runs/0190aaaa-0000-7000-8000-000000000001" in text
    assert "not_null" not in text  # passing validators are not listed
    assert "orders" in message["text"]


def test_the_recovered_slack_message_says_so():
    message = build_message(_delivery(_result(Status.SUCCESS), "recovered", Status.FAILURE))
    assert "orders recovered (was failure)" in message["blocks"][0]["text"]["text"]


def test_the_slack_message_stays_inside_slack_limits():
    many = [
        ValidatorResult(
            type="regex",
            name="x" * 500,
            status=Status.FAILURE,
            column="c" * 300,
            failed_count=i,
            checked_count=10,
            sample=tuple("v" * 500 for _ in range(20)),
            message="m" * 5000,
        )
        for i in range(100)
    ]
    result = _result(validators=many, error="E" * 10_000, checkpoint="c" * 128)
    message = build_message(_delivery(result), custom_text="T" * 50_000)
    blocks = message["blocks"]
    assert len(blocks) <= MAX_BLOCKS
    assert len(blocks[0]["text"]["text"]) <= HEADER_LIMIT
    for block in blocks:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= TEXT_LIMIT
        for field in block.get("fields", []):
            assert len(field["text"]) <= 2000
        assert len(block.get("fields", [])) <= 10
    assert len(message["text"]) <= TEXT_LIMIT
    assert "more validator(s)" in json.dumps(message)


def test_slack_control_characters_in_data_are_escaped():
    v = ValidatorResult(type="in_set", status=Status.FAILURE, column="c", sample=("<!channel>",))
    text = json.dumps(build_message(_delivery(_result(validators=[v]))))
    assert "<!channel>" not in text
    assert "&lt;!channel&gt;" in text


def test_the_slack_template_replaces_the_text():
    config = SlackAction(
        type="slack",
        webhook_url="https://hooks.slack.com/services/T/B/X",
        template="*{{ checkpoint }}* went {{ status }}",
    )
    channel = build_channel(config, CONTEXT, "s")
    message = channel.message(_delivery(_result()))  # type: ignore[attr-defined]
    assert message["text"] == "*orders* went failure"
    assert message["blocks"][1]["text"]["text"] == "*orders* went failure"
    assert channel.destination == "https://hooks.slack.com/***"


# ---------------------------------------------------------------- pagerduty


def test_pagerduty_triggers_on_failure_with_a_dedup_key_per_checkpoint():
    event = build_event(
        _delivery(_result(validators=[RANGE_FAIL])), routing_key="RK", severity="critical"
    )
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == dedup_key("orders") == "checkpointd/orders"
    assert event["routing_key"] == "RK"
    payload = event["payload"]
    assert payload["severity"] == "critical"
    assert payload["component"] == "orders"
    assert payload["source"] == "checkpointd"
    assert "1 of 1 validators did not pass" in payload["summary"]
    assert payload["custom_details"]["failed_validators"][0]["failed_count"] == 15


def test_pagerduty_resolves_on_recovery_with_the_same_key():
    event = build_event(
        _delivery(_result(Status.SUCCESS), "recovered", Status.FAILURE),
        routing_key="RK",
        severity="error",
    )
    assert event == {
        "routing_key": "RK",
        "event_action": "resolve",
        "dedup_key": "checkpointd/orders",
    }


def test_the_pagerduty_summary_is_capped_and_the_preview_hides_the_routing_key():
    event = build_event(_delivery(_result(error="x" * 5000)), routing_key="RK", severity="error")
    assert len(event["payload"]["summary"]) <= 1024
    channel = PagerDutyChannel(
        "p", PagerDutyAction(type="pagerduty", routing_key="R0UTING-KEY-123"), CONTEXT
    )
    preview = channel.preview(_delivery(_result()))
    assert "R0UTING-KEY-123" not in preview.body
    assert json.loads(preview.body)["routing_key"] == "***"


# ---------------------------------------------------------------- registry


async def test_an_action_whose_channel_cannot_be_built_fails_for_good_with_the_reason():
    channel = BrokenChannel("k", "kafka", "kafka action 'k' cannot be set up: ImportError: x")
    with pytest.raises(DeliveryError, match="cannot be set up") as info:
        await channel.send(_delivery(_result()))
    assert info.value.retryable is False


def test_a_channel_that_fails_to_build_becomes_a_broken_channel(monkeypatch):
    import checkpointd.actions.webhook as webhook

    def explode(action, context, name):
        raise RuntimeError("no channel today")

    monkeypatch.setattr(webhook, "build_channel", explode)
    channel = build_channel(WebhookAction(type="webhook", url="http://h.example/x"), CONTEXT, "w")
    assert isinstance(channel, BrokenChannel)
    assert "RuntimeError: no channel today" in channel.reason
