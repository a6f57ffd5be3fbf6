"""overlay: committed layers are overlayfs lower dirs, an active snapshot adds upper + work.

Directory names are the short SQLite ids (``<root>/snapshots/<id>/fs``), so a lowerdir list stays
short; when it still exceeds a page, ``berth.mount.mount_all`` uses the new mount API
(``fsconfig lowerdir+``, one layer per call), which mounts at least 128 layers.

A snapshot without a parent is a bind mount of its ``fs`` dir (overlayfs needs a lower dir), and a
read-only description of a single layer is a read-only bind mount (overlayfs refuses a single
lower dir without an upper dir).
"""

from __future__ import annotations

import os

from berth.mount import Mount
from berth.snapshots.base import ACTIVE
from berth.snapshots.driver import DirSnapshotter
from berth.snapshots.records import Record

# Keep every change inside the upper dir as plain files, whiteouts and opaque dirs, whatever the
# kernel's defaults: metacopy would leave data-less files in the upper dir and redirect_dir would
# record directory renames as xattrs; neither can be expressed in an OCI layer diff.
DIFFABLE_OPTIONS = ("index=off", "metacopy=off", "redirect_dir=off")


class OverlaySnapshotter(DirSnapshotter):
    """The default driver wherever the kernel can mount overlayfs on the data root."""

    name = "overlay"
    whiteout_mode = "overlay"
    self_contained = False

    def _populate(self, stage: str, parent: Record | None, kind: str) -> None:
        fs = os.path.join(stage, "fs")
        os.mkdir(fs, 0o755)
        if parent is not None:
            # the upper dir's own attributes are what the merged root shows: take the parent's
            st = os.stat(self._fs(parent.id))
            os.chown(fs, st.st_uid, st.st_gid)
            os.chmod(fs, st.st_mode & 0o7777)
        if kind == ACTIVE:
            os.mkdir(os.path.join(stage, "work"), 0o700)

    def _mounts(self, rec: Record) -> list[Mount]:
        if rec.kind == ACTIVE:
            upper = self._fs(rec.id)
            if rec.parent_id is None:
                return [Mount("bind", upper, ["bind", "rw"])]
            lowers = self._chain_dirs(rec.parent_id)
            return [Mount("overlay", "overlay", [
                *DIFFABLE_OPTIONS,
                "lowerdir=" + ":".join(lowers),
                f"upperdir={upper}",
                f"workdir={os.path.join(self._path(rec.id), 'work')}",
            ])]
        # view: the parent's layers; committed: its own layers
        top = rec.parent_id if rec.kind == "view" else rec.id
        if top is None:
            return [Mount("bind", self._fs(rec.id), ["bind", "ro"])]
        lowers = self._chain_dirs(top)
        if len(lowers) == 1:
            return [Mount("bind", lowers[0], ["bind", "ro"])]
        return [Mount("overlay", "overlay", ["ro", "index=off", "lowerdir=" + ":".join(lowers)])]

    def lower_dirs(self, key: str) -> list[str]:
        """The read-only dirs below key, top first: the whole parent chain."""
        rec = self.records.get(key)
        return self._chain_dirs(rec.parent_id) if rec.parent_id is not None else []
