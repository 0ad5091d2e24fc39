"""Read YAML text into data, keeping the line of every key and item.

The loader reports each problem with the line it is on, but PyYAML's
constructed dicts and lists have forgotten their lines. So a document is
composed into nodes first, :class:`NodeWalk` walks them, recording in a
:class:`ParseRun` the line of every key and sequence item (and refusing
duplicate keys and self-containing aliases), and only then are the nodes
constructed into plain data.

YAML is read as YAML 1.1 with two traps removed: ``2:30`` stays the string
``"2:30"`` (not the base-60 number 150) and ``2024-01-01`` stays a string (not
a date), because no config value wants either (:class:`YamlLoader`).
:data:`LibyamlLoader` is the same loader on libyaml's faster parser, when
PyYAML was built with it; :func:`libyaml_reads_alike` says when it may read a
text in the pure parser's place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from checkpointd.config.errors_format import format_path
from checkpointd.config.interpolate import DataPath
from checkpointd.errors import ConfigError, ConfigIssue

TOP_LEVEL_HINT = "a mapping with the keys daemon, kafka and checkpoints"
"""What the top of a config file must be, as error messages word it."""


@dataclass
class ParseRun:
    """What one parse has learned so far: the file's lines and the issues found."""

    label: str
    lines: dict[DataPath, int] = field(default_factory=dict)
    issues: list[ConfigIssue] = field(default_factory=list)
    overridden: dict[DataPath, str] = field(default_factory=dict)

    def add(self, path: DataPath, message: str) -> None:
        env_name = self._override_for(path)
        if env_name is not None:
            message = f"{message} (set by environment variable {env_name})"
            line = None
        else:
            line = self._line(path)
        self.issues.append(ConfigIssue(self.label, format_path(path), message, line))

    def _line(self, path: DataPath) -> int | None:
        keyed = tuple(p if isinstance(p, int) else str(p) for p in path)
        for end in range(len(keyed), 0, -1):
            if keyed[:end] in self.lines:
                return self.lines[keyed[:end]]
        return None

    def _override_for(self, path: DataPath) -> str | None:
        for target, env_name in self.overridden.items():
            if path[: len(target)] == target:
                return env_name
        return None


def whole_file_error(label: str, message: str) -> ConfigError:
    """A ConfigError about the file as a whole (no path, no line)."""
    return ConfigError([ConfigIssue(label, "", message)])


# ---------------------------------------------------------------- the loaders

_INT = re.compile(
    r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"
)
_FLOAT = re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?"
    r"|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


_RESOLVERS = {
    first: [
        (tag, _INT if tag.endswith(":int") else _FLOAT if tag.endswith(":float") else regexp)
        for tag, regexp in resolvers
        if not tag.endswith(":timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class YamlLoader(yaml.SafeLoader):
    """SafeLoader without base-60 numbers and timestamps (see the module docstring)."""

    yaml_implicit_resolvers = _RESOLVERS


LibyamlLoader: type[yaml.CSafeLoader] | None = None
"""The same loader on libyaml's parser (resolver and constructor are Python's), if built."""

if yaml.__with_libyaml__:

    class _CYamlLoader(yaml.CSafeLoader):
        yaml_implicit_resolvers = _RESOLVERS

    LibyamlLoader = _CYamlLoader

# Where libyaml and the pure parser disagree, the pure one reads the file: characters the
# pure reader refuses (libyaml refuses a slightly different set), tabs (libyaml accepts
# ``key:<TAB>value``, the pure parser does not) and the line breaks NEL, LS and PS (one
# character class, not an alternation: the regex engine scans for a class much faster).
_PURE_ONLY = re.compile(
    "[^\n\r\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F)) + b"\n\r"


def libyaml_reads_alike(text: str) -> bool:
    """Whether libyaml reads ``text`` as the pure parser would: no character above."""
    if text.isascii():  # the common case, checked ~10x faster than by the regex
        return not text.encode("ascii").translate(None, _PRINTABLE_ASCII)
    return _PURE_ONLY.search(text) is None


# ---------------------------------------------------------------- reading a document


def compose(loader: yaml.SafeLoader | yaml.CSafeLoader, run: ParseRun) -> Any:
    """The document ``loader`` reads; walks its nodes first (key lines, duplicate keys)."""
    try:
        node = loader.get_single_node()
        if node is None:
            raise whole_file_error(run.label, f"the file is empty; expected {TOP_LEVEL_HINT}")
        walk = NodeWalk(run)
        walk.walk(node, ())
        if walk.recursive:
            raise ConfigError(run.issues)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def as_mapping(data: Any, run: ParseRun) -> dict[str, Any]:
    """``data`` if the document is a mapping; raises the issue saying what it is instead."""
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else repr(data)
        raise ConfigError(
            [ConfigIssue(run.label, "", f"expected {TOP_LEVEL_HINT} at the top, found {kind}", 1)]
        )
    return data


def reader_issue(label: str, text: str, exc: yaml.reader.ReaderError) -> ConfigIssue:
    """The issue for a character YAML forbids, with its line and column."""
    line = text.count("\n", 0, exc.position) + 1
    column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
    char = exc.character if isinstance(exc.character, int) else ord(exc.character)
    return ConfigIssue(
        label,
        "",
        f"invalid YAML: character U+{char:04X} on line {line}, column {column} is not allowed "
        "(YAML forbids control characters other than tab and newline); remove it",
        line,
    )


def yaml_issue(label: str, exc: yaml.MarkedYAMLError) -> ConfigIssue:
    """The issue for a YAML syntax error, at the line the parser marked."""
    mark = exc.problem_mark or exc.context_mark
    parts = []
    if exc.context:
        context = exc.context
        if exc.context_mark is not None and exc.context_mark is not mark:
            context += f" (started on line {exc.context_mark.line + 1})"
        parts.append(context)
    parts.append(exc.problem or "cannot be parsed")
    message = f"invalid YAML: {', '.join(parts)}"
    if mark is not None:
        message += f" at column {mark.column + 1}"
    if "\\t" in message:
        message += "; indent with spaces, not tabs"
    return ConfigIssue(label, "", message, None if mark is None else mark.line + 1)


_MERGE_TAG = "tag:yaml.org,2002:merge"


class NodeWalk:
    """Record the line of every key, and catch what the YAML loader lets pass.

    PyYAML keeps the last of two equal keys silently, which hides typos in
    long files; here it is an error. A node reached twice through aliases is
    walked once (its keys' lines are those of the anchor); a node that
    contains itself cannot be a config.
    """

    def __init__(self, run: ParseRun) -> None:
        self.run = run
        self.seen: set[int] = set()
        self.open: set[int] = set()
        self.recursive = False

    def walk(self, node: yaml.Node, path: DataPath) -> None:
        if id(node) in self.open:
            self.recursive = True
            self.run.add(path, "a YAML alias refers to a node that contains it; not supported")
            return
        if id(node) in self.seen:
            return
        self.seen.add(id(node))
        self.open.add(id(node))
        if isinstance(node, yaml.MappingNode):
            self._mapping(node, path)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.run.lines.setdefault((*path, index), item.start_mark.line + 1)
                if not isinstance(item, yaml.ScalarNode):  # a scalar has no keys: skip the call
                    self.walk(item, (*path, index))
        self.open.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: DataPath) -> None:
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            key, line = key_node.value, key_node.start_mark.line + 1
            if key in first_line:
                self.run.lines.setdefault((*path, key), line)
                self.run.issues.append(
                    ConfigIssue(
                        self.run.label,
                        format_path((*path, key)),
                        f"duplicate key {key!r} (first on line {first_line[key]}); "
                        "YAML would silently keep only the last one",
                        line,
                    )
                )
                continue
            first_line[key] = line
            self.run.lines.setdefault((*path, key), line)
            if not isinstance(value_node, yaml.ScalarNode):
                self.walk(value_node, (*path, key))


__all__ = [
    "TOP_LEVEL_HINT",
    "LibyamlLoader",
    "NodeWalk",
    "ParseRun",
    "YamlLoader",
    "as_mapping",
    "compose",
    "libyaml_reads_alike",
    "reader_issue",
    "whole_file_error",
    "yaml_issue",
]
