"""Read a config file into a :class:`~checkpointd.config.models.Config`, or say why not.

The steps, in order:

1. read the file (UTF-8) and parse the YAML, keeping the line of every key
   (see :mod:`checkpointd.config.yaml_reader`);
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
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from checkpointd.config.errors_format import FieldProblem, Masked, describe_errors
from checkpointd.config.interpolate import DataPath, interpolate_tree
from checkpointd.config.models import Config
from checkpointd.config.yaml_reader import (
    LibyamlLoader,
    ParseRun,
    YamlLoader,
    as_mapping,
    compose,
    libyaml_reads_alike,
    reader_issue,
    whole_file_error,
    yaml_issue,
)
from checkpointd.errors import ConfigError, ConfigIssue

# The parsers are looked up under these names each time a file is read, so a test can
# count or swap them; and it composes a document with the loader's own ``_compose``.
_YamlLoader: type[yaml.SafeLoader] = YamlLoader
_LibyamlLoader: type[yaml.CSafeLoader] | None = LibyamlLoader
_Run = ParseRun
_compose = compose

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
        raise whole_file_error(label, f"file not found (current directory: {Path.cwd()})") from None
    except IsADirectoryError:
        raise whole_file_error(label, "is a directory; expected a YAML config file") from None
    except PermissionError:
        raise whole_file_error(label, "cannot be read: permission denied") from None
    except UnicodeDecodeError as exc:
        raise whole_file_error(
            label, f"is not UTF-8 text (bad byte at offset {exc.start})"
        ) from None
    except OSError as exc:
        raise whole_file_error(label, f"cannot be read: {exc.strerror or exc}") from None
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


def _in_file_order(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    return sorted(issues, key=lambda i: (i.line is None, i.line or 0))


def _under_any(problem: FieldProblem, roots: list[DataPath]) -> bool:
    """Whether a problem concerns a value whose ``${VAR}`` could not be resolved."""
    return not problem.at_parent and any(problem.path[: len(r)] == r for r in roots)


def _read_yaml(text: str, run: _Run) -> dict[str, Any]:
    """The YAML document as a dict; records key lines in ``run``. Raises for a bad file."""
    if _LibyamlLoader is not None and libyaml_reads_alike(text):
        try:
            return as_mapping(_compose(_LibyamlLoader(text), run), run)
        except yaml.YAMLError:
            # libyaml words its errors differently (and less helpfully): the pure
            # parser reads the file again and reports the problem as it always has.
            run.lines.clear()
            run.issues.clear()
    try:
        loader = _YamlLoader(text)  # checks for characters YAML forbids, before parsing
    except yaml.reader.ReaderError as exc:
        raise ConfigError([reader_issue(run.label, text, exc)]) from None
    try:
        data = _compose(loader, run)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([yaml_issue(run.label, exc)]) from None
    except yaml.YAMLError as exc:
        raise whole_file_error(run.label, f"invalid YAML: {exc}") from None
    return as_mapping(data, run)


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
