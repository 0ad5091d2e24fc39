"""Logging: format choice, run context, stdlib routing and secret redaction."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from checkpointd.logs import (
    REDACTED,
    bind_run,
    configure_logging,
    get_logger,
    redact_event,
    redact_url,
    reset_logging,
)

SLACK = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXX"


@pytest.fixture(autouse=True)
def _reset_logging():
    root_level = logging.getLogger().level
    reset_logging()
    yield
    reset_logging()
    logging.getLogger().setLevel(root_level)


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# ------------------------------------------------------------------ format


def test_auto_writes_json_lines_when_not_a_terminal():
    out = io.StringIO()
    configure_logging("info", "auto", out)

    get_logger().info("run finished", checkpoint="orders", rows=12)

    [line] = json_lines(out)
    assert line["event"] == "run finished"
    assert line["level"] == "info"
    assert line["checkpoint"] == "orders"
    assert line["rows"] == 12


def test_timestamps_are_iso_utc():
    out = io.StringIO()
    configure_logging("info", "json", out)

    get_logger().info("tick")

    stamp = json_lines(out)[0]["timestamp"]
    assert stamp.endswith("Z")
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert parsed.utcoffset() == UTC.utcoffset(None)


def test_auto_uses_the_console_renderer_on_a_terminal():
    out = TtyStream()
    configure_logging("info", "auto", out)

    get_logger().info("run finished", checkpoint="orders")

    text = out.getvalue()
    assert "run finished" in text
    assert "orders" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_json_can_be_forced_on_a_terminal():
    out = TtyStream()
    configure_logging("info", "json", out)

    get_logger().info("hello")

    assert json_lines(out)[0]["event"] == "hello"


def test_console_can_be_forced_off_a_terminal_without_colour_codes():
    out = io.StringIO()
    configure_logging("info", "console", out)

    get_logger().warning("careful")

    assert "careful" in out.getvalue()
    assert "\x1b[" not in out.getvalue()


def test_lines_below_the_level_are_dropped():
    out = io.StringIO()
    configure_logging("WARNING", "json", out)

    log = get_logger()
    log.info("quiet")
    log.warning("loud")

    assert [line["event"] for line in json_lines(out)] == ["loud"]


def test_an_unknown_level_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="debug, info, warning, error"):
        configure_logging("verbose", "json", io.StringIO())


def test_reconfiguring_switches_level_even_for_existing_loggers():
    first, second = io.StringIO(), io.StringIO()
    log = get_logger()
    configure_logging("info", "json", first)
    log.debug("hidden")
    configure_logging("debug", "json", second)
    log.debug("shown")

    assert first.getvalue() == ""
    assert [line["event"] for line in json_lines(second)] == ["shown"]


def test_exceptions_are_rendered_into_the_line():
    out = io.StringIO()
    configure_logging("info", "json", out)

    try:
        raise ZeroDivisionError("nope")
    except ZeroDivisionError:
        get_logger().exception("crashed")

    [line] = json_lines(out)
    assert "ZeroDivisionError: nope" in line["exception"]


# ------------------------------------------------------------- run context


def test_lines_inside_a_run_carry_its_id_and_checkpoint():
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        log = get_logger()
        with bind_run("run-7", "orders"):
            log.info("validating")
        log.info("idle")

    assert logs[0]["run_id"] == "run-7"
    assert logs[0]["checkpoint"] == "orders"
    assert "run_id" not in logs[1]
    assert "checkpoint" not in logs[1]


async def test_run_context_follows_tasks_started_inside_the_run():
    out = io.StringIO()
    configure_logging("info", "json", out)
    log = get_logger()

    async def load() -> None:
        await asyncio.sleep(0)
        log.info("loaded")

    with bind_run("run-8", "payments"):
        task = asyncio.create_task(load())
    outside = asyncio.create_task(load())
    await asyncio.gather(task, outside)

    lines = json_lines(out)
    assert sum(1 for line in lines if line.get("run_id") == "run-8") == 1
    assert sum(1 for line in lines if "run_id" not in line) == 1


def test_the_configured_pipeline_merges_the_run_context():
    out = io.StringIO()
    configure_logging("info", "json", out)

    with bind_run("run-9", "orders"):
        get_logger().info("inside")

    [line] = json_lines(out)
    assert (line["run_id"], line["checkpoint"]) == ("run-9", "orders")


# ---------------------------------------------------------- stdlib routing


@pytest.mark.parametrize("name", ["aiohttp.client", "aiokafka.consumer", "apscheduler.scheduler"])
def test_library_warnings_share_the_renderer(name):
    out = io.StringIO()
    configure_logging("debug", "json", out)

    lib = logging.getLogger(name)
    lib.info("chatty detail")
    lib.warning("connection to %s lost", "broker-1")

    [line] = json_lines(out)
    assert line["event"] == "connection to broker-1 lost"
    assert line["logger"] == name
    assert line["level"] == "warning"
    assert line["timestamp"].endswith("Z")


def test_library_lines_carry_the_run_context_and_are_redacted():
    out = io.StringIO()
    configure_logging("info", "json", out)

    with bind_run("run-3", "orders"):
        logging.getLogger("aiohttp.client").error("POST %s failed", SLACK)

    [line] = json_lines(out)
    assert line["run_id"] == "run-3"
    assert line["event"] == f"POST https://hooks.slack.com/{REDACTED} failed"


def test_reconfiguring_does_not_duplicate_library_lines():
    out = io.StringIO()
    configure_logging("info", "json", io.StringIO())
    configure_logging("info", "json", out)

    logging.getLogger("aiohttp.server").warning("once")

    assert len(json_lines(out)) == 1


def test_an_error_level_also_silences_library_warnings():
    out = io.StringIO()
    configure_logging("error", "json", out)

    logging.getLogger("aiokafka").warning("ignored")
    logging.getLogger("aiokafka").error("kept")

    assert [line["event"] for line in json_lines(out)] == ["kept"]


# -------------------------------------------------------------- redaction


@pytest.mark.parametrize(
    "key",
    [
        "secret",
        "hook_secret",
        "token",
        "http_token",
        "password",
        "sasl_plain_password",
        "Authorization",
        "routing_key",
        "api_key",
    ],
)
def test_values_of_secret_named_keys_are_masked(key):
    with capture_logs(processors=[redact_event]) as logs:
        get_logger().info("configured", **{key: "hunter2"})

    assert logs[0][key] == REDACTED


def test_ordinary_keys_and_empty_secrets_are_kept():
    with capture_logs(processors=[redact_event]) as logs:
        get_logger().info("configured", checkpoint="orders", token=None, rows=3)

    assert logs[0]["checkpoint"] == "orders"
    assert logs[0]["token"] is None
    assert logs[0]["rows"] == 3


def test_a_webhook_url_keeps_only_its_host():
    with capture_logs(processors=[redact_event]) as logs:
        get_logger().info("delivering", webhook_url="https://hooks.example.com/dq?sig=abc")

    assert logs[0]["webhook_url"] == f"https://hooks.example.com/{REDACTED}"


def test_slack_urls_are_masked_anywhere_in_any_string():
    with capture_logs(processors=[redact_event]) as logs:
        get_logger().info(
            f"POST {SLACK} returned 404",
            target=SLACK,
            attempts=[{"url": SLACK, "status": 404}],
        )

    line = logs[0]
    assert "XXXXXXXXXXXX" not in repr(line)
    assert line["event"] == f"POST https://hooks.slack.com/{REDACTED} returned 404"
    assert line["target"] == f"https://hooks.slack.com/{REDACTED}"
    assert line["attempts"] == [{"url": f"https://hooks.slack.com/{REDACTED}", "status": 404}]


def test_secrets_nested_in_mappings_are_masked():
    with capture_logs(processors=[redact_event]) as logs:
        get_logger().info("request", headers={"Authorization": "Bearer abc", "Accept": "*/*"})

    assert logs[0]["headers"] == {"Authorization": REDACTED, "Accept": "*/*"}


def test_a_secret_in_a_traceback_is_masked():
    out = io.StringIO()
    configure_logging("info", "json", out)

    try:
        raise ConnectionError(f"cannot reach {SLACK}")
    except ConnectionError:
        get_logger().exception("delivery failed")

    text = out.getvalue()
    assert "XXXXXXXXXXXX" not in text
    assert f"cannot reach https://hooks.slack.com/{REDACTED}" in json_lines(out)[0]["exception"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (SLACK, f"https://hooks.slack.com/{REDACTED}"),
        ("https://hooks.example.com/dq?sig=abc", f"https://hooks.example.com/{REDACTED}"),
        ("https://example.com", "https://example.com"),
        ("https://example.com/", "https://example.com/"),
        ("https://example.com?token=abc", f"https://example.com/{REDACTED}"),
        ("https://user:pw@example.com", f"https://example.com/{REDACTED}"),
        ("http://127.0.0.1:8080/hook", f"http://127.0.0.1:8080/{REDACTED}"),
        ("http://[::1]:9000/x", f"http://[::1]:9000/{REDACTED}"),
        ("not a url", REDACTED),
        ("http://[broken/x", REDACTED),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown
