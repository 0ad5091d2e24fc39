"""Config files are parsed by libyaml, and read exactly as the pure-Python parser reads them.

libyaml builds the same nodes several times faster. The pure parser stays the
reference: the same config and the same line in every error for a valid file;
a file libyaml rejects, or one where the two disagree (tabs, control characters,
unusual line breaks), is read by the pure parser, so errors read as they always did.
"""

from __future__ import annotations

import contextlib
import gc
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from checkpointd.config import loader, parse_config
from checkpointd.config.models import Config
from checkpointd.errors import ConfigError, ConfigIssue

ROOT = Path(__file__).resolve().parents[2]

CHECKPOINT = """\
  - name: {name}
    data_source: {{type: csv, path: "{name}.csv"}}
    validators:
      - {{type: not_null, columns: [id]}}
      - {{type: range, column: amount, min: 0, max: 100}}
    triggers: [{{type: schedule, interval: 1h}}]
"""

VALID: dict[str, str] = {
    "the quickstart example": (ROOT / "examples/quickstart/checkpointd.yaml").read_text(),
    "anchors, aliases and merge keys": """\
        checkpoints:
          - &first
            name: a
            timeout: 30s
            retries: &retries {max_retries: 2, delay: 1s}
            data_source: &source {type: parquet, path: "data/*.parquet"}
            validators: &checks
              - {type: not_null, columns: [id]}
          - <<: *first
            name: b
            validators: *checks
          - name: c
            retries: *retries
            data_source: *source
        """,
    "every kind of scalar": """\
        daemon:
          max_concurrent_checkpoints: 0x10
          result_queue_size: 1_000
          graceful_shutdown_timeout: 1m
          http: {listen: '127.0.0.1:9108'}
        checkpoints:
          - name: "quoted-name"
            description: >-
              folded text
              over two lines
            data_source: {type: inline, rows: [{a: 2024-01-01, b: 2:30, c: .inf, d: ~,
              e: yes, f: 0o17, g: -1.5e+3, h: 'single ''quoted''', i: "tab\\tescaped"}]}
            validators:
              - type: regex
                column: a
                pattern: |
                  ^[0-9]{4}-[0-9]{2}$
              - {type: in_set, column: e, values: [true, false, null, 1, 1.0, "x"]}
        """,
    "comments, blank lines and a document marker": """\
        # leading comment
        ---
        checkpoints:   # trailing comment

          - name: c   # after a value
            data_source: {type: csv, path: c.csv}


            validators: []
        ...
        """,
    "non-ASCII text": """\
        checkpoints:
          - name: donnees
            description: "Ünïcödé ✓ 🎉 \\u00e9"
            data_source: {type: csv, path: "données/😀.csv"}
        """,
    "windows line endings": "checkpoints:\r\n  - name: w\r\n"
    "    data_source: {type: csv, path: w.csv}\r\n"
    "    validators: [{type: unique, columns: [id]}]\r\n",
    "many checkpoints": "checkpoints:\n"
    + "".join(CHECKPOINT.format(name=f"cp{i:03d}") for i in range(60)),
}

INVALID: dict[str, str] = {
    "unknown keys and wrong values deep in the file": """\
        daemon:
          max_concurrent_checkpoints: -1
          log: {level: loud}
        checkpoints:
          - name: a
            data_source: {type: csv, path: a.csv}
            validators:
              - {type: not_null, columns: [id]}
              - {type: range, column: amount, min: ten}
          - name: b
            data_source: {type: parqet, path: b.parquet}
            triggers:
              - {type: schedule, intervall: 1h}
            actions:
              list:
                - {type: webhook}
        """,
    "duplicate keys": """\
        checkpoints:
          - name: a
            data_source: {type: csv, path: a.csv}
            data_source: {type: csv, path: b.csv}
          - name: a
            data_source: {type: csv, path: c.csv}
        """,
    "an alias that contains itself": """\
        checkpoints: &loop
          - name: a
            data_source: {type: csv, path: a.csv}
            validators: *loop
        """,
    "an unset variable": """\
        checkpoints:
          - name: a
            data_source: {type: csv, path: "${NOT_SET_ANYWHERE}/a.csv"}
        """,
    "a list at the top": "- name: a\n",
    "an empty file": "",
}

BROKEN_YAML: dict[str, str] = {
    "an unclosed flow sequence": "checkpoints: [\n  - name: a\n",
    "mapping values where none are allowed": "checkpoints:\n  - name: a: b\n",
    "an unterminated quote": "checkpoints:\n  - name: 'a\n",
    "an undefined alias": "checkpoints: *nowhere\n",
    "an unknown tag": "checkpoints: !python/object:os.system []\n",
    "two documents": "checkpoints: []\n---\ncheckpoints: []\n",
    "a character that cannot start a token": "checkpoints:\n  - name: @a\n",
    "a duplicate anchor": "a: &x 1\nb: &x 2\n",
}

WHERE_THE_PARSERS_DISAGREE: dict[str, str] = {
    "a tab after a colon (libyaml accepts it)": "checkpoints:\t[]\n",
    "a tab as indentation": "checkpoints:\n\t- name: a\n",
    "a control character": "checkpoints: []\n# \x1b[31m\n",
    "a DEL character": "checkpoints: [] # \x7f\n",
    "a NEL line break": "daemon: {}\x85checkpoints: []\n",
    "a line separator": "checkpoints: []\u2028\n",
}


class Counted:
    """Counts the loaders of each kind the config loader makes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.libyaml = 0
        self.pure = 0
        counts = self
        libyaml_loader = loader._LibyamlLoader
        assert libyaml_loader is not None

        class CountedLibyaml(libyaml_loader):  # type: ignore[misc,valid-type]
            def __init__(self, stream: str) -> None:
                counts.libyaml += 1
                super().__init__(stream)

        class CountedPure(loader._YamlLoader):
            def __init__(self, stream: str) -> None:
                counts.pure += 1
                super().__init__(stream)

        monkeypatch.setattr(loader, "_LibyamlLoader", CountedLibyaml)
        monkeypatch.setattr(loader, "_YamlLoader", CountedPure)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counted:
    return Counted(monkeypatch)


def outcome(text: str, **kwargs: Any) -> Config | list[ConfigIssue]:
    """The config ``text`` gives, or the issues it is refused with."""
    try:
        return parse_config(textwrap.dedent(text), source="c.yaml", env={}, **kwargs)
    except ConfigError as exc:
        return exc.issues


def pure_outcome(text: str, monkeypatch: pytest.MonkeyPatch) -> Config | list[ConfigIssue]:
    with monkeypatch.context() as patch:
        patch.setattr(loader, "_LibyamlLoader", None)
        return outcome(text)


def test_this_pyyaml_has_libyaml() -> None:
    # Without it every file takes the pure parser: correct, but ~7x slower to load.
    assert yaml.__with_libyaml__
    assert loader._LibyamlLoader is not None


@pytest.mark.parametrize("text", VALID.values(), ids=VALID.keys())
def test_a_valid_file_is_parsed_by_libyaml_into_the_config_the_pure_parser_gives(
    text: str, counted: Counted, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = outcome(text)

    assert isinstance(fast, Config)
    assert (counted.libyaml, counted.pure) == (1, 0)
    assert fast == pure_outcome(text, monkeypatch)


@pytest.mark.parametrize("text", [*VALID.values(), *INVALID.values()], ids=[*VALID, *INVALID])
def test_libyaml_records_the_line_of_every_key_and_item_as_the_pure_parser_does(
    text: str,
) -> None:
    text = textwrap.dedent(text)
    assert loader._LibyamlLoader is not None

    def lines_and_issues(make: type[Any]) -> tuple[dict[Any, int], list[ConfigIssue]]:
        run = loader._Run("c.yaml")
        with contextlib.suppress(ConfigError):  # the empty file, the recursive alias
            loader._compose(make(text), run)
        return run.lines, run.issues

    fast = lines_and_issues(loader._LibyamlLoader)
    pure = lines_and_issues(loader._YamlLoader)

    assert fast == pure
    assert len(fast[0]) > 0 or not text.strip()


@pytest.mark.parametrize("text", INVALID.values(), ids=INVALID.keys())
def test_an_invalid_config_is_refused_with_the_same_issues_and_lines(
    text: str, counted: Counted, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = outcome(text)

    assert isinstance(fast, list)
    assert counted.libyaml == 1
    assert fast == pure_outcome(text, monkeypatch)
    if "deep in the file" in text or "duplicate" in text:
        assert all(issue.line is not None for issue in fast)


@pytest.mark.parametrize("text", BROKEN_YAML.values(), ids=BROKEN_YAML.keys())
def test_a_file_libyaml_rejects_is_reported_by_the_pure_parser_as_before(
    text: str, counted: Counted, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = outcome(text)

    assert (counted.libyaml, counted.pure) == (1, 1)
    assert isinstance(fast, list)
    assert fast == pure_outcome(text, monkeypatch)
    assert fast[0].message.startswith("invalid YAML")


@pytest.mark.parametrize(
    "text", WHERE_THE_PARSERS_DISAGREE.values(), ids=WHERE_THE_PARSERS_DISAGREE.keys()
)
def test_a_file_where_the_parsers_disagree_goes_straight_to_the_pure_parser(
    text: str, counted: Counted, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = outcome(text)

    assert (counted.libyaml, counted.pure) == (0, 1)
    assert fast == pure_outcome(text, monkeypatch)


def test_a_tab_after_a_colon_stays_an_error_although_libyaml_would_accept_it() -> None:
    issues = outcome("checkpoints:\t[]\n")

    assert isinstance(issues, list)
    assert issues[0].line == 1
    assert "indent with spaces, not tabs" in issues[0].message


# ---------------------------------------------------------------- the garbage collector


@pytest.fixture
def collections(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Each generation the cyclic garbage collector collects while a file is parsed.

    Once the parse is over, re-enabling the collector lets it collect at once: that
    one is allowed, so collections are counted only inside the parse itself.
    """
    seen: list[int] = []
    parsing = False
    parse = loader._parse_data

    def watched_parse(*args: Any) -> Config:
        nonlocal parsing
        parsing = True
        try:
            return parse(*args)
        finally:
            parsing = False

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and parsing:
            seen.append(info["generation"])

    monkeypatch.setattr(loader, "_parse_data", watched_parse)
    gc.callbacks.append(record)
    try:
        yield seen
    finally:
        gc.callbacks.remove(record)


MANY = "checkpoints:\n" + "".join(CHECKPOINT.format(name=f"cp{i:03d}") for i in range(300))


@pytest.mark.parametrize("libyaml", [True, False], ids=["libyaml", "pure"])
def test_no_garbage_collection_runs_while_a_file_is_parsed_and_validated(
    libyaml: bool, collections: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not libyaml:
        monkeypatch.setattr(loader, "_LibyamlLoader", None)
    assert gc.isenabled()

    config = parse_config(MANY, env={})

    assert len(config.checkpoints) == 300  # far more allocations than one collection's worth
    assert collections == []
    assert gc.isenabled()


def test_the_collector_is_enabled_again_after_a_refused_file() -> None:
    with pytest.raises(ConfigError):
        parse_config("checkpoints: [\n", env={})

    assert gc.isenabled()


def test_a_collector_paused_by_the_caller_stays_paused() -> None:
    gc.disable()
    try:
        parse_config(MANY, env={})
        assert not gc.isenabled()
    finally:
        gc.enable()
