"""systemd/checkpointd.service: systemd accepts it, and its sandbox scores what the docs say.

Both checks run the real ``systemd-analyze`` (Debian package ``systemd``;
scripts/install-test-tools installs it). They need no running systemd:
``verify`` loads the unit file offline, ``security --offline=true`` scores the
file itself.

``verify`` insists that ExecStart's binary exists. The unit names
``/usr/bin/checkpointd``, where a distribution package would put it; here the
test verifies a copy whose ExecStart points at the ``checkpointd`` console
script installed in this virtualenv, and changes nothing else.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from checkpointd.config.loader import load_config
from checkpointd.config.models import DaemonConfig

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "checkpointd.service"
ENV_EXAMPLE = ROOT / "systemd" / "checkpointd.env.example"
DOCS = ROOT / "docs" / "systemd.md"
INSTALLED_EXEC = "/usr/bin/checkpointd"
EXPOSURE_CEILING = 2.0  # what the project promises, whatever the docs currently state


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is missing: run scripts/install-test-tools (Debian: systemd)")
    return tool


def run(*args: str) -> subprocess.CompletedProcess[str]:
    # No colours or emoji: the output is parsed.
    env = {"PATH": "/usr/bin:/bin", "SYSTEMD_COLORS": "0", "SYSTEMD_EMOJI": "0", "LANG": "C"}
    return subprocess.run(
        [systemd_analyze(), *args], capture_output=True, text=True, timeout=120, env=env
    )


def service_settings(text: str) -> dict[str, list[str]]:
    """Key -> values of the [Service] section (systemd allows repeated keys)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


@pytest.fixture(scope="module")
def settings() -> dict[str, list[str]]:
    return service_settings(UNIT.read_text())


def documented_exposure() -> float:
    match = re.search(r"Overall exposure level: \*\*(\d+\.\d+)\*\*", DOCS.read_text())
    assert match, f"{DOCS} must state 'Overall exposure level: **N.N**'"
    return float(match.group(1))


def test_systemd_verify_accepts_the_unit(tmp_path):
    console_script = Path(sys.executable).parent / "checkpointd"
    assert console_script.is_file(), f"{console_script} missing: run scripts/setup-env"
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED_EXEC} " in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={INSTALLED_EXEC} ", f"ExecStart={console_script} "))

    result = run("verify", str(copy))

    assert result.returncode == 0, result.stderr
    # Unknown or misspelt keys are only warnings (exit 0): treat any output as a defect.
    assert result.stderr.strip() == "", result.stderr
    assert result.stdout.strip() == "", result.stdout


def test_security_exposure_is_at_most_the_documented_score():
    documented = documented_exposure()

    result = run("security", "--offline=true", str(UNIT))

    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout
    exposure = float(match.group(1))
    assert exposure <= documented <= EXPOSURE_CEILING, result.stdout


def test_security_threshold_flag_agrees():
    # systemd-analyze's own gate (in tenths), so the score is not only our reading of its text.
    threshold = round(documented_exposure() * 10)

    result = run("security", "--offline=true", f"--threshold={threshold}", str(UNIT))

    assert result.returncode == 0, result.stdout


def test_the_unit_is_a_notify_service_with_reload_and_watchdog(settings):
    assert settings["Type"] == ["notify"]
    assert settings["NotifyAccess"] == ["main"]
    assert settings["ExecStart"] == [f"{INSTALLED_EXEC} run -c /etc/checkpointd/checkpointd.yaml"]
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert settings["WatchdogSec"] == ["30"]
    assert settings["Restart"] == ["on-failure"]


def test_systemd_waits_longer_than_the_daemon_drains(settings):
    drain = DaemonConfig().graceful_shutdown_timeout.total_seconds()

    assert int(settings["TimeoutStopSec"][0]) > drain


def test_state_lives_in_the_state_directory(settings):
    assert settings["StateDirectory"] == ["checkpointd"]
    assert "CHECKPOINTD_STATE_DIR=%S/checkpointd" in settings["Environment"]
    assert settings["DynamicUser"] == ["yes"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("SystemCallArchitectures", "native"),
        ("MemoryDenyWriteExecute", "yes"),
        ("LockPersonality", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictNamespaces", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("ProtectProc", "invisible"),
        ("ProcSubset", "pid"),
        ("UMask", "0077"),
    ],
)
def test_the_sandbox_setting_is_present(settings, key, value):
    assert settings.get(key) == [value]


def test_system_calls_are_limited_to_a_system_service(settings):
    assert "@system-service" in settings["SystemCallFilter"]


def test_egress_is_left_open_for_kafka_and_webhooks(settings):
    assert "IPAddressDeny" not in settings
    assert "PrivateNetwork" not in settings


def test_the_env_example_only_sets_known_overrides():
    known = {
        "CHECKPOINTD_HTTP_LISTEN",
        "CHECKPOINTD_STATE_DIR",
        "CHECKPOINTD_LOG_LEVEL",
        "CHECKPOINTD_LOG_FORMAT",
        "CHECKPOINTD_HTTP_TOKEN",
        "CHECKPOINTD_KAFKA_BOOTSTRAP",
    }
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.lstrip("# ").strip()
        match = re.match(r"([A-Z][A-Z0-9_]*)=", line)
        if match and match.group(1).startswith("CHECKPOINTD_"):
            names.add(match.group(1))

    assert names
    assert names <= known, names - known


# A child that switches on the kernel's write-xor-execute policy (the same refusal
# MemoryDenyWriteExecute= installs) and then exercises the daemon's native stack.
MDWE_CHILD = r"""
import asyncio, ctypes, mmap, sys

libc = ctypes.CDLL(None, use_errno=True)
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    print(f"prctl(PR_SET_MDWE) failed, errno {ctypes.get_errno()}: needs Linux >= 6.3")
    sys.exit(3)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except OSError:
    pass
else:
    print("W^X is not enforced")
    sys.exit(3)

import aiohttp, aiosqlite, polars as pl, uvloop
from aiohttp import web
from prometheus_client import CollectorRegistry
from checkpointd.daemon.metrics import Metrics

async def main():
    app = web.Application()
    app.router.add_get("/", lambda request: web.Response(text="ok"))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/") as response:
            assert await response.text() == "ok"
    await runner.cleanup()
    async with aiosqlite.connect(":memory:") as db:
        await db.execute("create table t (x)")
        await db.execute("insert into t values (1)")
        assert await (await db.execute("select count(*) from t")).fetchone() == (1,)
    frame = pl.DataFrame({"a": range(100_000)}).lazy()
    query = frame.filter(pl.col("a") % 7 == 0).select(pl.col("a").n_unique())
    result = await asyncio.to_thread(lambda: query.collect(engine="streaming").item())
    assert result == 14286, result
    Metrics(CollectorRegistry()).render()

uvloop.run(main())
print("stack ok")
"""


def unit_environment(settings: dict[str, list[str]]) -> dict[str, str]:
    env = {}
    for line in settings.get("Environment", []):
        key, _, value = line.partition("=")
        env[key] = value
    return env


def run_under_mdwe(extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **extra_env}
    return subprocess.run(
        [sys.executable, "-c", MDWE_CHILD],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )


def test_the_stack_runs_under_memory_deny_write_execute_with_the_units_environment(settings):
    env = unit_environment(settings)
    assert env.get("POLARS_SKIP_CPU_CHECK") == "1"

    result = run_under_mdwe(env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "stack ok"


def test_without_the_units_environment_polars_cannot_start_under_it():
    # Why the unit sets POLARS_SKIP_CPU_CHECK: if a polars release drops its
    # CPUID trampoline, this fails and the variable can go.
    result = run_under_mdwe({})

    assert result.returncode == 1, result.stdout + result.stderr
    assert "could not execute mprotect for CPUID check" in result.stderr


# ------------------------------------------------- container image and Kubernetes example
# Neither is built or applied here (no container engine, no cluster); these checks keep
# the shipped files consistent with the daemon they describe.

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S_DOCS = ROOT / "docs" / "kubernetes.md"


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_image_runs_the_daemon_as_a_non_root_user():
    instructions = dockerfile_instructions()
    final_stage = instructions[
        max(i for i, (word, _) in enumerate(instructions) if word == "FROM") :
    ]
    values = {word: rest for word, rest in final_stage}

    assert final_stage[0][1].startswith("python:3.11-slim")
    assert json.loads(values["ENTRYPOINT"]) == [
        "checkpointd",
        "run",
        "-c",
        "/etc/checkpointd/checkpointd.yaml",
        "--loop",
        "uvloop",
    ]
    assert values["EXPOSE"] == "9108"
    user = values["USER"].split(":")[0]
    assert user.isdigit()
    assert int(user) != 0
    assert json.loads(values["VOLUME"]) == ["/var/lib/checkpointd"]
    assert "CHECKPOINTD_STATE_DIR=/var/lib/checkpointd" in values["ENV"]


def test_the_build_context_holds_what_pip_install_reads():
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = {
        source
        for word, rest in dockerfile_instructions()
        if word == "COPY" and not rest.startswith("--from")
        for source in rest.split()[:-1]
    }

    assert patterns[0] == "*"  # an allow-list: nothing else leaks into the image
    allowed = {p.lstrip("!").rstrip("/") for p in patterns if p.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "src"}
    assert {"pyproject.toml", "README.md", "src"} <= copied


def k8s_documents() -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", K8S_DOCS.read_text(), flags=re.DOTALL)
    return [doc for block in blocks for doc in yaml.safe_load_all(block) if doc]


def k8s_object(kind: str) -> dict[str, Any]:
    [found] = [doc for doc in k8s_documents() if doc.get("kind") == kind]
    return found


def test_the_kubernetes_example_config_loads(tmp_path):
    text = k8s_object("ConfigMap")["data"]["checkpointd.yaml"]
    path = tmp_path / "checkpointd.yaml"
    path.write_text(text)
    env = {
        "SLACK_WEBHOOK": "https://hooks.slack.com/services/T0/B0/X",
        "CHECKPOINTD_HTTP_LISTEN": "0.0.0.0:9108",
        "CHECKPOINTD_HTTP_TOKEN": "s3cret",
    }

    config = load_config(path, env=env)

    assert config.daemon.watch_config is True
    [checkpoint] = config.checkpoints
    assert [t.type for t in checkpoint.triggers] == ["file"]
    assert config.daemon.http.listen == "0.0.0.0:9108"


def test_the_kubernetes_example_waits_for_the_drain_and_probes_the_daemon(tmp_path):
    path = tmp_path / "checkpointd.yaml"
    path.write_text(k8s_object("ConfigMap")["data"]["checkpointd.yaml"])
    drain = load_config(path, env={"SLACK_WEBHOOK": "x"}).daemon.graceful_shutdown_timeout
    pod = k8s_object("Deployment")["spec"]["template"]["spec"]
    [sidecar] = [c for c in pod["containers"] if c["name"] == "checkpointd"]

    assert pod["terminationGracePeriodSeconds"] > drain.total_seconds()
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"
    config_mount = next(m for m in sidecar["volumeMounts"] if m["name"] == "config")
    assert config_mount["mountPath"] == "/etc/checkpointd"
    assert "subPath" not in config_mount  # subPath mounts never see ConfigMap updates
    exports = {m["name"]: m["mountPath"] for m in sidecar["volumeMounts"]}["exports"]
    assert any(m["mountPath"] == exports for c in pod["containers"] for m in c["volumeMounts"])
    overrides = {e["name"] for e in sidecar["env"] if e["name"].startswith("CHECKPOINTD_")}
    assert overrides == {
        "CHECKPOINTD_HTTP_LISTEN",
        "CHECKPOINTD_STATE_DIR",
        "CHECKPOINTD_LOG_LEVEL",
        "CHECKPOINTD_LOG_FORMAT",
        "CHECKPOINTD_HTTP_TOKEN",
    }
