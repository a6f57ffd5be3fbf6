"""Snapshotters: overlay, btrfs and vfs storage drivers behind one Snapshotter protocol."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from berth.errors import InvalidArgument
from berth.snapshots.base import SnapshotInfo, Snapshotter, Usage

if TYPE_CHECKING:
    from berth.metadata.db import Database

__all__ = ["DRIVERS", "SnapshotInfo", "Snapshotter", "Usage", "open_snapshotter", "pick_driver"]

DRIVERS = ("btrfs", "overlay", "vfs")


def pick_driver(root: str) -> str:
    """The driver Docker would pick for root: btrfs on btrfs, else overlay if it mounts, else vfs."""
    from berth.snapshots import probe

    os.makedirs(root, mode=0o700, exist_ok=True)
    if probe.is_btrfs(root):
        return "btrfs"
    if probe.overlay_works(root):
        return "overlay"
    return "vfs"


def open_snapshotter(root: str, db: Database, driver: str = "") -> Snapshotter:
    """Open the snapshotter named driver ("" = pick by priority) with its data under root."""
    driver = driver or pick_driver(root)
    if driver == "overlay":
        from berth.snapshots.overlay import OverlaySnapshotter

        return OverlaySnapshotter(root, db)
    if driver == "vfs":
        from berth.snapshots.vfs import VfsSnapshotter

        return VfsSnapshotter(root, db)
    if driver == "btrfs":
        from berth.snapshots.btrfs import BtrfsSnapshotter

        return BtrfsSnapshotter(root, db)
    raise InvalidArgument(f"unknown storage driver {driver!r} (known: {', '.join(DRIVERS)})")
