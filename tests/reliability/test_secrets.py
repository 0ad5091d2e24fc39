"""Secrets never show: the daemon at DEBUG, every error path forced, everything it wrote scanned.

Secrets are planted two ways: through the environment (``CHECKPOINTD_HTTP_TOKEN``; by
``${VAR}``: webhook URLs with a secret path and query token, an HMAC signing secret, a Slack
webhook URL, a PagerDuty routing key, a Kafka password) and as literal values in the config
file (a webhook URL, its signing secret and header values, a Slack URL, a routing key).

Then every error path we can reach is forced: receivers that answer 500 (echoing the
request's path, query and headers back), 429, hang past the timeout or reset the
connection; a closed port; a host that cannot resolve (``nonexistent.invalid``); a Python
action whose exception quotes the secrets; a checkpoint that fails; dead letters, retried
through the CLI and dead again; wrong bearer tokens; an invalid reload (over HTTP and by
SIGHUP) whose bad values carry secrets; a valid reload that rotates one; the CLI
(``deliveries``, ``history``, ``run-once``, ``actions test`` with and without ``--send``,
``check`` and ``run`` on a broken config that holds secrets).

Scanned for every secret (URL secrets by path segment and by query): the daemon's log
(stdout and stderr), the raw bytes of every file in the state dir (database, ``-wal``,
``-shm``, lock; while the daemon runs and after it stopped), ``/metrics``, the answer to
every route of the HTTP API (every GET with every id it knows, and error answers: 400,
401, 404, 405, 409), and the output of every CLI command. Hits must be zero.
"""

from __future__ import annotations

import copy
import os
import re
import signal
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from checkpointd.actions.routes import add_delivery_routes
from checkpointd.daemon.http import build_app
from tests.e2e.harness import DaemonProcess, free_port, start_daemon, wait_for
from tests.reliability.receivers import (
    Answer,
    HttpReceiver,
    RawReceiver,
    ReceiverHost,
    always,
    scripted,
)

pytestmark = pytest.mark.timeout(240)

# ---------------------------------------------------------------- the planted secrets
# Distinctive strings, so that a hit is never a coincidence.

TOKEN = "httpTOKENs3cret4f9a2c"
HOOK_SECRET = "envHMACs3cret9a4d11"
PD_KEY = "envPDroutingKEY0c1d2e3f4a5b"
KAFKA_PASSWORD = "envKAFKApassw0rd8e7f"
HOOK_PATH, HOOK_QUERY = "envPATHs3cret7d1e", "envQUERYs3cret2b8f"
SLACK_TOKEN = "envSLACKs3cret5c6d"
HANG_PATH = "envHANGpath3a4b5c"
RESET_PATH, RESET_QUERY = "envRESETpath6c7d", "envRESETquery1e2f"
DNS_PATH, DNS_QUERY = "envDNSpath8a9b0c", "envDNSquery0c1d2e"
LIT_PATH, LIT_PATH_ROTATED = "litPATHs3cret4e5f", "litPATHrotated9f8e"
LIT_QUERY = "litQUERYs3cret6a7b"
LIT_HMAC = "litHMACs3cret8c9d"
LIT_HEADER = "litHEADERs3cret0e1f"
LIT_BEARER = "litBEARERs3cret2a3b"
LIT_REFUSED = "litREFUSEDpath4c5d"
LIT_SLACK = "litSLACKs3cret6e7f"
LIT_PD = "litPDroutingKEY8a9b0c1d"
# Only in the broken config: literal secrets of the wrong type (an unquoted number is not a
# string) in secret fields. A config error must not print them either.
BAD_HMAC, BAD_HEADER, BAD_ROUTING_KEY = 73918264550193, 4815162342108, 5550123498761234

SECRETS = {
    "http token": TOKEN,
    "env signing secret": HOOK_SECRET,
    "env routing key": PD_KEY,
    "kafka password": KAFKA_PASSWORD,
    "env webhook path": HOOK_PATH,
    "env webhook query token": HOOK_QUERY,
    "env slack token": SLACK_TOKEN,
    "env hang path": HANG_PATH,
    "env reset path": RESET_PATH,
    "env reset query": RESET_QUERY,
    "env dns path": DNS_PATH,
    "env dns query": DNS_QUERY,
    "literal webhook path": LIT_PATH,
    "literal webhook path, rotated": LIT_PATH_ROTATED,
    "literal query token": LIT_QUERY,
    "literal signing secret": LIT_HMAC,
    "literal header value": LIT_HEADER,
    "literal bearer header": LIT_BEARER,
    "literal refused path": LIT_REFUSED,
    "literal slack token": LIT_SLACK,
    "literal routing key": LIT_PD,
    "numeric signing secret (broken config)": str(BAD_HMAC),
    "numeric header value (broken config)": str(BAD_HEADER),
    "numeric routing key (broken config)": str(BAD_ROUTING_KEY),
}


def leaky_action(result: Any) -> None:
    """A Python action whose error message quotes the secrets of the config it runs under
    (not the literal webhook path, which a reload rotates)."""
    raise RuntimeError(
        f"could not notify {os.environ['HOOK_URL']} (signed {os.environ['HOOK_SECRET']}), "
        f"{os.environ['SLACK_WEBHOOK']}, routing key {os.environ['PD_KEY']}; literal "
        f"{LIT_QUERY} {LIT_HMAC} {LIT_HEADER} {LIT_PD}"
    )


# ---------------------------------------------------------------- the config


def _env(ports: dict[str, int]) -> dict[str, str]:
    """The secrets the daemon (and every CLI command) gets from its environment."""
    local = "http://127.0.0.1"
    return {
        "CHECKPOINTD_HTTP_TOKEN": TOKEN,
        "CHECKPOINTD_LOG_LEVEL": "debug",
        "HOOK_SECRET": HOOK_SECRET,
        "PD_KEY": PD_KEY,
        "KAFKA_PASSWORD": KAFKA_PASSWORD,
        "HOOK_URL": f"{local}:{ports['fail']}/hooks/{HOOK_PATH}?token={HOOK_QUERY}",
        "SLACK_WEBHOOK": f"{local}:{ports['fail']}/services/T0AAA/B0BBB/{SLACK_TOKEN}",
        "HANG_URL": f"{local}:{ports['hang']}/hang/{HANG_PATH}",
        "RESET_URL": f"{local}:{ports['reset']}/reset/{RESET_PATH}?sig={RESET_QUERY}",
        "DNS_URL": f"http://nonexistent.invalid/dns/{DNS_PATH}?key={DNS_QUERY}",
    }


def _config(state: Path, ports: dict[str, int], *, rotated: bool = False) -> dict[str, Any]:
    local = "http://127.0.0.1"
    common = {"notify_on": "always", "max_attempts": 2}
    lit_path = LIT_PATH_ROTATED if rotated else LIT_PATH
    actions: list[dict[str, Any]] = [
        {"type": "webhook", "name": "env-hook", "url": "${HOOK_URL}",
         "secret": "${HOOK_SECRET}", **common},
        {"type": "webhook", "name": "lit-hook",
         "url": f"{local}:{ports['fail']}/lit/{lit_path}?api_key={LIT_QUERY}",
         "secret": LIT_HMAC,
         "headers": {"X-Api-Key": LIT_HEADER, "Authorization": f"Bearer {LIT_BEARER}"},
         **common},
        {"type": "webhook", "name": "hang", "url": "${HANG_URL}", "timeout": "500ms", **common},
        {"type": "webhook", "name": "reset", "url": "${RESET_URL}", **common},
        {"type": "webhook", "name": "dns", "url": "${DNS_URL}", "timeout": "2s", **common},
        {"type": "webhook", "name": "refused",
         "url": f"{local}:{ports['closed']}/refused/{LIT_REFUSED}", **common},
        {"type": "slack", "name": "env-slack", "webhook_url": "${SLACK_WEBHOOK}", **common},
        {"type": "slack", "name": "lit-slack",
         "webhook_url": f"{local}:{ports['fail']}/services/T1/B1/{LIT_SLACK}", **common},
        {"type": "pagerduty", "name": "env-pd", "routing_key": "${PD_KEY}",
         "url": f"{local}:{ports['limited']}/pd", **common},
        {"type": "pagerduty", "name": "lit-pd", "routing_key": LIT_PD,
         "url": f"{local}:{ports['fail']}/pd", **common},
        {"type": "python", "name": "leaky", "target": f"{__name__}:leaky_action", **common},
    ]  # fmt: skip
    return {
        "daemon": {
            "state_dir": str(state),
            "graceful_shutdown_timeout": "5s",
            "log": {"format": "json", "level": "debug"},
            "actions": {
                "poll_interval": "100ms",
                "connect_timeout": "1s",
                "backoff": {"initial": "50ms", "max": "200ms"},
                "breaker": {"failures": 100, "reset_after": "200ms"},
            },
        },
        # No Kafka trigger, so no connection: the section is here for its password.
        "kafka": {
            "bootstrap_servers": "127.0.0.1:1",
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_plain_username": "checkpointd",
            "sasl_plain_password": "${KAFKA_PASSWORD}",
        },
        "checkpoints": [
            {
                "name": "orders",
                "data_source": {"type": "inline", "rows": [{"amount": 5}, {"amount": -3}]},
                "validators": [{"type": "range", "column": "amount", "min": 0}],
                "triggers": [{"type": "manual"}],
                "actions": {"list": actions},
            },
            {
                "name": "broken",
                "data_source": {"type": "csv", "path": str(state.parent / "missing.csv")},
                "triggers": [{"type": "manual"}],
                "actions": {"list": [{"type": "webhook", "name": "broken-hook",
                                      "url": "${HOOK_URL}", "max_attempts": 2}]},
            },
        ],
    }  # fmt: skip


def _broken(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with bad values that carry secrets: env values in fields of the wrong kind
    (the error must show ``${VAR}``), literal secrets of the wrong type in secret fields."""
    bad = copy.deepcopy(config)
    by_name = {a["name"]: a for a in bad["checkpoints"][0]["actions"]["list"]}
    by_name["env-hook"]["max_attempts"] = "${HOOK_SECRET}"
    by_name["env-slack"]["timeout"] = "${SLACK_WEBHOOK}"
    by_name["env-pd"]["severity"] = "${PD_KEY}"
    by_name["hang"]["notify_on"] = "${HANG_URL}"
    by_name["lit-hook"]["secret"] = BAD_HMAC
    by_name["lit-hook"]["headers"]["X-Api-Key"] = BAD_HEADER
    by_name["lit-pd"]["routing_key"] = BAD_ROUTING_KEY
    return bad


def _write(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# ---------------------------------------------------------------- what was seen


@dataclass
class Places:
    """Every place scanned: a name and the raw bytes found there."""

    found: dict[str, bytes] = field(default_factory=dict)

    def add(self, name: str, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else data
        while name in self.found:
            name += "'"
        self.found[name] = raw

    def add_state_dir(self, state: Path, when: str) -> None:
        for path in sorted(p for p in state.rglob("*") if p.is_file()):
            self.add(f"state dir ({when}): {path.name}", path.read_bytes())


def _needles() -> dict[str, bytes]:
    """Each secret as it could appear: as is, and percent-encoded where that differs."""
    out: dict[str, bytes] = {}
    for what, value in SECRETS.items():
        out[what] = value.encode()
        quoted = urllib.parse.quote(value, safe="")
        if quoted != value:
            out[f"{what} (percent-encoded)"] = quoted.encode()
    return out


def _scan(places: Places) -> list[str]:
    hits = []
    for where, data in places.found.items():
        for what, needle in _needles().items():
            at = data.find(needle)
            if at >= 0:
                context = data[max(0, at - 120) : at + len(needle) + 40].decode(errors="replace")
                hits.append(f"{what} in {where}: ...{context}...")
    return hits


# ---------------------------------------------------------------- the API, route by route


def _routes() -> list[tuple[str, str]]:
    """(method, path pattern) of every route the daemon serves, read from the app itself."""
    app = build_app(object(), token=None, max_body_bytes=1024)  # type: ignore[arg-type]
    add_delivery_routes(app, object(), lambda: None)  # type: ignore[arg-type]
    found = set()
    for route in app.router.routes():
        if route.method in ("GET", "POST") and route.resource is not None:
            found.add((route.method, route.resource.canonical))
    return sorted(found)


def _fill(pattern: str, ids: dict[str, list[str]]) -> list[str]:
    """Every concrete path of ``pattern``: each known id, a malformed one, an unknown one."""
    match = re.search(r"\{(\w+)\}", pattern)
    if match is None:
        return [pattern]
    values = ids[match.group(1)]
    return [pattern.replace(match.group(0), value) for value in values]


def _exercise_api(daemon: DaemonProcess, places: Places) -> dict[str, set[int]]:
    """Call every route (GETs with every id, POSTs with no, a wrong and the right token);
    record every answer. Returns the statuses seen per route pattern."""
    runs = daemon.runs()
    deliveries = daemon.get("/api/v1/deliveries?limit=1000").json()["deliveries"]
    unknown = "01a00000-0000-7000-8000-000000000000"
    ids = {
        "name": ["orders", "broken", "no-such-checkpoint", "bad%20name"],
        "run_id": [r["run_id"] for r in runs] + [unknown, "not-a-uuid"],
        "delivery_id": [d["id"] for d in deliveries] + [unknown, "not-a-uuid"],
    }
    seen: dict[str, set[int]] = {}

    def record(label: str, answer: Any) -> None:
        headers = "".join(f"{k}: {v}\n" for k, v in answer.headers.items())
        places.add(f"API {label} -> {answer.status}", f"{headers}\n".encode() + answer.body)

    for method, pattern in _routes():
        statuses = seen.setdefault(f"{method} {pattern}", set())
        for path in _fill(pattern, ids):
            if method == "GET":
                answer = daemon.get(path)
                record(f"GET {path}", answer)
                statuses.add(answer.status)
                continue
            for token in (None, "wrong-token", f"{TOKEN}x"):
                answer = daemon.request("POST", path, token=token or "", body=b"")
                record(f"POST {path} (bad token)", answer)
                statuses.add(answer.status)
            if pattern == "/-/reload":
                continue  # the reloads are driven on their own, with the file in place
            body = b'{"all_dead": true}' if path.endswith("/deliveries/retry") else b""
            answer = daemon.request("POST", path, token=TOKEN, body=body)
            record(f"POST {path}", answer)
            statuses.add(answer.status)
    for extra in ("/-/reload", "/no/such/route", "/api/v1/runs?limit=0", "/api/v1/runs?status=x"):
        answer = daemon.get(extra)
        record(f"GET {extra}", answer)
        seen.setdefault("extra", set()).add(answer.status)
    return seen


# ---------------------------------------------------------------- the CLI


def _cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "checkpointd", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=timeout,
    )


def _record_cli(
    places: Places, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    done = _cli(env, *args)
    places.add(f"CLI {' '.join(args[:3])} -> {done.returncode}", done.stdout + "\n" + done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    return done


# ---------------------------------------------------------------- the scenario


@pytest.fixture
def receivers() -> Iterator[dict[str, int]]:
    """The receivers, by role; their ports (and a closed one)."""
    with ReceiverHost() as host:
        fail = host.add(HttpReceiver("fail", always(Answer.ERROR), echo=True))
        limited = host.add(HttpReceiver("limited", scripted(Answer.LIMITED_RETRY_AFTER), echo=True))
        hang = host.add(HttpReceiver("hang", always(Answer.HANG), hang_limit=5))
        reset = host.add(RawReceiver("reset", always(Answer.RESET)))
        # `limited` answers 429 (Retry-After: 1) once per key, then 200: one action is
        # delivered, so the delivered path is covered too.
        yield {
            "fail": fail.port,
            "limited": limited.port,
            "hang": hang.port,
            "reset": reset.port,
            "closed": free_port(),  # bound, then released: nothing listens there
        }


def _dead(daemon: DaemonProcess) -> list[dict[str, Any]]:
    answer = daemon.get("/api/v1/deliveries?status=dead&limit=1000")
    return list(answer.json()["deliveries"])


def _settled(daemon: DaemonProcess, expected: int) -> bool:
    counts = daemon.get("/api/v1/deliveries?limit=1").json()["counts"]
    return bool(counts["pending"] == 0 and counts["dead"] + counts["delivered"] == expected)


def test_no_secret_shows_in_logs_state_metrics_api_or_cli_on_any_error_path(
    tmp_path: Path, receivers: dict[str, int], figures
):
    ports = receivers
    state = tmp_path / "state"
    port = free_port()
    # The CLI finds the running daemon's API through the same variable the daemon reads.
    env = {**_env(ports), "CHECKPOINTD_HTTP_LISTEN": f"127.0.0.1:{port}"}
    good = _config(state, ports)
    config = _write(tmp_path / "checkpointd.yaml", good)
    broken = _write(tmp_path / "broken.yaml", _broken(good))
    log = tmp_path / "daemon.log"
    places = Places()
    actions = len(good["checkpoints"][0]["actions"]["list"])

    # The broken config, before anything runs: `check` and `run` refuse it, cleanly.
    checked = _record_cli(places, env, "check", str(broken))
    assert checked.returncode == 1, checked.stderr
    assert "max_attempts" in checked.stderr
    refused = _record_cli(places, env, "run", "-c", str(broken))
    assert refused.returncode != 0, refused.stdout

    daemon = start_daemon(config, port=port, log_path=log, env=env, token=TOKEN, loop="uvloop")
    try:
        # Runs: wrong tokens are refused; a failing run and a run that errors.
        for token in ("wrong", f"{TOKEN}x", TOKEN[:-1]):
            bad = daemon.request("POST", "/api/v1/checkpoints/orders/runs", token=token, body=b"")
            places.add("API POST runs (bad token)", bad.body)
            assert bad.status == 401
        daemon.post_run("orders")
        daemon.post_run("broken")
        expected = actions + 1  # every action of the failing run, and broken-hook
        wait_for(lambda: _settled(daemon, expected), timeout=60, what="every delivery settled")
        dead = _dead(daemon)
        reasons = {d["action"]: d["last_error"] or "" for d in dead}
        # Every error path really happened (a scan of nothing would prove nothing).
        assert "answered HTTP 500" in reasons["env-hook"]
        assert "answered HTTP 500" in reasons["lit-hook"]
        assert "timeout" in reasons["hang"]
        assert "reaching" in reasons["reset"]  # a ClientOSError/ServerDisconnected: reset
        assert reasons["dns"]
        assert "ClientConnectorError" in reasons["refused"]
        assert "answered HTTP 500" in reasons["env-slack"]
        assert "RuntimeError" in reasons["leaky"]
        assert "env-pd" not in reasons, "429 then 200: the one delivered action"
        assert {r["status"] for r in daemon.runs()} == {"failure", "error"}

        # Dead letters retried through the CLI (through the running daemon, with the
        # token), and dead again.
        retried = _record_cli(places, env, "deliveries", "retry", "-c", str(config), "--all-dead")
        assert retried.returncode == 0, retried.stderr
        assert "through the running daemon" in retried.stdout
        wait_for(lambda: _settled(daemon, expected), timeout=60, what="the retries settled")

        # Invalid reloads carrying secrets in bad values: over HTTP, then by SIGHUP.
        _write(config, _broken(good))
        reload = daemon.post("/-/reload")
        places.add("API POST /-/reload (invalid config)", reload.body)
        assert reload.status == 400, reload.body
        assert len(reload.json()["errors"]) == 7, reload.body
        refusals = log.read_text().count("reload refused")
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: log.read_text().count("reload refused") >= 2 * refusals,
                 what="the SIGHUP reload refused")  # fmt: skip
        # A valid reload that rotates a literal secret, and one more failing delivery.
        _write(config, _config(state, ports, rotated=True))
        reload = daemon.post("/-/reload")
        places.add("API POST /-/reload (rotated)", reload.body)
        assert reload.status == 200, reload.body
        daemon.post_run("orders")
        wait_for(lambda: _settled(daemon, 2 * expected - 1), timeout=60, what="the new run")

        # The CLI beside the running daemon.
        for args in (
            ("deliveries", "-c", str(config)),
            ("deliveries", "-c", str(config), "--status", "dead", "--limit", "1000"),
            ("deliveries", "-c", str(config), "--output", "json", "--limit", "1000"),
            ("history", "-c", str(config), "--output", "json"),
            ("actions", "test", "-c", str(config), "orders", "--status", "failure"),
            ("actions", "test", "-c", str(config), "orders", "--status", "success",
             "--previous", "failure", "--output", "json"),
        ):  # fmt: skip
            assert _record_cli(places, env, *args).returncode == 0
        sent = _record_cli(
            places, env, "actions", "test", "-c", str(config), "orders", "--status", "error",
            "--send",
        )  # fmt: skip
        assert sent.returncode == 1, sent.stdout
        assert "FAILED" in sent.stdout

        statuses = _exercise_api(daemon, places)
        places.add_state_dir(state, "running")
    finally:
        if daemon.proc.poll() is None:
            daemon.signal(signal.SIGTERM)
            daemon.wait(timeout=30)
    assert daemon.proc.returncode == 0, daemon.log()[-3000:]
    places.add_state_dir(state, "stopped")
    once = _record_cli(places, env, "run-once", "-c", str(config), "broken")
    assert once.returncode == 2, once.stdout
    places.add("daemon log (stdout and stderr)", log.read_bytes())

    log_text = log.read_text()
    assert '"level": "debug"' in log_text, "the daemon did not log at DEBUG"
    for message in ("delivery is dead", "will retry", "reload refused", "config reloaded"):
        assert message in log_text, message
    # Every route was called and answered (GETs 200 for a known id, POSTs 401 for a bad
    # token), and the error answers came back too.
    assert len(statuses) - 1 == len(_routes())
    for route, got in statuses.items():
        if route.startswith("GET"):
            assert 200 in got, (route, got)
        elif route.startswith("POST"):
            assert 401 in got, (route, got)
    every = set().union(*statuses.values())
    assert {200, 202, 400, 401, 404, 405, 409} <= every, statuses

    hits = _scan(places)
    figures["secrets_planted"] = len(SECRETS)
    figures["needles"] = len(_needles())
    figures["places_scanned"] = len(places.found)
    figures["bytes_scanned"] = sum(len(v) for v in places.found.values())
    figures["routes_called"] = len(statuses) - 1
    figures["error_paths"] = sorted(reasons)
    figures["hits"] = len(hits)
    assert hits == [], "secrets leaked:\n" + "\n".join(hits[:20])
