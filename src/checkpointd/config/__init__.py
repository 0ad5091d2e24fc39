"""The config file: models, loading with ``${VAR}`` interpolation, and diffing for reload."""

from __future__ import annotations

from checkpointd.config.diff import CheckpointChange, ConfigDiff, diff_configs
from checkpointd.config.loader import ENV_OVERRIDES, load_config, parse_config, summarize
from checkpointd.config.models import CheckpointConfig, Config, DaemonConfig

__all__ = [
    "ENV_OVERRIDES",
    "CheckpointChange",
    "CheckpointConfig",
    "Config",
    "ConfigDiff",
    "DaemonConfig",
    "diff_configs",
    "load_config",
    "parse_config",
    "summarize",
]
