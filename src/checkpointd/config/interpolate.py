"""``${VAR}`` interpolation of config values, before they are validated.

The syntax, in any string value (never in keys):

=====================  ===================================================
``${VAR}``             the value of VAR; an error when VAR is not set
``${VAR:-default}``    the value of VAR, or ``default`` when VAR is unset
                       or empty; the default is taken literally
``$$``                 a literal ``$``
``$`` otherwise        a literal ``$`` (so regexes such as ``^a+$`` work)
=====================  ===================================================

Substituted values are never interpolated again, so an environment variable
holding ``${OTHER}`` stays as it is. Values taken from the environment may be
secrets: :func:`interpolate_tree` reports where they went so that error
messages can show ``${VAR}`` rather than the value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PathPart = str | int
DataPath = tuple[PathPart, ...]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN = re.compile(r"\$(?:(?P<dollar>\$)|\{(?P<body>[^}]*)\}|(?P<open>\{))")


class InterpolationSyntaxError(ValueError):
    """A ``${...}`` in a value is malformed; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class Interpolated:
    """One string after interpolation."""

    text: str
    from_env: tuple[str, ...] = ()
    """Variables whose values (from the environment) were substituted."""
    missing: tuple[str, ...] = ()
    """Variables that were needed (no default) but are not set."""


def interpolate_string(template: str, env: Mapping[str, str]) -> Interpolated:
    """Substitute ``${VAR}``, ``${VAR:-default}`` and ``$$`` in one string.

    Raises InterpolationSyntaxError for a malformed ``${...}``. A missing
    variable is not raised but reported in ``missing`` (its place is left empty),
    so that every missing variable of a file can be reported at once.
    """
    if "$" not in template:
        return Interpolated(template)
    out: list[str] = []
    from_env: list[str] = []
    missing: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(template):
        out.append(template[pos : match.start()])
        pos = match.end()
        if match.group("dollar"):
            out.append("$")
            continue
        if match.group("open"):
            raise InterpolationSyntaxError(
                f"unterminated '${{' in {template!r}; expected ${{VAR}} or ${{VAR:-default}} "
                "(write $$ for a literal $)"
            )
        name, sep, default = match.group("body").partition(":-")
        if not _NAME.fullmatch(name):
            raise InterpolationSyntaxError(
                f"invalid variable reference '${{{match.group('body')}}}' in {template!r}; "
                "expected ${VAR} or ${VAR:-default} where VAR is letters, digits and _"
            )
        value = env.get(name)
        if value is not None and (value or not sep):
            out.append(value)
            from_env.append(name)
        elif sep:
            out.append(default)
        else:
            missing.append(name)
    out.append(template[pos:])
    return Interpolated("".join(out), tuple(from_env), tuple(missing))


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with interpolation at ``path`` in the data."""

    path: DataPath
    message: str


@dataclass(frozen=True, slots=True)
class Secret:
    """A value at ``path`` that holds text from the environment.

    ``template`` is what the file says (``${HOOK_SECRET}``), ``value`` what it
    became; error messages show the first and never the second.
    """

    path: DataPath
    template: str
    value: str
    variables: tuple[tuple[str, str], ...]
    """``(name, value)`` of each non-empty environment variable substituted."""


@dataclass(slots=True)
class TreeResult:
    """The interpolated data, where secrets went, and what went wrong."""

    data: Any
    secrets: list[Secret] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def interpolate_tree(data: Any, env: Mapping[str, str]) -> TreeResult:
    """Interpolate every string value in nested dicts and lists (keys are left alone).

    Returns new containers; the input is not modified (YAML aliases share
    containers, and each use is interpolated on its own).
    """
    result = TreeResult(data=None)
    result.data = _walk(data, (), env, result)
    return result


def _walk(value: Any, path: DataPath, env: Mapping[str, str], result: TreeResult) -> Any:
    # Most values are strings without a "$" or numbers: they are kept as they are without
    # a call or a path of their own (a file of 10,000 checkpoints has ~200,000 values).
    if isinstance(value, str):
        return _one(value, path, env, result) if "$" in value else value
    if isinstance(value, dict):
        return {
            key: _walk(item, (*path, key), env, result) if _may_change(item) else item
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            _walk(item, (*path, index), env, result) if _may_change(item) else item
            for index, item in enumerate(value)
        ]
    return value


def _may_change(value: Any) -> bool:
    """Whether interpolation may change ``value``: a container, or a string with a ``$``."""
    return isinstance(value, dict | list) or (isinstance(value, str) and "$" in value)


def _one(template: str, path: DataPath, env: Mapping[str, str], result: TreeResult) -> str:
    try:
        done = interpolate_string(template, env)
    except InterpolationSyntaxError as exc:
        result.problems.append(Problem(path, str(exc)))
        return template
    for name in done.missing:
        result.problems.append(
            Problem(
                path,
                f"environment variable {name} is not set (used in {template!r}); "
                f"set it, or give a default with ${{{name}:-default}}",
            )
        )
    if done.from_env:
        variables = tuple((name, env[name]) for name in done.from_env if env[name])
        result.secrets.append(Secret(path, template, done.text, variables))
    return done.text
