"""Broken configs: each error names the path inside the file and says what was expected."""

from __future__ import annotations

import textwrap

import pytest

from checkpointd.config import parse_config
from checkpointd.errors import ConfigError, ConfigIssue


def issues_of(text: str, env: dict[str, str] | None = None) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(text), source="broken.yaml", env=env or {})
    return caught.value.issues


def one_checkpoint(body: str) -> str:
    """A config with one checkpoint whose extra keys are ``body`` (indented 4)."""
    return "checkpoints:\n  - name: orders\n" + textwrap.indent(textwrap.dedent(body), "    ")


CSV = "data_source: {type: csv, path: orders.csv}\n"

# (id, config text, env, location, fragment of the message)
BROKEN: list[tuple[str, str, dict[str, str], str, str]] = [
    (
        "unknown top-level key, with a suggestion",
        "checkpoint: []\n",
        {},
        "checkpoint",
        "unknown key 'checkpoint' (did you mean 'checkpoints'?); allowed keys: daemon,",
    ),
    (
        "unknown validator key, with a suggestion",
        one_checkpoint(CSV + "validators: [{type: not_null, colums: [id]}]\n"),
        {},
        "checkpoints[0].validators[0].colums",
        "unknown key 'colums' (did you mean 'columns'?); allowed keys: type, name,",
    ),
    (
        "unknown validator type, with a suggestion",
        one_checkpoint(CSV + "validators: [{type: not_nul, columns: [id]}]\n"),
        {},
        "checkpoints[0].validators[0]",
        "unknown validator type 'not_nul' (did you mean 'not_null'?); expected one of: not_null,",
    ),
    (
        "a validator without a type",
        one_checkpoint(CSV + "validators: [{columns: [id]}]\n"),
        {},
        "checkpoints[0].validators[0]",
        "missing required key 'type'; expected one of: not_null, null_ratio",
    ),
    (
        "unknown data source type",
        one_checkpoint("data_source: {type: parqet, path: a.parquet}\n"),
        {},
        "checkpoints[0].data_source",
        "unknown data source type 'parqet' (did you mean 'parquet'?)",
    ),
    (
        "unknown action type",
        one_checkpoint(CSV + "actions: {list: [{type: slak, webhook_url: x}]}\n"),
        {},
        "checkpoints[0].actions.list[0]",
        "unknown action type 'slak' (did you mean 'slack'?)",
    ),
    (
        "a word where a number belongs",
        one_checkpoint(CSV + "validators: [{type: range, column: amount, max: abc}]\n"),
        {},
        "checkpoints[0].validators[0].max",
        "expected a number, found 'abc'",
    ),
    (
        "a word where an integer belongs",
        "daemon: {result_queue_size: many}\n",
        {},
        "daemon.result_queue_size",
        "expected an integer, found 'many'",
    ),
    (
        "a bad duration",
        one_checkpoint(CSV + "timeout: 5 minutes\n"),
        {},
        "checkpoints[0].timeout",
        "expected a duration like 500ms, 30s, 5m, 1h",
    ),
    (
        "an infinite duration",
        one_checkpoint(CSV + "timeout: .inf\n"),
        {},
        "checkpoints[0].timeout",
        "a duration must be finite",
    ),
    (
        "min greater than max",
        one_checkpoint(CSV + "validators: [{type: range, column: amount, min: 5, max: 1}]\n"),
        {},
        "checkpoints[0].validators[0]",
        "min (5.0) is greater than max (1.0)",
    ),
    (
        "a ratio above 1",
        one_checkpoint(CSV + "validators: [{type: null_ratio, columns: [a], max: 2}]\n"),
        {},
        "checkpoints[0].validators[0].max",
        "expected a number <= 1.0, found 2",
    ),
    (
        "an empty column list",
        one_checkpoint(CSV + "validators: [{type: unique, columns: []}]\n"),
        {},
        "checkpoints[0].validators[0].columns",
        "expected at least 1 item, found an empty list",
    ),
    (
        "validators as a mapping, not a list",
        one_checkpoint(CSV + "validators: {type: not_null, columns: [id]}\n"),
        {},
        "checkpoints[0].validators",
        "expected a list, found a mapping",
    ),
    (
        "a cron expression with the wrong number of fields",
        one_checkpoint(CSV + "triggers: [{type: schedule, cron: '*/5 * *'}]\n"),
        {},
        "checkpoints[0].triggers[0].cron",
        "expected a cron expression of 5 fields (or 6 with seconds first), found '*/5 * *'",
    ),
    (
        "an unknown time zone, with a suggestion",
        one_checkpoint(
            CSV + "triggers: [{type: schedule, interval: 5m, timezone: Europe/Berln}]\n"
        ),
        {},
        "checkpoints[0].triggers[0].timezone",
        "unknown time zone 'Europe/Berln' (did you mean 'Europe/Berlin'?)",
    ),
    (
        "a schedule with both cron and interval",
        one_checkpoint(CSV + "triggers: [{type: schedule, cron: '* * * * *', interval: 5m}]\n"),
        {},
        "checkpoints[0].triggers[0]",
        "a schedule needs exactly one of cron, interval, at; found cron, interval",
    ),
    (
        "a kafka trigger with neither topic nor pattern",
        one_checkpoint(CSV + "triggers: [{type: kafka}]\n"),
        {},
        "checkpoints[0].triggers[0]",
        "a kafka trigger needs exactly one of topic, pattern",
    ),
    (
        "a file trigger without a directory",
        one_checkpoint(CSV + "triggers: [{type: file, pattern: '*.csv'}]\n"),
        {},
        "checkpoints[0].triggers[0]",
        "a file trigger needs directory or directories",
    ),
    (
        "a checkpoint without a data source",
        one_checkpoint("validators: [{type: not_null, columns: [id]}]\n"),
        {},
        "checkpoints[0]",
        "missing required key 'data_source'",
    ),
    (
        "a file data source without a path",
        one_checkpoint("data_source: {type: parquet}\n"),
        {},
        "checkpoints[0].data_source",
        "missing required key 'path'",
    ),
    (
        "a checkpoint name with a space",
        "checkpoints:\n  - {name: my orders, data_source: {type: csv, path: a.csv}}\n",
        {},
        "checkpoints[0].name",
        "expected a name of letters, digits, '_', '.' and '-'",
    ),
    (
        "a missing environment variable",
        one_checkpoint(CSV + "actions: {list: [{type: slack, webhook_url: '${SLACK_WEBHOOK}'}]}\n"),
        {},
        "checkpoints[0].actions.list[0].webhook_url",
        "environment variable SLACK_WEBHOOK is not set (used in '${SLACK_WEBHOOK}')",
    ),
    (
        "a malformed ${...}",
        "daemon: {state_dir: '${STATE_DIR'}\n",
        {},
        "daemon.state_dir",
        "unterminated '${'",
    ),
    (
        "a duplicate checkpoint name",
        "checkpoints:\n"
        "  - {name: orders, data_source: {type: csv, path: a.csv}}\n"
        "  - {name: orders, data_source: {type: csv, path: b.csv}}\n",
        {},
        "checkpoints[1].name",
        "duplicate checkpoint name 'orders' (first used by checkpoints[0]); names must be unique",
    ),
    (
        "a key written twice in one mapping",
        "checkpoints:\n  - name: a\n    name: b\n    data_source: {type: csv, path: a.csv}\n",
        {},
        "checkpoints[0].name",
        "duplicate key 'name' (first on line 2)",
    ),
    (
        "a bad listen address",
        "daemon: {http: {listen: '9108'}}\n",
        {},
        "daemon.http.listen",
        "expected HOST:PORT such as 127.0.0.1:9108, found '9108'",
    ),
    (
        "a bad regex",
        one_checkpoint(CSV + "validators: [{type: regex, column: code, pattern: '[A-Z'}]\n"),
        {},
        "checkpoints[0].validators[0].pattern",
        "invalid regular expression '[A-Z'",
    ),
    (
        "a negative max_concurrent_checkpoints",
        "daemon: {max_concurrent_checkpoints: -2}\n",
        {},
        "daemon.max_concurrent_checkpoints",
        "expected an integer >= 1, found -2",
    ),
    (
        "an unknown loop",
        "daemon: {loop: tokio}\n",
        {},
        "daemon.loop",
        "expected one of uvloop, asyncio; found 'tokio'",
    ),
    (
        "an unknown notify_on value, with a suggestion",
        one_checkpoint(
            CSV + "actions: {list: [{type: webhook, url: 'http://x', notify_on: failur}]}\n"
        ),
        {},
        "checkpoints[0].actions.list[0].notify_on",
        "expected one of always, success, warning, failure, error, failure_or_error, "
        "not_success, status_change; found 'failur' (did you mean 'failure'?)",
    ),
    (
        "a python action target that is not module:attribute",
        one_checkpoint(CSV + "actions: {list: [{type: python, target: notify}]}\n"),
        {},
        "checkpoints[0].actions.list[0].target",
        "expected an import target 'module:attribute'",
    ),
    (
        "a retry backoff below 1",
        one_checkpoint(CSV + "retries: {backoff: 0.5}\n"),
        {},
        "checkpoints[0].retries.backoff",
        "expected a number >= 1.0, found 0.5",
    ),
    (
        "an empty daemon section",
        "daemon:\n",
        {},
        "daemon",
        "expected a mapping, found nothing (an empty value)",
    ),
    (
        "'source' written in the file",
        "source: other.yaml\n",
        {},
        "source",
        "unknown key 'source'; allowed keys: daemon, kafka, checkpoints",
    ),
    ("a number as a key", "1: x\n", {}, "1", "expected a key that is text, found 1"),
    (
        "a bad value under a key that looks like a pydantic tag",
        one_checkpoint("data_source: {type: csv, path: a.csv, dtypes: {'a[0]': 5}}\n"),
        {},
        "checkpoints[0].data_source.dtypes.a[0]",
        "expected a string (put quotes around it), found 5",
    ),
    ("an empty file", "", {}, "", "the file is empty; expected a mapping"),
    ("a file of comments only", "# nothing yet\n", {}, "", "the file is empty"),
    ("a list at the top", "- name: orders\n", {}, "", "at the top, found a list"),
    ("a scalar at the top", "hello\n", {}, "", "at the top, found 'hello'"),
    (
        "a YAML syntax error",
        "daemon:\n  loop: [uvloop\n",
        {},
        "",
        "invalid YAML: while parsing a flow sequence (started on line 2)",
    ),
    (
        "a tab used for indentation",
        "daemon:\n\tloop: uvloop\n",
        {},
        "",
        "indent with spaces, not tabs",
    ),
    ("two YAML documents", "daemon: {}\n---\ndaemon: {}\n", {}, "", "expected a single document"),
    (
        "a YAML tag that would run code",
        "daemon: !!python/object/apply:os.system ['true']\n",
        {},
        "",
        "could not determine a constructor",
    ),
]


@pytest.mark.parametrize(
    ("text", "env", "location", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in BROKEN],
)
def test_a_broken_config_names_the_path_and_what_was_expected(
    text: str, env: dict[str, str], location: str, fragment: str
) -> None:
    issues = issues_of(text, env)
    matching = [i for i in issues if i.location == location and fragment in i.message]
    assert matching, f"no issue at {location!r} containing {fragment!r} in:\n" + "\n".join(
        map(str, issues)
    )
    assert all(i.file.startswith("broken.yaml") for i in issues)


def test_the_table_covers_at_least_twenty_broken_configs() -> None:
    assert len(BROKEN) >= 20


def test_a_missing_key_is_reported_on_the_line_of_its_mapping() -> None:
    [issue] = issues_of("checkpoints:\n  - name: a\n    data_source:\n      type: parquet\n")
    assert (issue.line, issue.location) == (3, "checkpoints[0].data_source")
    assert issue.message == "missing required key 'path'"


def test_a_yaml_syntax_error_carries_its_line_and_column() -> None:
    [issue] = issues_of("daemon:\n  loop: uvloop\n  http: {listen: '127.0.0.1:1'\nkafka: {}\n")
    assert issue.line == 4
    assert "at column 1" in issue.message
    assert str(issue).startswith("broken.yaml:4: invalid YAML: ")


@pytest.mark.parametrize(
    ("trigger", "fragment"),
    [
        ('{type: schedule, cron: "61 * * * *"}', "higher than the maximum value (59)"),
        ('{type: schedule, at: "tomorrow"}', "expected an ISO 8601 datetime"),
    ],
)
def test_cron_fields_and_at_are_checked_when_the_config_loads(trigger, fragment):
    text = (
        "checkpoints:\n  - name: a\n    data_source: {type: inline, rows: [{x: 1}]}\n"
        f"    triggers:\n      - {trigger}\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert "checkpoints[0].triggers[0]" in str(info.value)
    assert fragment in str(info.value)
