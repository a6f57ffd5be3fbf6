"""btrfs: each snapshot is a subvolume; a child is a (writable or read-only) snapshot of its parent.

Used when the data root is on btrfs. Subvolumes are made with the btrfs ioctls directly
(create, snapshot, destroy, get/set read-only), so no ``btrfs`` binary is needed. A committed
snapshot's subvolume is made read-only. Mounts are bind mounts of the subvolume's directory.
"""

from __future__ import annotations

import fcntl
import os
import struct

from berth.errors import InvalidArgument
from berth.metadata.db import Database
from berth.mount import Mount
from berth.snapshots import fsutil
from berth.snapshots.base import ACTIVE, VIEW
from berth.snapshots.driver import DirSnapshotter
from berth.snapshots.records import Record

_VOL_ARGS_SIZE = 4096  # struct btrfs_ioctl_vol_args and _v2
_NAME_MAX = 4039


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (0x94 << 8) | nr


_IOW, _IOR = 1, 2
BTRFS_IOC_SUBVOL_CREATE = _ioc(_IOW, 14, _VOL_ARGS_SIZE)
BTRFS_IOC_SNAP_DESTROY = _ioc(_IOW, 15, _VOL_ARGS_SIZE)
BTRFS_IOC_SNAP_CREATE_V2 = _ioc(_IOW, 23, _VOL_ARGS_SIZE)
BTRFS_IOC_SUBVOL_GETFLAGS = _ioc(_IOR, 25, 8)
BTRFS_IOC_SUBVOL_SETFLAGS = _ioc(_IOW, 26, 8)
BTRFS_SUBVOL_RDONLY = 1 << 1
BTRFS_FIRST_FREE_OBJECTID = 256


def _split(path: str) -> tuple[int, bytes]:
    parent, name = os.path.split(os.path.abspath(path))
    bname = os.fsencode(name)
    if not bname or len(bname) > _NAME_MAX or b"/" in bname:
        raise InvalidArgument(f"invalid subvolume name: {name!r}")
    return os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), bname


def subvolume_create(path: str) -> None:
    """Create an empty subvolume at path."""
    dfd, name = _split(path)
    try:
        args = bytearray(_VOL_ARGS_SIZE)
        args[8:8 + len(name)] = name
        fcntl.ioctl(dfd, BTRFS_IOC_SUBVOL_CREATE, args)
    finally:
        os.close(dfd)


def subvolume_snapshot(src: str, dst: str, *, readonly: bool = False) -> None:
    """Snapshot subvolume src to dst (read-only if asked)."""
    sfd = os.open(src, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        dfd, name = _split(dst)
        try:
            args = bytearray(_VOL_ARGS_SIZE)
            struct.pack_into("=qQQ", args, 0, sfd, 0, BTRFS_SUBVOL_RDONLY if readonly else 0)
            args[56:56 + len(name)] = name
            fcntl.ioctl(dfd, BTRFS_IOC_SNAP_CREATE_V2, args)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def subvolume_delete(path: str) -> None:
    """Destroy the subvolume at path (its contents go with it)."""
    dfd, name = _split(path)
    try:
        args = bytearray(_VOL_ARGS_SIZE)
        args[8:8 + len(name)] = name
        fcntl.ioctl(dfd, BTRFS_IOC_SNAP_DESTROY, args)
    finally:
        os.close(dfd)


def subvolume_readonly(path: str, readonly: bool | None = None) -> bool:
    """Return (and, if readonly is given, first set) the subvolume's read-only flag."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        buf = bytearray(8)
        fcntl.ioctl(fd, BTRFS_IOC_SUBVOL_GETFLAGS, buf)
        flags = struct.unpack("=Q", buf)[0]
        if readonly is not None:
            flags = flags | BTRFS_SUBVOL_RDONLY if readonly else flags & ~BTRFS_SUBVOL_RDONLY
            fcntl.ioctl(fd, BTRFS_IOC_SUBVOL_SETFLAGS, bytearray(struct.pack("=Q", flags)))
        return bool(flags & BTRFS_SUBVOL_RDONLY)
    finally:
        os.close(fd)


def is_subvolume(path: str) -> bool:
    """True if path is the top directory of a btrfs subvolume."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return (os.path.isdir(path) and not os.path.islink(path) and st.st_ino == BTRFS_FIRST_FREE_OBJECTID
            and fsutil.fs_type(path) == fsutil.BTRFS_SUPER_MAGIC)


class BtrfsSnapshotter(DirSnapshotter):
    """Subvolume snapshots: cheap copies, whiteouts applied as deletes."""

    name = "btrfs"
    whiteout_mode = "delete"
    self_contained = True

    def __init__(self, root: str, db: Database) -> None:
        os.makedirs(root, mode=0o700, exist_ok=True)
        if fsutil.fs_type(root) != fsutil.BTRFS_SUPER_MAGIC:
            raise InvalidArgument(f"btrfs snapshotter needs a btrfs data root; {root} is not on btrfs")
        super().__init__(root, db)

    def _populate(self, stage: str, parent: Record | None, kind: str) -> None:
        fs = os.path.join(stage, "fs")
        if parent is None:
            subvolume_create(fs)
            os.chmod(fs, 0o755)
            return
        subvolume_snapshot(self._fs(parent.id), fs, readonly=kind == VIEW)

    def _freeze(self, rec: Record) -> None:
        subvolume_readonly(self._fs(rec.id), True)

    def _destroy(self, path: str) -> None:
        fs = os.path.join(path, "fs")
        if is_subvolume(fs):
            subvolume_delete(fs)
        fsutil.remove_tree(path)

    def _mounts(self, rec: Record) -> list[Mount]:
        mode = "rw" if rec.kind == ACTIVE else "ro"
        return [Mount("bind", self._fs(rec.id), ["bind", mode])]
