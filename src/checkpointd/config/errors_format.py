"""Pydantic validation errors, rewritten as operators read them.

Pydantic says ``checkpoints.0.validators.1.range.min: Input should be a valid
number``. An operator wants ``checkpoints[0].validators[1].min: expected a
number, found 'abc'``: the path as it is in the file (without pydantic's union
tags), what was found, what was expected, and for a typo the nearest correct
spelling. This module does that rewriting; it knows nothing about files.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_core import ErrorDetails

from checkpointd.config.interpolate import DataPath

# The word for one element of a discriminated union, by the key that holds it.
_KIND_BY_KEY = {
    "validators": "validator",
    "triggers": "trigger",
    "data_source": "data source",
    "list": "action",
}

# Friendlier words for the regex patterns the models use.
_PATTERN_WORDS = {
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$": (
        "a name of letters, digits, '_', '.' and '-' that starts with a letter or digit "
        "(at most 128 characters)"
    ),
    r"^[\w.]+:[\w.]+$": "an import target 'module:attribute' such as 'mypkg.hooks:notify'",
}

_COMPARISONS = {
    "greater_than_equal": ("ge", ">="),
    "greater_than": ("gt", ">"),
    "less_than_equal": ("le", "<="),
    "less_than": ("lt", "<"),
}

_SIMPLE_TYPES = {
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string (put quotes around it)",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "path_type": "a path",
    "none_required": "nothing (null)",
    "invalid_key": "a key that is text",
}


@dataclass(frozen=True, slots=True)
class Masked:
    """How to show a value that must not be printed (it came from the environment)."""

    shown: str
    """What to print in place of the whole value, such as ``'${HOOK_SECRET}'``."""
    hidden: tuple[tuple[str, str], ...] = ()
    """``(text, replacement)``: texts that must not appear in a message (the env
    values in the value), and what to print instead (``${HOOK_SECRET}``)."""
    value: str | None = None
    """The whole value, when it must not appear either."""


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One validation error, with its path as written in the file."""

    path: DataPath
    message: str
    at_parent: bool = False
    """True when the problem is a missing key: ``path`` then names the mapping."""


def format_path(path: Sequence[str | int]) -> str:
    """``('checkpoints', 2, 'validators', 0, 'max')`` → ``checkpoints[2].validators[0].max``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def describe_errors(
    exc: ValidationError,
    root: type[BaseModel],
    masked: Mapping[DataPath, Masked] | None = None,
) -> list[FieldProblem]:
    """Every error of ``exc`` (validating ``root``) as a FieldProblem, in pydantic's order."""
    masks = masked or {}
    problems: list[FieldProblem] = []
    for error in exc.errors(include_url=False):
        path, target = _resolve(root, error["loc"])
        problem = _describe(error, path, target, root, masks)
        problems.append(_scrub(problem, masks))
    return problems


# ---------------------------------------------------------------- messages


def _describe(
    error: ErrorDetails,
    path: DataPath,
    target: Any,
    root: type[BaseModel],
    masks: Mapping[DataPath, Masked],
) -> FieldProblem:
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    found = _found(error.get("input"), path, masks)
    if path not in masks and _holds_secret(target, path):
        found = _kind_of(error.get("input"), found)

    if kind == "missing":
        return FieldProblem(path[:-1], f"missing required key {path[-1]!r}", at_parent=True)
    if kind == "extra_forbidden":
        return FieldProblem(path, _unknown_key(error["loc"], root))
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return FieldProblem(path, _bad_tag(kind, path, target, ctx))
    if kind in ("value_error", "assertion_error"):
        message = str(ctx.get("error", error["msg"]))
        return FieldProblem(path, message)
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return FieldProblem(path, _choice_message(choices, error.get("input"), found))
    if kind in _COMPARISONS:
        key, sign = _COMPARISONS[kind]
        noun = "an integer" if target is int else "a number"
        return FieldProblem(path, f"expected {noun} {sign} {ctx.get(key)}, found {found}")
    if kind == "too_short":
        least = ctx.get("min_length")
        noun = "item" if least == 1 else "items"
        return FieldProblem(path, f"expected at least {least} {noun}, found {found}")
    if kind == "too_long":
        return FieldProblem(path, f"expected at most {ctx.get('max_length')} items")
    if kind == "string_too_short":
        least = ctx.get("min_length")
        expected = "a non-empty string" if least == 1 else f"at least {least} characters"
        return FieldProblem(path, f"expected {expected}, found {found}")
    if kind == "string_too_long":
        return FieldProblem(path, f"expected at most {ctx.get('max_length')} characters")
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        words = _PATTERN_WORDS.get(pattern, f"a string matching {pattern}")
        return FieldProblem(path, f"expected {words}, found {found}")
    if kind in _SIMPLE_TYPES:
        return FieldProblem(path, f"expected {_SIMPLE_TYPES[kind]}, found {found}")
    return FieldProblem(path, f"{error['msg'][0].lower()}{error['msg'][1:]}; found {found}")


def _holds_secret(target: Any, path: DataPath) -> bool:
    """Whether the value at ``path`` is a secret even when written literally in the file:
    a ``SecretStr`` field (tokens, signing secrets, routing keys, passwords) or a header
    value (``Authorization: Bearer ...``)."""
    return target is SecretStr or (len(path) >= 2 and path[-2] == "headers")


def _kind_of(value: Any, found: str) -> str:
    """What a secret field held, by kind only (a mistyped secret is still a secret)."""
    if isinstance(value, str):
        return "a string (not shown: the key holds a secret)"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number (not shown: the key holds a secret)"
    return found  # null, true/false, "a mapping", "a list of 2": no content shown


def _found(value: Any, path: DataPath, masks: Mapping[DataPath, Masked]) -> str:
    if path in masks:
        return masks[path].shown
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if len(value) <= 80 else repr(value[:77] + "...")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        count = len(value)
        return "an empty list" if not count else f"a list of {count}"
    return type(value).__name__


def _choice_message(choices: list[str], value: Any, found: str) -> str:
    message = f"expected one of {', '.join(choices)}; found {found}"
    if isinstance(value, str):
        close = difflib.get_close_matches(value, choices, n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
    return message


def _unknown_key(loc: Sequence[str | int], root: type[BaseModel]) -> str:
    key = str(loc[-1])
    _, owner = _resolve(root, loc[:-1])
    allowed = _model_keys(owner) if _is_model(owner) else []
    message = f"unknown key {key!r}"
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    if allowed:
        message += f"; allowed keys: {', '.join(allowed)}"
    return message


def _bad_tag(kind: str, path: DataPath, union: Any, ctx: dict[str, Any]) -> str:
    tags = _union_tags(union)
    if not tags:
        tags = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
    holder = next((p for p in reversed(path) if isinstance(p, str)), "")
    noun = _KIND_BY_KEY.get(holder, "")
    expected = f"expected one of: {', '.join(tags)}"
    if kind == "union_tag_not_found":
        return f"missing required key 'type'; {expected}"
    tag = str(ctx.get("tag", ""))
    close = difflib.get_close_matches(tag, tags, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {noun + ' ' if noun else ''}type {tag!r}{hint}; {expected}"


def _scrub(problem: FieldProblem, masks: Mapping[DataPath, Masked]) -> FieldProblem:
    """Replace any secret text in the message by how the file spells it."""
    message = problem.message
    for mask_path, mask in masks.items():
        shorter = min(len(mask_path), len(problem.path))
        if mask_path[:shorter] != problem.path[:shorter]:
            continue
        if mask.value:
            message = message.replace(repr(mask.value), mask.shown)
        for hidden, replacement in sorted(mask.hidden, key=lambda h: -len(h[0])):
            message = message.replace(repr(hidden), repr(replacement))
            # Short values (ports, counts) also occur as parts of ordinary
            # words and numbers; only longer ones are hunted outside quotes.
            if len(hidden) >= 4:
                bounded = rf"(?<![A-Za-z0-9_]){re.escape(hidden)}(?![A-Za-z0-9_])"
                message = re.sub(bounded, replacement.replace("\\", r"\\"), message)
    if message == problem.message:
        return problem
    return FieldProblem(problem.path, message, problem.at_parent)


# ---------------------------------------------------------------- the model walk


def _resolve(root: type[BaseModel], loc: Sequence[str | int]) -> tuple[DataPath, Any]:
    """Follow ``loc`` through the model types: the clean path, and the type found there.

    Pydantic puts the chosen tag of a discriminated union into ``loc``
    (``validators, 1, 'range', 'min'``) and, for other unions, names like
    ``function-after[...]``. Neither is a key in the file, so both are dropped.
    The type is None once the walk leaves what the models describe.
    """
    path: list[str | int] = []
    current: Any = root
    for part in loc:
        current = _unwrap_optional(current)
        tags = _union_tags(current)
        if tags and isinstance(part, str) and part in tags:
            current = _union_member(current, part)
            continue
        if isinstance(part, str) and _is_pydantic_tag(part) and not _has_keys(current):
            continue
        # A number in a mapping is a key written as a number (`1: x`), not an index.
        path.append(str(part) if isinstance(part, int) and _has_keys(current) else part)
        current = _step(current, part)
    return tuple(path), _unwrap_optional(current)


def _step(current: Any, part: str | int) -> Any:
    if _is_model(current):
        for name, info in current.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
        return None
    origin = get_origin(current)
    args = get_args(current)
    if origin in (list, tuple) and args:
        return args[0]
    if origin is dict and len(args) == 2:
        return args[1]
    return None


def _unwrap_optional(tp: Any) -> Any:
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
            continue
        if _is_union(tp):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _union_tags(tp: Any) -> list[str]:
    """The ``type`` tags of a union of models discriminated on ``type`` (else [])."""
    if not _is_union(tp):
        return []
    tags: list[str] = []
    for member in get_args(tp):
        tag = _model_tag(member)
        if tag is None:
            return []
        tags.append(tag)
    return tags


def _union_member(tp: Any, tag: str) -> Any:
    return next(m for m in get_args(tp) if _model_tag(m) == tag)


def _model_tag(member: Any) -> str | None:
    if not _is_model(member) or "type" not in member.model_fields:
        return None
    literal = member.model_fields["type"].annotation
    if get_origin(literal) is not Literal:
        return None
    values = get_args(literal)
    return str(values[0]) if len(values) == 1 else None


def _model_keys(model: type[BaseModel]) -> list[str]:
    keys = [
        info.alias or name
        for name, info in model.model_fields.items()
        if info.exclude is not True  # Config.source is set by the loader, not written
    ]
    return sorted(keys, key=lambda k: k != "type")  # the tag first, the rest as declared


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _has_keys(tp: Any) -> bool:
    """Whether ``tp`` is a mapping whose keys come from the file (so any text is a key)."""
    return _is_model(tp) or get_origin(tp) is dict or tp is Any


def _is_pydantic_tag(part: str) -> bool:
    return bool(re.fullmatch(r"[\w-]+\[.*\]", part))
