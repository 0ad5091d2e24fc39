"""Every exception checkpointd raises on purpose.

The tree::

    CheckpointdError
    ├── ConfigError            a config file is invalid; carries every ConfigIssue
    ├── DataSourceError        data could not be loaded (missing file, corrupt, bad dtype)
    ├── ValidatorError         a validator could not be evaluated (missing column, bad regex)
    ├── StoreError             the SQLite state could not be read or written
    │   └── StateDirInUseError another process holds the state dir
    ├── RunnerError            the runner was used wrongly (not started, already stopped)
    └── DeliveryError          an action could not be delivered (retryable or not)

A checkpoint *run* never raises these to its caller: it returns a
CheckpointResult whose status and ``error`` say what happened. The exceptions
surface at the edges: loading a config, opening a store, the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass


class CheckpointdError(Exception):
    """Base class of every error checkpointd raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config file: where it is, what was found, what was expected.

    ``line`` is the 1-based line in ``file`` when it is known (it is not for values
    that came from the environment or for problems with the file as a whole).
    """

    file: str
    location: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.location:
            where = f"{where}: {self.location}"
        return f"{where}: {self.message}"


class ConfigError(CheckpointdError):
    """A config file is invalid. ``issues`` lists every problem found, not just the first."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        lines = "\n".join(f"  - {issue}" for issue in issues)
        count = len(issues)
        super().__init__(f"{count} error{'s' if count != 1 else ''} in config:\n{lines}")


class DataSourceError(CheckpointdError):
    """Data could not be loaded: the message names the source and the cause."""


class ValidatorError(CheckpointdError):
    """A validator could not be evaluated against the data."""


class StoreError(CheckpointdError):
    """The durable store could not be opened, read or written."""


class StateDirInUseError(StoreError):
    """Another live process holds the state directory."""

    def __init__(self, state_dir: str, pid: int | None) -> None:
        self.state_dir = state_dir
        self.pid = pid
        who = f"pid {pid}" if pid is not None else "another process"
        super().__init__(
            f"state dir {state_dir} in use by {who}; stop that process or point "
            "daemon.state_dir at another directory"
        )


class RunnerError(CheckpointdError):
    """The runner or pool was used in a way its state does not allow."""


class DeliveryError(CheckpointdError):
    """An action could not be delivered. ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None):
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(message)
