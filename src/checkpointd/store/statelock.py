"""The state-dir lock: one checkpointd process per state directory.

Two daemons writing one SQLite journal would each recover the other's
in-flight runs and run them twice. So the store takes an exclusive
``fcntl.flock`` on ``<state_dir>/checkpointd.lock`` and writes its pid there;
a second process gets :class:`~checkpointd.errors.StateDirInUseError` naming
that pid.

Why ``flock`` rather than "does the pid in the file still exist": the kernel
drops the lock the moment its holder dies, however it dies (SIGKILL, OOM
killer), so a stale file left by a dead process is simply taken over, and a
recycled pid can never keep a dead daemon's lock alive. The pid inside the
file is only there to make the error message useful.

``flock`` locks belong to an open file description, so a second
:func:`acquire_state_dir` in the *same* process conflicts too, and the
descriptor is not inherited by child processes (Python opens it
non-inheritable), so a subprocess cannot keep the lock after the daemon dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from checkpointd.errors import StateDirInUseError, StoreError

LOCK_FILE_NAME = "checkpointd.lock"


class StateDirLock:
    """An exclusive lock on a state directory, held until :meth:`release`."""

    def __init__(self, state_dir: Path, fd: int) -> None:
        self.state_dir = state_dir
        self._fd: int | None = fd

    @property
    def path(self) -> Path:
        """The lock file."""
        return self.state_dir / LOCK_FILE_NAME

    @property
    def held(self) -> bool:
        """True until :meth:`release` is called."""
        return self._fd is not None

    def release(self) -> None:
        """Give the directory up. Safe to call twice.

        The lock file is left in place: deleting it would race with another
        process that has just opened it and is about to lock it.
        """
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> StateDirLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def acquire_state_dir(state_dir: Path) -> StateDirLock:
    """Create ``state_dir`` if needed and lock it for this process.

    Raises StateDirInUseError (with the holder's pid when it can be read) if
    another open lock exists, and StoreError if the directory or the lock file
    cannot be created.
    """
    path = state_dir / LOCK_FILE_NAME
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot create the state dir lock {path}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_pid(fd)
        os.close(fd)
        raise StateDirInUseError(str(state_dir), holder) from None
    except OSError as exc:
        os.close(fd)
        raise StoreError(f"cannot lock the state dir {state_dir}: {exc}") from exc
    try:
        _write_pid(fd, os.getpid())
    except OSError as exc:
        os.close(fd)  # closing the descriptor drops the lock
        raise StoreError(f"cannot write the state dir lock {path}: {exc}") from exc
    return StateDirLock(state_dir, fd)


def read_lock_holder(state_dir: Path) -> int | None:
    """The pid written in the lock file, or None if there is none (for messages only:
    a pid in the file does not mean the lock is held)."""
    try:
        fd = os.open(state_dir / LOCK_FILE_NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        return _read_pid(fd)
    finally:
        os.close(fd)


def _write_pid(fd: int, pid: int) -> None:
    # Overwrite in place, then cut the tail: a reader racing with us sees the
    # old pid or the new one on the first line, never an empty file.
    data = f"{pid}\n".encode()
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, len(data))
    os.fsync(fd)


def _read_pid(fd: int) -> int | None:
    try:
        first_line = os.pread(fd, 64, 0).split(b"\n", 1)[0].strip()
    except OSError:
        return None
    return int(first_line) if first_line.isdigit() else None
