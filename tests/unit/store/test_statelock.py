"""The state-dir lock: one holder at a time, a useful pid in the error, stale files taken over.

(Holders in other processes, and a holder killed with SIGKILL, are covered in
tests/integration/test_store_crash.py.)
"""

from __future__ import annotations

import os

import pytest

from checkpointd.errors import StateDirInUseError, StoreError
from checkpointd.store.statelock import (
    LOCK_FILE_NAME,
    acquire_state_dir,
    read_lock_holder,
)


def test_acquiring_creates_the_dir_and_records_our_pid(tmp_path):
    state_dir = tmp_path / "a" / "state"

    lock = acquire_state_dir(state_dir)

    assert lock.held
    assert (state_dir / LOCK_FILE_NAME).read_text() == f"{os.getpid()}\n"
    assert read_lock_holder(state_dir) == os.getpid()
    lock.release()


def test_a_second_holder_is_refused_with_the_holders_pid(tmp_path):
    # flock locks belong to an open file description, so even a second
    # attempt from this same process conflicts: that is what we test here.
    with acquire_state_dir(tmp_path), pytest.raises(StateDirInUseError) as caught:
        acquire_state_dir(tmp_path)

    assert caught.value.pid == os.getpid()
    assert caught.value.state_dir == str(tmp_path)
    assert f"state dir {tmp_path} in use by pid {os.getpid()}" in str(caught.value)
    assert isinstance(caught.value, StoreError)


def test_the_dir_can_be_taken_again_after_release(tmp_path):
    first = acquire_state_dir(tmp_path)
    first.release()
    first.release()  # a second release is harmless

    second = acquire_state_dir(tmp_path)

    assert not first.held
    assert second.held
    second.release()


def test_a_stale_lock_file_of_a_dead_process_is_taken_over(tmp_path):
    # A crashed daemon leaves its pid in the file but, being dead, no lock.
    (tmp_path / LOCK_FILE_NAME).write_text("4194303999\nleftover junk\n")

    with acquire_state_dir(tmp_path):
        assert (tmp_path / LOCK_FILE_NAME).read_text() == f"{os.getpid()}\n"


def test_an_unreadable_pid_still_gives_a_clear_error(tmp_path):
    with acquire_state_dir(tmp_path):
        (tmp_path / LOCK_FILE_NAME).write_text("not a pid")
        with pytest.raises(StateDirInUseError) as caught:
            acquire_state_dir(tmp_path)

    assert caught.value.pid is None
    assert "in use by another process" in str(caught.value)


def test_a_state_dir_that_cannot_be_created_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")

    with pytest.raises(StoreError, match="cannot create the state dir lock"):
        acquire_state_dir(blocker / "state")


def test_read_lock_holder_without_a_lock_file_is_none(tmp_path):
    assert read_lock_holder(tmp_path) is None
