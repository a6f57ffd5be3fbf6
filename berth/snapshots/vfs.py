"""vfs: every snapshot is a full copy of its parent; works on any filesystem.

The copy is ``cp -a --reflink=auto`` (host coreutils), which keeps ownership, modes, timestamps,
xattrs, hardlinks, device nodes and sparse files, and shares extents where the filesystem can.
Mounts are bind mounts of the snapshot's ``fs`` dir (read-only for views and committed snapshots).
"""

from __future__ import annotations

import os
import subprocess

from berth.errors import BerthError
from berth.mount import Mount
from berth.snapshots import fsutil
from berth.snapshots.base import ACTIVE
from berth.snapshots.driver import DirSnapshotter
from berth.snapshots.records import Record

CP = "/bin/cp"


def copy_tree(src: str, dst: str) -> None:
    """Copy directory src to (not yet existing) dst, preserving everything cp -a preserves."""
    proc = subprocess.run([CP, "-a", "--reflink=auto", "--no-target-directory", "--", src, dst],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise BerthError(f"copying snapshot {src} failed: {proc.stderr.strip()[:500]}")


class VfsSnapshotter(DirSnapshotter):
    """Full copies: slow and large, but needs nothing from the kernel."""

    name = "vfs"
    whiteout_mode = "delete"
    self_contained = True

    def _populate(self, stage: str, parent: Record | None, kind: str) -> None:
        fs = os.path.join(stage, "fs")
        if parent is None:
            os.mkdir(fs, 0o755)
            return
        copy_tree(self._fs(parent.id), fs)
        fsutil.syncfs(stage)

    def _mounts(self, rec: Record) -> list[Mount]:
        mode = "rw" if rec.kind == ACTIVE else "ro"
        return [Mount("bind", self._fs(rec.id), ["bind", mode])]
