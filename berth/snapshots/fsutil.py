"""Filesystem helpers the drivers share: statfs type, syncfs, usage walk, tree removal."""

from __future__ import annotations

import ctypes
import os
import shutil
import stat
from collections.abc import Callable

from berth.snapshots.base import Usage
from berth.sys import linux

BTRFS_SUPER_MAGIC = 0x9123683E
OVERLAYFS_SUPER_MAGIC = 0x794C7630
TMPFS_MAGIC = 0x01021994

_STATFS_SIZE = 120  # struct statfs on 64-bit Linux; f_type is the first (long) field


def fs_type(path: str) -> int:
    """statfs(2) f_type of the filesystem holding path (private wrapper; not in berth.sys.linux)."""
    buf = ctypes.create_string_buffer(_STATFS_SIZE)
    ret = linux.libc().statfs(os.fsencode(path), buf)
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"statfs: {os.strerror(err)}", path)
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def syncfs(path: str) -> None:
    """syncfs(2) on the filesystem holding path: make staged data durable before a record says so."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if linux.libc().syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs: {os.strerror(err)}", path)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    """fsync a directory so renames inside it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def disk_usage(path: str) -> Usage:
    """Apparent size of regular files and symlinks (each inode once) and the distinct inodes.

    Symlinks are never followed; mount points below path are not crossed.
    """
    seen: set[tuple[int, int]] = set()
    size = 0
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return Usage(0, 0)
    dev = top.st_dev
    stack = [path]
    seen.add((top.st_dev, top.st_ino))
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                ident = (st.st_dev, st.st_ino)
                if ident in seen:
                    continue
                seen.add(ident)
                if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                    size += st.st_size
                elif stat.S_ISDIR(st.st_mode) and st.st_dev == dev:
                    stack.append(e.path)
    return Usage(size=size, inodes=len(seen))


def remove_tree(path: str) -> None:
    """Remove a directory tree (as root, also mode-000 dirs such as overlay's work/work)."""
    if not os.path.lexists(path):
        return
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, onerror=_force_writable)
    else:
        os.unlink(path)


def _force_writable(func: Callable[[str], object], p: str, exc_info: tuple) -> None:
    parent = os.path.dirname(p)
    try:
        os.chmod(parent, 0o700)
        func(p)
    except FileNotFoundError:
        pass
    except OSError:
        raise exc_info[1] from None
