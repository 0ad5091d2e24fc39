"""Secrets stay out of messages; destinations are checked before anything is sent."""

from __future__ import annotations

import socket

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver

from checkpointd.actions.host_policy import (
    GuardedResolver,
    LinkLocalRefused,
    check_url,
    host_allowed,
    is_link_local,
)
from checkpointd.actions.redact import Scrubber, describe_exception, mask_headers, secrets_of
from checkpointd.config.models import (
    DaemonActionsConfig,
    PagerDutyAction,
    PythonAction,
    SlackAction,
    WebhookAction,
)
from checkpointd.errors import DeliveryError

SLACK = "https://hooks.slack.com/services/T0AAAA/B0BBBB/xoxbSecretTokenValue"


def test_every_secret_of_an_action_is_found():
    hook = WebhookAction(
        type="webhook",
        url="https://user:pw123456@hooks.example/path/SECRET-PATH-1?token=QUERYSECRET",
        secret="signing-secret",
        headers={"Authorization": "Bearer header-token"},
    )
    found = set(secrets_of(hook))
    assert {"signing-secret", "Bearer header-token", "pw123456", "token=QUERYSECRET"} <= found
    assert "/path/SECRET-PATH-1" in found
    slack = SlackAction(type="slack", webhook_url=SLACK)
    assert {SLACK, "xoxbSecretTokenValue"} <= set(secrets_of(slack))
    pd = PagerDutyAction(type="pagerduty", routing_key="R0UTINGKEY0123")
    assert "R0UTINGKEY0123" in secrets_of(pd)
    assert secrets_of(PythonAction(type="python", target="m:f")) == []


def test_the_scrubber_masks_known_secrets_and_any_slack_url():
    scrub = Scrubber(["signing-secret", "/path/SECRET-PATH-1", "ab"])  # "ab": too short to mask
    text = (
        "failed https://hooks.example/path/SECRET-PATH-1 with signing-secret; "
        "also https://hooks.slack.com/services/T/B/abc"
    )
    masked = scrub(text)
    assert "SECRET-PATH-1" not in masked
    assert "signing-secret" not in masked
    assert "services/T/B/abc" not in masked
    assert "https://hooks.slack.com/***" in masked
    assert "hooks.example" in masked  # the host stays: operators see which service failed
    assert "also" in masked


def test_header_values_are_masked_except_public_ones():
    shown = mask_headers(
        {"Authorization": "Bearer x", "X-Api-Key": "k", "Content-Type": "application/json",
         "Idempotency-Key": "0190-abc"}
    )  # fmt: skip
    assert shown == {
        "Authorization": "***",
        "X-Api-Key": "***",
        "Content-Type": "application/json",
        "Idempotency-Key": "0190-abc",
    }


def test_client_errors_are_described_without_their_url():
    exc = aiohttp.InvalidURL("https://hooks.slack.com/services/T/B/SECRET")
    text = describe_exception(exc, "slack 'alerts' (https://hooks.slack.com/***)")
    assert "SECRET" not in text
    assert text.startswith("InvalidURL reaching slack 'alerts'")
    refused = ConnectionRefusedError(111, "Connection refused")
    assert describe_exception(refused, "d").endswith("Connection refused")


@pytest.mark.parametrize(
    ("host", "allow", "ok"),
    [
        ("hooks.slack.com", None, True),
        ("hooks.slack.com", ["hooks.slack.com"], True),
        ("HOOKS.slack.com.", ["hooks.slack.com"], True),
        ("evil.com", ["hooks.slack.com"], False),
        ("a.example.com", ["*.example.com"], True),
        ("x.a.example.com", ["*.example.com"], True),
        ("example.com", ["*.example.com"], False),
        ("badexample.com", ["*.example.com"], False),
        ("anything", [], False),
    ],
)
def test_the_host_allow_list(host, allow, ok):
    assert host_allowed(host, allow) is ok


@pytest.mark.parametrize(
    ("host", "link_local"),
    [
        ("169.254.169.254", True),
        ("169.254.0.1", True),
        ("[fe80::1]", True),
        ("fe80::1%eth0", True),
        ("::ffff:169.254.169.254", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("metadata.google.internal", False),  # a name: checked after resolution instead
    ],
)
def test_link_local_literals(host, link_local):
    assert is_link_local(host) is link_local


SETTINGS = DaemonActionsConfig()


def test_metadata_addresses_are_refused_unless_allowed():
    with pytest.raises(DeliveryError, match="link-local") as info:
        check_url("http://169.254.169.254/latest/meta-data", SETTINGS, what="webhook 'w'")
    assert info.value.retryable is False
    allowed = DaemonActionsConfig(allow_link_local=True)
    assert check_url("http://169.254.169.254/x", allowed, what="w") == "169.254.169.254"


def test_hosts_off_the_allow_list_are_refused_for_good():
    settings = DaemonActionsConfig(allow_hosts=["hooks.slack.com"])
    with pytest.raises(DeliveryError, match="allow_hosts") as info:
        check_url("https://evil.example/x", settings, what="w")
    assert info.value.retryable is False


@pytest.mark.parametrize("url", ["ftp://host/x", "not a url", "/relative/path", "http://"])
def test_only_absolute_http_urls_are_sent_to(url):
    with pytest.raises(DeliveryError, match="not an absolute http"):
        check_url(url, SETTINGS, what="w")


class _FixedResolver(AbstractResolver):
    def __init__(self, address: str) -> None:
        self.address = address

    async def resolve(self, host, port=0, family=socket.AF_INET):
        return [{"hostname": host, "host": self.address, "port": port, "family": family,
                 "proto": 0, "flags": 0}]  # fmt: skip

    async def close(self):
        return None


async def test_names_resolving_to_link_local_are_refused_after_resolution():
    guarded = GuardedResolver(_FixedResolver("169.254.169.254"), allow_link_local=False)
    with pytest.raises(LinkLocalRefused):
        await guarded.resolve("metadata.example", 80)
    fine = GuardedResolver(_FixedResolver("10.1.2.3"), allow_link_local=False)
    assert (await fine.resolve("internal.example", 80))[0]["host"] == "10.1.2.3"
    opted_in = GuardedResolver(_FixedResolver("169.254.169.254"), allow_link_local=True)
    assert await opted_in.resolve("metadata.example", 80)
