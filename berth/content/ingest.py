"""Ingest directories: one per writer ref, held with ``flock`` for as long as a writer lives.

``ingest/<sha256(ref)>/`` holds ``ref`` (the ref, for humans) and ``data`` (the bytes written so
far). The lock is an exclusive ``flock`` on the directory itself, so a directory that nobody holds
locked belongs to a writer that died: :func:`remove_stale` may delete it at any time, even while
other processes use the store.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import time

from berth.errors import Unavailable


def ingest_name(ref: str) -> str:
    """The directory name for a ref (a hash, so any ref string is a safe file name)."""
    return hashlib.sha256(ref.encode("utf-8", "surrogateescape")).hexdigest()


def fsync_dir(path: str) -> None:
    """Make a directory's entries (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _same_inode(fd: int, path: str) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def acquire(path: str, timeout: float | None) -> int:
    """Create (if needed) and lock the ingest directory at path; return the locked dir fd.

    Waits while another writer holds the same ref; raises Unavailable after timeout seconds.
    The lock is re-checked against the path so a directory removed by its previous holder is
    never used.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.002
    while True:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # removed between mkdir and open: try again
        try:
            if _try_lock(fd):
                if _same_inode(fd, path):
                    return fd
                os.close(fd)  # we locked a directory that its holder removed: start over
                continue
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        if deadline is not None and time.monotonic() >= deadline:
            raise Unavailable(f"ingest {os.path.basename(path)} is locked by another writer")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def release(path: str, fd: int, *, remove: bool) -> None:
    """Remove the ingest directory (if asked) while still holding its lock, then unlock."""
    try:
        if remove:
            shutil.rmtree(path, ignore_errors=True)
    finally:
        os.close(fd)


def remove_stale(ingest_root: str) -> int:
    """Remove every ingest directory that no live writer holds; return how many went."""
    removed = 0
    try:
        names = os.listdir(ingest_root)
    except FileNotFoundError:
        return 0
    for name in names:
        path = os.path.join(ingest_root, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        except OSError as e:
            if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            try:  # a file or symlink: nothing a writer makes, remove it
                os.unlink(path)
                removed += 1
            except FileNotFoundError:
                pass
            continue
        try:
            if not _try_lock(fd) or not _same_inode(fd, path):
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
        finally:
            os.close(fd)
    return removed
