"""What changed between two configs, so that a reload does only what it must.

:func:`diff_configs` is pure: it compares two validated configs and says

* which checkpoints were added, removed or changed (by name; a rename is a
  removal and an addition, and moving a checkpoint in the list is no change);
* for a changed checkpoint, which of its keys differ and so whether only its
  triggers changed (re-arm the triggers, keep the checkpoint), only its
  actions, or its run definition (data source, validators, timeout, retries...);
* which daemon-level settings changed, split into those a running daemon
  applies live and those that need a restart.

Live daemon settings are listed in :data:`LIVE_SETTINGS`; every other daemon
or Kafka setting needs a restart, so a setting added later is safe by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from checkpointd.config.models import CheckpointConfig, Config, KafkaConfig

LIVE_SETTINGS = frozenset(
    {
        "daemon.max_concurrent_checkpoints",
        "daemon.graceful_shutdown_timeout",
        "daemon.trigger_poll_interval",
        "daemon.stop_on_error",
        "daemon.max_consecutive_failures",
        "daemon.on_crash",
        "daemon.watch_config",
        "daemon.http.token",
        "daemon.log.level",
        "daemon.log.format",
        "daemon.retention.max_age",
        "daemon.retention.max_runs_per_checkpoint",
    }
)
"""Daemon settings a running daemon takes on at reload without restarting."""

TRIGGER_KEYS = frozenset({"triggers", "catch_up", "max_catch_up"})
"""Checkpoint keys that only say when a checkpoint runs."""

ACTION_KEYS = frozenset({"actions"})
"""Checkpoint keys that only say who hears about results."""


@dataclass(frozen=True, slots=True)
class CheckpointChange:
    """A checkpoint present in both configs whose definition differs."""

    name: str
    keys: tuple[str, ...]
    """The checkpoint's top-level keys that differ, in declaration order."""

    @property
    def triggers_changed(self) -> bool:
        """Whether when it runs changed (triggers, catch-up)."""
        return any(k in TRIGGER_KEYS for k in self.keys)

    @property
    def actions_changed(self) -> bool:
        """Whether its actions (or their strategy) changed."""
        return any(k in ACTION_KEYS for k in self.keys)

    @property
    def run_changed(self) -> bool:
        """Whether what a run does changed: data source, validators, timeout, retries..."""
        return any(k not in TRIGGER_KEYS | ACTION_KEYS for k in self.keys)

    @property
    def only_triggers(self) -> bool:
        """Whether re-arming its triggers is all the reload needs to do for it."""
        return self.triggers_changed and not (self.run_changed or self.actions_changed)


@dataclass(frozen=True, slots=True)
class ConfigDiff:
    """The difference between an old and a new config (see :func:`diff_configs`)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[CheckpointChange, ...] = ()
    live: tuple[str, ...] = ()
    """Dotted daemon settings that changed and apply without a restart."""
    restart_required: tuple[str, ...] = ()
    """Dotted settings that changed but take effect only after a restart."""

    @property
    def is_empty(self) -> bool:
        """Whether the two configs are the same in every way that matters to the daemon."""
        return not (
            self.added or self.removed or self.changed or self.live or self.restart_required
        )

    @property
    def needs_restart(self) -> bool:
        """Whether some change cannot take effect until the daemon restarts."""
        return bool(self.restart_required)

    def describe(self) -> str:
        """One line for the log: ``added a; removed b; changed c (triggers); restart: ...``."""
        if self.is_empty:
            return "no changes"
        parts = []
        if self.added:
            parts.append(f"added {', '.join(self.added)}")
        if self.removed:
            parts.append(f"removed {', '.join(self.removed)}")
        if self.changed:
            parts.append(
                "changed " + ", ".join(f"{c.name} ({', '.join(c.keys)})" for c in self.changed)
            )
        if self.live:
            parts.append(f"applied live: {', '.join(self.live)}")
        if self.restart_required:
            parts.append(f"needs restart: {', '.join(self.restart_required)}")
        return "; ".join(parts)


def diff_configs(old: Config, new: Config) -> ConfigDiff:
    """Compare two configs. Pure: no I/O, and neither argument is changed."""
    old_by_name = {cp.name: cp for cp in old.checkpoints}
    new_by_name = {cp.name: cp for cp in new.checkpoints}
    changed = tuple(
        CheckpointChange(cp.name, keys)
        for cp in new.checkpoints
        if cp.name in old_by_name and (keys := _checkpoint_keys(old_by_name[cp.name], cp))
    )
    settings = _model_changes("daemon", old.daemon, new.daemon) + _kafka_changes(
        old.kafka, new.kafka
    )
    return ConfigDiff(
        added=tuple(cp.name for cp in new.checkpoints if cp.name not in old_by_name),
        removed=tuple(cp.name for cp in old.checkpoints if cp.name not in new_by_name),
        changed=changed,
        live=tuple(s for s in settings if s in LIVE_SETTINGS),
        restart_required=tuple(s for s in settings if s not in LIVE_SETTINGS),
    )


def _checkpoint_keys(old: CheckpointConfig, new: CheckpointConfig) -> tuple[str, ...]:
    return tuple(
        name for name in CheckpointConfig.model_fields if getattr(old, name) != getattr(new, name)
    )


def _kafka_changes(old: KafkaConfig | None, new: KafkaConfig | None) -> list[str]:
    if old is None and new is None:
        return []
    if old is None or new is None:
        return ["kafka"]
    return _model_changes("kafka", old, new)


def _model_changes(prefix: str, old: BaseModel, new: BaseModel) -> list[str]:
    """Dotted names of the leaf settings that differ, nested models walked into."""
    found: list[str] = []
    for name in type(old).model_fields:
        before: Any = getattr(old, name)
        after: Any = getattr(new, name)
        if before == after:
            continue
        if isinstance(before, BaseModel) and isinstance(after, BaseModel):
            found.extend(_model_changes(f"{prefix}.{name}", before, after))
        else:
            found.append(f"{prefix}.{name}")
    return found
