"""${VAR} interpolation: a table of templates, and how a whole tree is walked."""

from __future__ import annotations

import re

import pytest

from checkpointd.config.interpolate import (
    InterpolationSyntaxError,
    interpolate_string,
    interpolate_tree,
)

ENV = {"HOST": "db.internal", "PORT": "5432", "EMPTY": "", "NESTED": "${HOST}"}


@pytest.mark.parametrize(
    ("template", "text", "from_env", "missing"),
    [
        ("plain", "plain", (), ()),
        ("${HOST}", "db.internal", ("HOST",), ()),
        ("${HOST}:${PORT}", "db.internal:5432", ("HOST", "PORT"), ()),
        ("pre-${HOST}-post", "pre-db.internal-post", ("HOST",), ()),
        ("${UNSET:-fallback}", "fallback", (), ()),
        ("${UNSET:-}", "", (), ()),
        ("${EMPTY:-fallback}", "fallback", (), ()),  # :- also covers set-but-empty
        ("${EMPTY}", "", ("EMPTY",), ()),
        ("${HOST:-fallback}", "db.internal", ("HOST",), ()),
        ("${UNSET:-a:-b}", "a:-b", (), ()),
        ("${UNSET:-${HOST}", "${HOST", (), ()),  # defaults are literal, end at the first }
        ("${NESTED}", "${HOST}", ("NESTED",), ()),  # never interpolated twice
        ("$$", "$", (), ()),
        ("$${HOST}", "${HOST}", (), ()),
        ("$$$${HOST}", "$${HOST}", (), ()),
        ("$$${HOST}", "$db.internal", ("HOST",), ()),
        ("^[a-z]+$", "^[a-z]+$", (), ()),  # a lone $ is literal
        ("cost $5", "cost $5", (), ()),
        ("${UNSET}", "", (), ("UNSET",)),
        ("${A}/${B}", "/", (), ("A", "B")),
        ("{trigger.path}", "{trigger.path}", (), ()),
    ],
)
def test_interpolate_string(template, text, from_env, missing) -> None:
    done = interpolate_string(template, ENV)
    assert (done.text, done.from_env, done.missing) == (text, from_env, missing)


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("${HOST", "unterminated '${'"),
        ("x ${", "unterminated '${'"),
        ("${}", "invalid variable reference '${}'"),
        ("${1ABC}", "invalid variable reference '${1ABC}'"),
        ("${HOST-default}", "invalid variable reference '${HOST-default}'"),
        ("${HOST:default}", "invalid variable reference '${HOST:default}'"),
        ("${A B}", "invalid variable reference"),
    ],
)
def test_malformed_references_are_errors(template, fragment) -> None:
    with pytest.raises(InterpolationSyntaxError, match=re.escape(fragment)) as caught:
        interpolate_string(template, ENV)
    assert "$$ for a literal $" in str(caught.value) or "letters, digits and _" in str(caught.value)


def test_tree_interpolates_values_not_keys_and_leaves_other_scalars() -> None:
    data = {"${HOST}": "${HOST}", "n": 5, "b": True, "none": None, "list": ["${PORT}", 1.5]}
    result = interpolate_tree(data, ENV)
    assert result.data == {
        "${HOST}": "db.internal",
        "n": 5,
        "b": True,
        "none": None,
        "list": ["5432", 1.5],
    }
    assert result.problems == []


def test_tree_does_not_modify_its_input_even_when_containers_are_shared() -> None:
    shared = {"url": "${HOST}"}
    data = {"a": shared, "b": shared}
    result = interpolate_tree(data, ENV)
    assert shared == {"url": "${HOST}"}
    assert result.data["a"] is not result.data["b"]
    assert result.data["a"] == result.data["b"] == {"url": "db.internal"}


def test_tree_records_where_environment_values_went() -> None:
    result = interpolate_tree({"x": [{"url": "http://${HOST}:${PORT:-1}/${UNSET:-d}"}]}, ENV)
    [secret] = result.secrets
    assert secret.path == ("x", 0, "url")
    assert secret.template == "http://${HOST}:${PORT:-1}/${UNSET:-d}"
    assert secret.value == "http://db.internal:5432/d"
    assert secret.variables == (("HOST", "db.internal"), ("PORT", "5432"))


def test_defaults_alone_are_not_secrets() -> None:
    assert interpolate_tree({"x": "${UNSET:-public}"}, ENV).secrets == []


def test_tree_reports_every_problem_with_its_path() -> None:
    result = interpolate_tree({"a": "${MISSING}", "b": ["ok", "${BROKEN"]}, ENV)
    assert [(p.path, p.message.split(" (")[0]) for p in result.problems] == [
        (("a",), "environment variable MISSING is not set"),
        (("b", 1), "unterminated '${' in '${BROKEN'; expected ${VAR} or ${VAR:-default}"),
    ]
    assert result.data["b"][1] == "${BROKEN"
