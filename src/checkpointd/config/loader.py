"""Read a config file into a :class:`~checkpointd.config.models.Config`, or say why not.

The steps, in order:

1. read the file (UTF-8) and parse the YAML, keeping the line of every key;
2. interpolate ``${VAR}`` / ``${VAR:-default}`` / ``$$`` in string values
   (see :mod:`checkpointd.config.interpolate`);
3. apply the environment overrides below;
4. resolve relative paths against the config file's folder;
5. validate with the pydantic models.

Every problem found on the way is collected, and :class:`ConfigError` carries
them all, each naming the file, the line, the path inside the file
(``checkpoints[2].validators[0].max``), what was found and what was expected.

Environment overrides, for the settings that change per deployment (a
container sets these rather than editing the file). An unset or empty
variable overrides nothing. A relative ``CHECKPOINTD_STATE_DIR`` is relative
to the current directory, as a shell user expects; relative paths written in
the file are relative to the file's folder.

=============================  ==========================
Variable                       Sets
=============================  ==========================
CHECKPOINTD_HTTP_LISTEN        ``daemon.http.listen``
CHECKPOINTD_HTTP_TOKEN         ``daemon.http.token``
CHECKPOINTD_STATE_DIR          ``daemon.state_dir``
CHECKPOINTD_LOG_LEVEL          ``daemon.log.level``
CHECKPOINTD_LOG_FORMAT         ``daemon.log.format``
CHECKPOINTD_KAFKA_BOOTSTRAP    ``kafka.bootstrap_servers``
=============================  ==========================

YAML is read as YAML 1.1 with two traps removed: ``2:30`` stays the string
``"2:30"`` (not the base-60 number 150) and ``2024-01-01`` stays a string (not
a date), because no config value wants either.

Parsing uses libyaml (PyYAML's C parser) when PyYAML was built with it: it builds
the same nodes, line marks included, several times faster (with the collector
paused, loading 10,000 checkpoints took ~3.5 s instead of ~20 s on a shared
2-core machine). The pure-Python parser stays the reference: a file
libyaml rejects is parsed again by it, so every YAML error reads as it always
has, and a file with a tab, a control character or a Unicode line break (where
the two parsers disagree on what is valid, or on line numbers) goes to it
directly. The cyclic garbage collector is paused while a file is parsed and
validated (see :func:`_collector_paused`).
"""

from __future__ import annotations

import gc
import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from checkpointd.config.errors_format import (
    FieldProblem,
    Masked,
    describe_errors,
    format_path,
)
from checkpointd.config.interpolate import DataPath, interpolate_tree
from checkpointd.config.models import Config
from checkpointd.errors import ConfigError, ConfigIssue

ENV_OVERRIDES: Mapping[str, DataPath] = {
    "CHECKPOINTD_HTTP_LISTEN": ("daemon", "http", "listen"),
    "CHECKPOINTD_HTTP_TOKEN": ("daemon", "http", "token"),
    "CHECKPOINTD_STATE_DIR": ("daemon", "state_dir"),
    "CHECKPOINTD_LOG_LEVEL": ("daemon", "log", "level"),
    "CHECKPOINTD_LOG_FORMAT": ("daemon", "log", "format"),
    "CHECKPOINTD_KAFKA_BOOTSTRAP": ("kafka", "bootstrap_servers"),
}
"""Environment variable → the config key it sets."""

_SECRET_OVERRIDES = frozenset({"CHECKPOINTD_HTTP_TOKEN"})
_PATH_OVERRIDES = frozenset({"CHECKPOINTD_STATE_DIR"})
_FILE_SOURCES = frozenset({"csv", "parquet", "ndjson"})


def load_config(path: Path | str, *, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate the config file at ``path``.

    ``env`` is used for ``${VAR}`` and the overrides (default: ``os.environ``).
    Raises ConfigError listing every problem; ``Config.source`` is the file's
    absolute path, and relative paths in it are resolved against its folder.
    """
    label = str(path)
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise _whole_file(label, f"file not found (current directory: {Path.cwd()})") from None
    except IsADirectoryError:
        raise _whole_file(label, "is a directory; expected a YAML config file") from None
    except PermissionError:
        raise _whole_file(label, "cannot be read: permission denied") from None
    except UnicodeDecodeError as exc:
        raise _whole_file(label, f"is not UTF-8 text (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise _whole_file(label, f"cannot be read: {exc.strerror or exc}") from None
    absolute = file.absolute()
    return _parse(text, label, absolute.parent, os.environ if env is None else env, absolute)


def parse_config(
    text: str,
    *,
    source: str = "<string>",
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Validate config ``text``; ``source`` names it in errors.

    Relative paths are resolved against ``base_dir``, or left as they are when
    it is None. ``Config.source`` stays None: the text came from no file.
    """
    return _parse(text, source, base_dir, os.environ if env is None else env, None)


def summarize(config: Config, *, source: str | None = None) -> str:
    """The one line ``checkpointd check`` prints for a valid config.

    ``ok: checkpoints.yaml — 3 checkpoints, 5 triggers (2 schedule, 1 file, 2 kafka), 4 actions``
    """
    name = source or _display_path(config.source)
    kinds = Counter(t.type for cp in config.checkpoints for t in cp.triggers)
    triggers = _count(sum(kinds.values()), "trigger")
    if kinds:
        order = ["schedule", "file", "kafka", "manual"]
        ranked = sorted(kinds, key=lambda k: order.index(k) if k in order else len(order))
        triggers += f" ({', '.join(f'{kinds[k]} {k}' for k in ranked)})"
    actions = sum(len(cp.actions.items) for cp in config.checkpoints)
    return (
        f"ok: {name} — {_count(len(config.checkpoints), 'checkpoint')}, "
        f"{triggers}, {_count(actions, 'action')}"
    )


# ---------------------------------------------------------------- the steps


@dataclass
class _Run:
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


def _parse(
    text: str,
    label: str,
    base_dir: Path | None,
    env: Mapping[str, str],
    source_path: Path | None,
) -> Config:
    with _collector_paused():
        return _parse_data(text, label, base_dir, env, source_path)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (when it runs) for the block.

    A big file keeps hundreds of thousands of YAML nodes and dicts alive at once,
    and every collection their allocation triggers walks them all: with 10,000
    checkpoints the collections took ~3/4 of the parse. Nothing here makes
    cyclic garbage worth collecting; what the parse leaves is freed by reference
    counting. A caller that paused it already keeps it paused.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _parse_data(
    text: str,
    label: str,
    base_dir: Path | None,
    env: Mapping[str, str],
    source_path: Path | None,
) -> Config:
    run = _Run(label)
    data = _read_yaml(text, run)

    tree = interpolate_tree(data, env)
    data = tree.data
    for unset in tree.problems:
        run.add(unset.path, unset.message)
    unresolved = [p.path for p in tree.problems]
    masks = {
        s.path: Masked(
            f"{s.template!r} (value from the environment)",
            tuple((value, f"${{{name}}}") for name, value in s.variables),
            s.value,
        )
        for s in tree.secrets
    }

    for env_name, target in ENV_OVERRIDES.items():
        value = env.get(env_name)
        if value and _set_path(data, target, _override_value(env_name, value)):
            run.overridden[target] = env_name
            if env_name in _SECRET_OVERRIDES:
                masks[target] = Masked(f"${env_name} (value not shown)", ((value, f"${env_name}"),))
    if base_dir is not None:
        _resolve_paths(data, base_dir)

    duplicates = _duplicate_names(data, run)
    if "source" in data:
        # A field of Config, but one the loader fills in: not a key users write.
        del data["source"]
        run.add(("source",), f"unknown key 'source'; allowed keys: {_top_level_keys()}")
    if source_path is not None:
        data["source"] = source_path

    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for problem in describe_errors(exc, Config, masks):
            if _under_any(problem, unresolved) or (
                duplicates and not problem.path and "duplicate checkpoint" in problem.message
            ):
                continue
            run.add(problem.path, problem.message)
        config = None
    if run.issues or config is None:
        raise ConfigError(_in_file_order(run.issues))
    return config


def _whole_file(label: str, message: str) -> ConfigError:
    return ConfigError([ConfigIssue(label, "", message)])


def _in_file_order(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    return sorted(issues, key=lambda i: (i.line is None, i.line or 0))


def _under_any(problem: FieldProblem, roots: list[DataPath]) -> bool:
    """Whether a problem concerns a value whose ``${VAR}`` could not be resolved."""
    return not problem.at_parent and any(problem.path[: len(r)] == r for r in roots)


# ---------------------------------------------------------------- YAML

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


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader without base-60 numbers and timestamps (see the module docstring)."""

    yaml_implicit_resolvers = _RESOLVERS


_LibyamlLoader: type[yaml.CSafeLoader] | None = None
"""The same loader on libyaml's parser (resolver and constructor are Python's), if built."""

if yaml.__with_libyaml__:

    class _CYamlLoader(yaml.CSafeLoader):
        yaml_implicit_resolvers = _RESOLVERS

    _LibyamlLoader = _CYamlLoader

# Where libyaml and the pure parser disagree, the pure one reads the file: characters the
# pure reader refuses (libyaml refuses a slightly different set), tabs (libyaml accepts
# ``key:<TAB>value``, the pure parser does not) and the line breaks NEL, LS and PS (one
# character class, not an alternation: the regex engine scans for a class much faster).
_PURE_ONLY = re.compile(
    "[^\n\r\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F)) + b"\n\r"


def _libyaml_reads_alike(text: str) -> bool:
    """Whether libyaml reads ``text`` as the pure parser would: no character above."""
    if text.isascii():  # the common case, checked ~10x faster than by the regex
        return not text.encode("ascii").translate(None, _PRINTABLE_ASCII)
    return _PURE_ONLY.search(text) is None


_MERGE_TAG = "tag:yaml.org,2002:merge"
_TOP_LEVEL_HINT = "a mapping with the keys daemon, kafka and checkpoints"


def _read_yaml(text: str, run: _Run) -> dict[str, Any]:
    """The YAML document as a dict; records key lines in ``run``. Raises for a bad file."""
    if _LibyamlLoader is not None and _libyaml_reads_alike(text):
        try:
            return _as_mapping(_compose(_LibyamlLoader(text), run), run)
        except yaml.YAMLError:
            # libyaml words its errors differently (and less helpfully): the pure
            # parser reads the file again and reports the problem as it always has.
            run.lines.clear()
            run.issues.clear()
    try:
        loader = _YamlLoader(text)  # checks for characters YAML forbids, before parsing
    except yaml.reader.ReaderError as exc:
        raise ConfigError([_reader_issue(run.label, text, exc)]) from None
    try:
        data = _compose(loader, run)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_yaml_issue(run.label, exc)]) from None
    except yaml.YAMLError as exc:
        raise _whole_file(run.label, f"invalid YAML: {exc}") from None
    return _as_mapping(data, run)


def _compose(loader: yaml.SafeLoader | yaml.CSafeLoader, run: _Run) -> Any:
    """The document ``loader`` reads; walks its nodes first (key lines, duplicate keys)."""
    try:
        node = loader.get_single_node()
        if node is None:
            raise _whole_file(run.label, f"the file is empty; expected {_TOP_LEVEL_HINT}")
        walk = _NodeWalk(run)
        walk.walk(node, ())
        if walk.recursive:
            raise ConfigError(run.issues)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _as_mapping(data: Any, run: _Run) -> dict[str, Any]:
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else repr(data)
        raise ConfigError(
            [ConfigIssue(run.label, "", f"expected {_TOP_LEVEL_HINT} at the top, found {kind}", 1)]
        )
    return data


def _reader_issue(label: str, text: str, exc: yaml.reader.ReaderError) -> ConfigIssue:
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


def _yaml_issue(label: str, exc: yaml.MarkedYAMLError) -> ConfigIssue:
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


class _NodeWalk:
    """Record the line of every key, and catch what the YAML loader lets pass.

    PyYAML keeps the last of two equal keys silently, which hides typos in
    long files; here it is an error. A node reached twice through aliases is
    walked once (its keys' lines are those of the anchor); a node that
    contains itself cannot be a config.
    """

    def __init__(self, run: _Run) -> None:
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


# ---------------------------------------------------------------- overrides and paths


def _override_value(env_name: str, value: str) -> str:
    if env_name in _PATH_OVERRIDES:
        return str(Path(value).expanduser().absolute())
    return value


def _set_path(data: dict[str, Any], target: DataPath, value: Any) -> bool:
    """Set ``target`` in nested dicts, creating missing ones; False if a non-dict is in the way."""
    node: Any = data
    for part in target[:-1]:
        if part not in node:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            return False
    node[target[-1]] = value
    return True


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Make the file's relative paths relative to ``base`` (the file's folder), in place."""
    daemon = data.get("daemon")
    if isinstance(daemon, dict):
        _absolute(daemon, "state_dir", base)
    kafka = data.get("kafka")
    if isinstance(kafka, dict):
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            _absolute(kafka, key, base)
    for checkpoint in _dicts(data.get("checkpoints")):
        source = checkpoint.get("data_source")
        # A mangled file may hold a list or a mapping as the type: not hashable, not a file.
        kind = source.get("type") if isinstance(source, dict) else None
        if isinstance(kind, str) and kind in _FILE_SOURCES:
            _absolute(source, "path", base)
        for trigger in _dicts(checkpoint.get("triggers")):
            if trigger.get("type") != "file":
                continue
            for key in ("directory", "move_on_success", "move_on_failure"):
                _absolute(trigger, key, base)
            directories = trigger.get("directories")
            if isinstance(directories, list):
                for index in range(len(directories)):
                    _absolute(directories, index, base)


def _absolute(holder: Any, key: Any, base: Path) -> None:
    value = holder[key] if isinstance(holder, list) else holder.get(key)
    if not isinstance(value, str) or not value or value.startswith("{") or "://" in value:
        # Empty is the validator's business; "{trigger.path}" is filled in per
        # run; "s3://..." is a URL for polars, not a local path.
        return
    expanded = os.path.expanduser(value)
    holder[key] = expanded if os.path.isabs(expanded) else str(base / expanded)


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


# ---------------------------------------------------------------- checks on the raw data


def _duplicate_names(data: dict[str, Any], run: _Run) -> bool:
    """Report every checkpoint whose name an earlier one already has."""
    first: dict[str, int] = {}
    found = False
    checkpoints = data.get("checkpoints")
    for index, checkpoint in enumerate(checkpoints if isinstance(checkpoints, list) else []):
        name = checkpoint.get("name") if isinstance(checkpoint, dict) else None
        if not isinstance(name, str):
            continue
        if name in first:
            found = True
            run.add(
                ("checkpoints", index, "name"),
                f"duplicate checkpoint name {name!r} (first used by checkpoints[{first[name]}]); "
                "names must be unique",
            )
        else:
            first[name] = index
    return found


def _top_level_keys() -> str:
    return ", ".join(k for k, f in Config.model_fields.items() if f.exclude is not True)


# ---------------------------------------------------------------- summary helpers


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _display_path(path: Path | None) -> str:
    if path is None:
        return "<string>"
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


__all__ = ["ENV_OVERRIDES", "load_config", "parse_config", "summarize"]
