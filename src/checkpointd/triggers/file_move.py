"""Moving a file after its run: into ``move_on_success`` / ``move_on_failure`` (blocking).

:func:`move_file` never overwrites (a taken name gets ``.N`` before its extension)
and never moves a newer version of the file than the one that fired. Within a file
system a hard link then unlink is the rename that refuses to overwrite; across file
systems it is copied into a name reserved with ``O_EXCL`` and the source removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterator

__all__ = ["move_file"]


def move_file(path: str, version: tuple[int, int], target_dir: str) -> str | None:
    """Move the file at ``path`` into ``target_dir`` (created if needed), keeping its name or
    adding ``.N`` before the extension when that name is taken; never overwrites.

    Returns the new path, or None when ``path`` is no longer the regular file of that
    ``(size, mtime_ns)`` version (it was replaced or removed: moving it would steal a newer
    version before it fires). Blocking: run it in a thread.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode) or (st.st_size, st.st_mtime_ns) != version:
        return None
    os.makedirs(target_dir, exist_ok=True)
    name = os.path.basename(path)
    for candidate in _free_names(name):
        dst = os.path.join(target_dir, candidate)
        try:
            # A hard link then unlink is a rename that refuses to overwrite.
            os.link(path, dst, follow_symlinks=False)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
                return _copy_into(path, target_dir, name)
            raise
        os.unlink(path)
        return dst
    raise AssertionError("unreachable: _free_names never ends")  # pragma: no cover


def _copy_into(src: str, target_dir: str, name: str) -> str:
    """Cross-filesystem move: reserve a free name with O_EXCL, copy, then remove the source."""
    # O_NOFOLLOW | O_NONBLOCK: if the path was swapped for a symlink or FIFO since lstat,
    # fail instead of following it or blocking the worker thread forever.
    src_fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(src_fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "no longer a regular file", src)
        for candidate in _free_names(name):
            dst = os.path.join(target_dir, candidate)
            try:
                dst_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            try:
                with os.fdopen(src_fd, "rb", closefd=False) as fin, os.fdopen(dst_fd, "wb") as out:
                    shutil.copyfileobj(fin, out, 1 << 20)
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(dst)
                raise
            os.unlink(src)
            return dst
    finally:
        os.close(src_fd)
    raise AssertionError("unreachable: _free_names never ends")  # pragma: no cover


def _free_names(name: str) -> Iterator[str]:
    """``name``, then ``stem.1.ext``, ``stem.2.ext``, … (the extension is everything after the
    first dot that is not leading, so ``a.csv.gz`` becomes ``a.1.csv.gz``)."""
    yield name
    dot = name.find(".", 1)
    stem, ext = (name, "") if dot < 0 else (name[:dot], name[dot:])
    n = 1
    while True:
        yield f"{stem}.{n}{ext}"
        n += 1
