"""Loading a config file: the happy path, paths, environment, and how errors read."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from checkpointd.config import ENV_OVERRIDES, load_config, parse_config, summarize
from checkpointd.config.models import (
    FileTrigger,
    KafkaTrigger,
    NotNullValidator,
    ParquetSource,
    RangeValidator,
    ScheduleTrigger,
    SlackAction,
    WebhookAction,
)
from checkpointd.errors import ConfigError

DESIGN_EXAMPLE = """\
daemon:
  loop: uvloop
  max_concurrent_checkpoints: 8
  result_queue_size: 1000
  graceful_shutdown_timeout: 30s
  state_dir: ./state
  http: {listen: "127.0.0.1:9108", token: "${CHECKPOINTD_TOKEN:-}"}
  log: {format: json, level: info}
kafka: {bootstrap_servers: "127.0.0.1:9092", group_id: checkpointd}
checkpoints:
  - name: orders_quality
    data_source: {type: parquet, path: "data/orders/*.parquet"}
    validators:
      - {type: not_null, columns: [order_id, amount]}
      - {type: range, column: amount, min: 0, max: 100000}
      - {type: unique, columns: [order_id]}
      - {type: row_count, min: 1}
    timeout: 60s
    retries: {max_retries: 2, delay: 1s, backoff: 2.0}
    triggers:
      - {type: schedule, cron: "*/15 * * * *", timezone: UTC}
      - {type: schedule, interval: 10m, jitter: 30s}
      - {type: kafka, topic: orders.landed, filter: {field: dataset, equals: orders}}
    actions:
      strategy: concurrent
      list:
        - {type: slack, webhook_url: "${SLACK_WEBHOOK}", notify_on: failure_or_error}
        - {type: webhook, url: "https://hooks.example/dq", notify_on: status_change,
           secret: "${HOOK_SECRET}"}
  - name: landing_files
    data_source: {type: csv, path: "{trigger.path}"}
    validators:
      - {type: not_null, columns: [id]}
    triggers:
      - {type: file, directory: incoming, pattern: "*.csv", stable_for: 5s, poll_interval: 1s}
"""

SECRETS = {"SLACK_WEBHOOK": "https://hooks.slack.example/T0/B0/xyz", "HOOK_SECRET": "s3cr3t-hmac"}


def write(folder: Path, text: str, name: str = "checkpoints.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors_of(text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(text), source="c.yaml", env=env or {})
    return caught.value


# ---------------------------------------------------------------- the happy path


def test_the_design_example_loads_into_typed_models(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, DESIGN_EXAMPLE), env=SECRETS)

    orders, landing = config.checkpoints
    assert isinstance(orders.data_source, ParquetSource)
    assert [type(v) for v in orders.validators][:2] == [NotNullValidator, RangeValidator]
    assert orders.timeout == timedelta(seconds=60)
    assert orders.retries.delay == timedelta(seconds=1)
    cron, interval, kafka = orders.triggers
    assert isinstance(cron, ScheduleTrigger)
    assert cron.cron == "*/15 * * * *"
    assert isinstance(interval, ScheduleTrigger)
    assert interval.interval == timedelta(minutes=10)
    assert isinstance(kafka, KafkaTrigger)
    assert kafka.topic == "orders.landed"
    slack, webhook = orders.actions.items
    assert isinstance(slack, SlackAction)
    assert slack.webhook_url.get_secret_value() == SECRETS["SLACK_WEBHOOK"]
    assert isinstance(webhook, WebhookAction)
    assert webhook.secret is not None
    assert webhook.secret.get_secret_value() == "s3cr3t-hmac"
    assert config.daemon.http.token is None  # ${CHECKPOINTD_TOKEN:-} with the variable unset
    assert isinstance(landing.triggers[0], FileTrigger)


def test_the_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, DESIGN_EXAMPLE), env=SECRETS)
    with pytest.raises(ValueError, match="frozen"):
        config.daemon.max_concurrent_checkpoints = 2  # type: ignore[misc]


def test_source_is_the_absolute_path_of_the_file(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path, "checkpoints: []\n")
    monkeypatch.chdir(tmp_path)
    config = load_config("checkpoints.yaml", env={})
    assert config.source == tmp_path / "checkpoints.yaml"


def test_parse_config_has_no_source() -> None:
    assert parse_config("checkpoints: []\n", env={}).source is None


def test_an_empty_checkpoint_list_is_valid() -> None:
    assert parse_config("checkpoints: []\n", env={}).checkpoints == []


def test_yaml_base_60_numbers_and_dates_stay_strings() -> None:
    config = parse_config(
        "checkpoints:\n"
        "  - name: nightly\n"
        "    description: 2024-01-01\n"
        "    data_source: {type: csv, path: a.csv}\n"
        "    triggers: [{type: schedule, at: 2026-12-01T02:30:00Z}]\n",
        env={},
    )
    trigger = config.checkpoints[0].triggers[0]
    assert isinstance(trigger, ScheduleTrigger)
    assert trigger.at == "2026-12-01T02:30:00Z"
    assert config.checkpoints[0].description == "2024-01-01"
    with pytest.raises(ConfigError, match="found '2:30'"):  # not the base-60 number 150
        parse_config(
            "checkpoints:\n  - name: a\n    data_source: {type: csv, path: a.csv}\n"
            "    retries: {delay: 2:30}\n",
            env={},
        )


def test_yaml_anchors_and_merge_keys_work() -> None:
    config = parse_config(
        "checkpoints:\n"
        "  - &base {name: a, data_source: {type: csv, path: a.csv}, timeout: 5s}\n"
        "  - {<<: *base, name: b}\n",
        env={},
    )
    assert [cp.name for cp in config.checkpoints] == ["a", "b"]
    assert config.checkpoints[1].timeout == timedelta(seconds=5)


# ---------------------------------------------------------------- paths


PATHS_CONFIG = """\
daemon: {state_dir: ./state}
kafka: {ssl_cafile: certs/ca.pem, ssl_certfile: /etc/ssl/client.pem}
checkpoints:
  - name: a
    data_source: {type: parquet, path: "data/orders/*.parquet"}
    triggers:
      - type: file
        directory: incoming
        directories: [more, /abs/elsewhere]
        move_on_success: done
        move_on_failure: failed
  - name: b
    data_source: {type: csv, path: "{trigger.path}"}
  - name: c
    data_source: {type: csv, path: "out/{trigger.name}.csv"}
  - name: d
    data_source: {type: parquet, path: "s3://bucket/orders/*.parquet"}
  - name: e
    data_source: {type: ndjson, path: "~/events.ndjson"}
  - name: f
    data_source: {type: inline, rows: [{path: relative/stays}]}
"""


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    config = load_config(write(folder, PATHS_CONFIG), env={})

    assert config.daemon.state_dir == folder / "state"
    assert config.kafka is not None
    assert config.kafka.ssl_cafile == folder / "certs/ca.pem"
    assert config.kafka.ssl_certfile == Path("/etc/ssl/client.pem")
    a, b, c, d, e, f = config.checkpoints
    assert isinstance(a.data_source, ParquetSource)
    assert a.data_source.path == str(folder / "data/orders/*.parquet")
    trigger = a.triggers[0]
    assert isinstance(trigger, FileTrigger)
    assert trigger.directory == folder / "incoming"
    assert trigger.directories == [folder / "more", Path("/abs/elsewhere")]
    assert trigger.move_on_success == folder / "done"
    assert trigger.move_on_failure == folder / "failed"
    assert b.data_source.path == "{trigger.path}"  # type: ignore[union-attr]
    assert c.data_source.path == str(folder / "out/{trigger.name}.csv")  # type: ignore[union-attr]
    assert d.data_source.path == "s3://bucket/orders/*.parquet"  # type: ignore[union-attr]
    assert e.data_source.path == str(Path("~/events.ndjson").expanduser())  # type: ignore[union-attr]
    assert f.data_source.rows == [{"path": "relative/stays"}]  # type: ignore[union-attr]


def test_parse_config_resolves_against_base_dir_or_leaves_paths_alone(tmp_path: Path) -> None:
    text = "daemon: {state_dir: state}\n"
    assert parse_config(text, env={}).daemon.state_dir == Path("state")
    assert parse_config(text, base_dir=tmp_path, env={}).daemon.state_dir == tmp_path / "state"


# ---------------------------------------------------------------- reading the file


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing, env={})
    [issue] = caught.value.issues
    assert issue.file == str(missing)
    assert "file not found" in issue.message
    assert str(missing) in str(caught.value)


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, env={})


def test_a_file_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("daemon: {state_dir: caf\xe9}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_config(path, env={})


# ---------------------------------------------------------------- how errors read


BROKEN_IN_THREE_PLACES = """\
daemon:
  max_concurrent_checkpoints: 0
checkpoints:
  - name: orders
    data_source: {type: csv, path: a.csv}
    validators:
      - {type: not_null, columns: [id]}
      - {type: range, column: amount, min: zero}
    triggers:
      - {type: schedule, interval: 5 minutes}
"""


def test_every_error_is_reported_at_once_in_file_order() -> None:
    error = errors_of(BROKEN_IN_THREE_PLACES)
    assert [(i.line, i.location) for i in error.issues] == [
        (2, "daemon.max_concurrent_checkpoints"),
        (8, "checkpoints[0].validators[1].min"),
        (10, "checkpoints[0].triggers[0].interval"),
    ]


def test_the_error_text_names_file_line_path_found_and_expected(tmp_path: Path) -> None:
    path = write(tmp_path, BROKEN_IN_THREE_PLACES)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    text = str(caught.value)
    assert text.startswith("3 errors in config:\n")
    assert (
        f"  - {path}:8: checkpoints[0].validators[1].min: expected a number, found 'zero'" in text
    )


def test_a_duplicate_name_is_reported_with_the_other_errors() -> None:
    error = errors_of(
        """\
        checkpoints:
          - {name: a, data_source: {type: csv, path: a.csv}, timeout: soon}
          - {name: a, data_source: {type: csv, path: b.csv}}
        """
    )
    assert [i.location for i in error.issues] == ["checkpoints[0].timeout", "checkpoints[1].name"]


def test_a_missing_variable_hides_the_errors_its_empty_value_would_cause() -> None:
    error = errors_of("daemon: {max_concurrent_checkpoints: '${WORKERS}'}\n")
    [issue] = error.issues
    assert issue.location == "daemon.max_concurrent_checkpoints"
    assert "environment variable WORKERS is not set" in issue.message


# ---------------------------------------------------------------- interpolation


def test_variables_and_defaults_are_substituted() -> None:
    config = parse_config(
        "daemon:\n"
        "  max_concurrent_checkpoints: '${WORKERS}'\n"
        "  http: {listen: '${HOST:-0.0.0.0}:${PORT:-9108}'}\n",
        env={"WORKERS": "3", "PORT": "9200"},
    )
    assert config.daemon.max_concurrent_checkpoints == 3
    assert config.daemon.http.listen == "0.0.0.0:9200"


def test_double_dollar_is_a_literal_dollar() -> None:
    config = parse_config(
        "checkpoints:\n"
        "  - name: a\n"
        "    data_source: {type: csv, path: a.csv}\n"
        "    validators: [{type: regex, column: price, pattern: '^$$[0-9]+$'}]\n",
        env={},
    )
    assert config.checkpoints[0].validators[0].pattern == "^$[0-9]+$"  # type: ignore[union-attr]


def test_substituted_values_are_not_interpolated_again() -> None:
    config = parse_config("daemon: {state_dir: '${DIR}'}\n", env={"DIR": "/x/${HOME}"})
    assert config.daemon.state_dir == Path("/x/${HOME}")


def test_a_secret_from_the_environment_is_never_echoed() -> None:
    secret = "hunter2-very-secret"
    error = errors_of(
        """\
        daemon: {http: {listen: "${LISTEN}"}}
        checkpoints:
          - name: a
            data_source: {type: csv, path: a.csv}
            actions:
              list: [{type: webhook, url: "http://x", notify_on: "${NOTIFY}"}]
        """,
        env={"LISTEN": secret, "NOTIFY": secret},
    )
    text = str(error)
    assert secret not in text
    listen, notify = error.issues
    assert listen.location == "daemon.http.listen"
    assert "found '${LISTEN}' (value from the environment)" in listen.message
    assert notify.location == "checkpoints[0].actions.list[0].notify_on"
    assert "found '${NOTIFY}' (value from the environment)" in notify.message


def test_a_secret_inside_a_message_about_a_whole_mapping_is_replaced_by_its_name() -> None:
    error = errors_of(
        """\
        checkpoints:
          - name: a
            data_source: {type: csv, path: a.csv}
            validators: [{type: range, column: x, min: "${LOW}", max: 1}]
        """,
        env={"LOW": "987654"},
    )
    [issue] = error.issues
    assert issue.location == "checkpoints[0].validators[0]"
    assert issue.message == "min (${LOW}.0) is greater than max (1.0)"


# ---------------------------------------------------------------- environment overrides


OVERRIDE_CASES = [
    ("CHECKPOINTD_HTTP_LISTEN", "0.0.0.0:9999", lambda c: c.daemon.http.listen, "0.0.0.0:9999"),
    ("CHECKPOINTD_STATE_DIR", "/var/lib/cp", lambda c: c.daemon.state_dir, Path("/var/lib/cp")),
    ("CHECKPOINTD_LOG_LEVEL", "DEBUG", lambda c: c.daemon.log.level, "debug"),
    ("CHECKPOINTD_LOG_FORMAT", "console", lambda c: c.daemon.log.format, "console"),
    (
        "CHECKPOINTD_HTTP_TOKEN",
        "tok",
        lambda c: c.daemon.http.token.get_secret_value(),
        "tok",
    ),
    (
        "CHECKPOINTD_KAFKA_BOOTSTRAP",
        "broker:9093",
        lambda c: c.kafka.bootstrap_servers,
        "broker:9093",
    ),
]


def test_every_override_is_tested() -> None:
    assert {case[0] for case in OVERRIDE_CASES} == set(ENV_OVERRIDES)


@pytest.mark.parametrize(("name", "value", "read", "expected"), OVERRIDE_CASES)
def test_an_environment_override_beats_the_file(name, value, read, expected) -> None:
    text = (
        "daemon:\n  state_dir: /srv/state\n"
        "  http: {listen: '127.0.0.1:1', token: file-token}\n"
        "  log: {level: info, format: json}\n"
        "kafka: {bootstrap_servers: 'file:9092'}\n"
    )
    assert read(parse_config(text, env={name: value})) == expected


@pytest.mark.parametrize(("name", "value", "read", "expected"), OVERRIDE_CASES)
def test_an_environment_override_works_without_the_section(name, value, read, expected) -> None:
    assert read(parse_config("checkpoints: []\n", env={name: value})) == expected


def test_an_empty_override_changes_nothing() -> None:
    config = parse_config(
        "daemon: {http: {listen: '127.0.0.1:1', token: t}}\n",
        env={"CHECKPOINTD_HTTP_LISTEN": "", "CHECKPOINTD_HTTP_TOKEN": ""},
    )
    assert config.daemon.http.listen == "127.0.0.1:1"
    assert config.daemon.http.token is not None


def test_a_relative_state_dir_override_is_relative_to_the_current_directory(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config_dir = tmp_path / "conf"
    config_dir.mkdir()
    path = write(config_dir, "daemon: {state_dir: state}\n")
    config = load_config(path, env={"CHECKPOINTD_STATE_DIR": "run/state"})
    assert config.daemon.state_dir == tmp_path / "run/state"


def test_a_bad_override_names_the_variable_and_no_line() -> None:
    error = errors_of(
        "daemon:\n  http: {listen: '127.0.0.1:1'}\n", {"CHECKPOINTD_HTTP_LISTEN": "x"}
    )
    [issue] = error.issues
    assert issue.location == "daemon.http.listen"
    assert issue.line is None
    assert issue.message.endswith("(set by environment variable CHECKPOINTD_HTTP_LISTEN)")


# ---------------------------------------------------------------- summary


def test_summarize_counts_checkpoints_triggers_by_kind_and_actions(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, DESIGN_EXAMPLE), env=SECRETS)
    assert summarize(config, source="checkpoints.yaml") == (
        "ok: checkpoints.yaml — 2 checkpoints, 4 triggers (2 schedule, 1 file, 1 kafka), 2 actions"
    )


def test_summarize_uses_singulars_and_the_source(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(
        tmp_path,
        "checkpoints:\n"
        "  - name: a\n"
        "    data_source: {type: csv, path: a.csv}\n"
        "    triggers: [{type: manual}]\n"
        "    actions: {list: [{type: kafka, topic: results}]}\n",
    )
    config = load_config(path, env={})
    assert summarize(config) == (
        "ok: checkpoints.yaml — 1 checkpoint, 1 trigger (1 manual), 1 action"
    )
    assert summarize(parse_config("{}", env={})) == (
        "ok: <string> — 0 checkpoints, 0 triggers, 0 actions"
    )
