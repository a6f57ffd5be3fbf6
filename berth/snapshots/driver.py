"""DirSnapshotter: the record keeping and directory staging every driver shares.

Layout: ``<root>/snapshots/<id>/fs`` (+ ``work/`` for overlay), where ``<id>`` is the SQLite
row id. A new snapshot is built in ``<root>/snapshots/.new-<pid>-<token>/`` outside any
transaction, then one transaction re-checks the names, inserts the row and renames the staged
directory to ``<id>``. A crash therefore leaves either a complete snapshot or a directory no
record knows, which ``cleanup()`` removes. Removal deletes the row first, then the directory.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Iterator

from berth.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from berth.metadata.db import Database
from berth.mount import Mount
from berth.snapshots import fsutil
from berth.snapshots.base import (
    ACTIVE,
    COMMITTED,
    VIEW,
    SnapshotInfo,
    Usage,
    validate_key,
    validate_labels,
)
from berth.snapshots.records import Record, Records
from berth.sys import linux

log = logging.getLogger(__name__)

_STAGE = ".new-"
_TRASH = ".rm-"


class DirSnapshotter:
    """Base class of the overlay, vfs and btrfs drivers; subclasses fill in the hooks."""

    name = ""
    whiteout_mode = "delete"
    #: a child's directory holds the full tree (vfs, btrfs), so it survives losing its parent
    self_contained = True

    def __init__(self, root: str, db: Database) -> None:
        self.root = os.path.abspath(root)
        self.dir = os.path.join(self.root, "snapshots")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.db = db
        self.records = Records(db, self.name)
        self._lock = threading.RLock()
        self._staging: set[str] = set()

    # ---- hooks -------------------------------------------------------------------------------
    def _populate(self, stage: str, parent: Record | None, kind: str) -> None:
        """Create the snapshot's content in the staging dir (fs/, and what else the driver needs)."""
        raise NotImplementedError

    def _mounts(self, rec: Record) -> list[Mount]:
        raise NotImplementedError

    def _freeze(self, rec: Record) -> None:
        """Called after a commit has been recorded (btrfs: make the subvolume read-only)."""

    def _destroy(self, path: str) -> None:
        """Remove a snapshot directory (staged, trashed or stray)."""
        fsutil.remove_tree(path)

    # ---- paths -------------------------------------------------------------------------------
    def _path(self, sid: int) -> str:
        return os.path.join(self.dir, str(sid))

    def _fs(self, sid: int) -> str:
        return os.path.join(self.dir, str(sid), "fs")

    def _chain_dirs(self, sid: int) -> list[str]:
        return [self._fs(i) for i in self.records.chain_ids(sid)]

    # ---- Snapshotter API ---------------------------------------------------------------------
    def prepare(self, key: str, parent: str = "", labels: dict | None = None) -> list[Mount]:
        """Create an active (writable) snapshot on top of committed parent ("" = empty)."""
        return self._create(key, parent, labels, ACTIVE)

    def view(self, key: str, parent: str, labels: dict | None = None) -> list[Mount]:
        """Create a read-only view of committed parent."""
        validate_key(parent, "parent")
        return self._create(key, parent, labels, VIEW)

    def mounts(self, key: str) -> list[Mount]:
        """The mounts of an active snapshot or view (a committed one is described read-only)."""
        return self._mounts(self.records.get(validate_key(key)))

    def stat(self, key: str) -> SnapshotInfo:
        return self.records.get(validate_key(key)).info()

    def walk(self) -> Iterator[SnapshotInfo]:
        for rec in self.records.all():
            yield rec.info()

    def usage(self, key: str) -> Usage:
        """Bytes and inodes held in this snapshot's own directory (overlay: its upper dir only)."""
        rec = self.records.get(validate_key(key))
        return fsutil.disk_usage(self._fs(rec.id))

    def upper_dir(self, key: str) -> str:
        return self._fs(self.records.get(validate_key(key)).id)

    def lower_dirs(self, key: str) -> list[str]:
        rec = self.records.get(validate_key(key))
        return [self._fs(rec.parent_id)] if rec.parent_id is not None else []

    def commit(self, name: str, key: str, labels: dict | None = None) -> None:
        """Turn active snapshot key into committed snapshot name (labels None keeps the old ones)."""
        validate_key(name, "name")
        validate_key(key)
        new_labels = None if labels is None else validate_labels(labels)
        with self._lock:
            rec = self.records.get(key)
            if rec.kind != ACTIVE:
                raise InvalidArgument(
                    f"snapshot {key!r} is {rec.kind}; only an active snapshot can be committed")
            if name != key and self.records.find(name) is not None:
                raise AlreadyExists(f"snapshot {name!r} already exists")
            fsutil.syncfs(self._path(rec.id))
            with self.db.transaction():
                again = self.records.find(key)
                if again is None or again.id != rec.id or again.kind != ACTIVE:
                    raise NotFound(f"snapshot {key!r} changed while committing")
                if name != key and self.records.find(name) is not None:
                    raise AlreadyExists(f"snapshot {name!r} already exists")
                self.records.mark_committed(rec.id, name, rec.labels if new_labels is None else new_labels)
            self._freeze(self.records.get(name))

    def remove(self, key: str) -> None:
        """Remove a snapshot; Conflict if other snapshots have it as parent."""
        validate_key(key)
        with self._lock:
            with self.db.transaction():
                rec = self.records.get(key)
                kids = self.records.children(rec.id)
                if kids:
                    raise Conflict(f"snapshot {key!r} has {len(kids)} child snapshot(s), e.g. {kids[0]!r}")
                self.records.delete(rec.id)
            path = self._path(rec.id)
            try:
                if os.path.lexists(path):
                    trash = os.path.join(self.dir, f"{_TRASH}{os.getpid()}-{secrets.token_hex(6)}")
                    os.rename(path, trash)
                    self._destroy(trash)
            except OSError as e:  # the record is gone; cleanup() removes the rest later
                log.warning("snapshot %s removed, but not its directory %s: %s", key, path, e)

    def cleanup(self) -> list[str]:
        """Drop records whose directory is gone and remove directories no record knows.

        Returns what was removed: record keys and directory paths. Meant for start-up (or under
        the engine's storage lock); staging dirs of other live processes are left alone.
        """
        removed: list[str] = []
        trash: list[str] = []
        with self._lock, self.db.transaction():
            recs = self.records.all()
            by_id = {r.id: r for r in recs}
            missing = [r for r in recs if not os.path.isdir(self._path(r.id))]
            drop: dict[int, Record] = {}
            for r in missing:
                drop[r.id] = r
            if not self.self_contained:  # an overlay child is useless without its lowers
                changed = True
                while changed:
                    changed = False
                    for r in recs:
                        if r.id not in drop and r.parent_id in drop:
                            drop[r.id] = r
                            changed = True
            # children first (the parent_id foreign key), by descending depth
            for sid in sorted(drop, key=lambda i: -len(self.records.chain_ids(i))):
                if self.self_contained:
                    self.records.detach_children(sid)
                self.records.delete(sid)
                removed.append(drop[sid].key)
            known = {str(i) for i in by_id if i not in drop}
            for entry in os.listdir(self.dir):
                if entry in known or self._busy_stage(entry):
                    continue
                path = os.path.join(self.dir, entry)
                dest = os.path.join(self.dir, f"{_TRASH}{os.getpid()}-{secrets.token_hex(6)}")
                if entry.startswith(_TRASH):
                    dest = path
                else:
                    os.rename(path, dest)
                trash.append(dest)
                removed.append(path)
        for path in trash:
            self._destroy(path)
        for rec in self.records.all():  # a crash between a commit's record and its freeze
            if rec.kind == COMMITTED:
                self._freeze(rec)
        return removed

    # ---- internals ---------------------------------------------------------------------------
    def _busy_stage(self, entry: str) -> bool:
        """True for a staging/trash dir that a live process (or this instance) is still using."""
        if entry in self._staging:
            return True
        for prefix in (_STAGE, _TRASH):
            if entry.startswith(prefix):
                pid_s = entry[len(prefix):].split("-", 1)[0]
                if pid_s.isdigit() and int(pid_s) != os.getpid() and linux.process_alive(int(pid_s), None):
                    return True
        return False

    def _create(self, key: str, parent: str, labels: dict | None, kind: str) -> list[Mount]:
        validate_key(key)
        labels = validate_labels(labels)
        if not isinstance(parent, str):
            raise InvalidArgument("parent must be a string")
        with self._lock:
            if self.records.find(key) is not None:
                raise AlreadyExists(f"snapshot {key!r} already exists")
            prec = self._parent(parent)
            name = f"{_STAGE}{os.getpid()}-{secrets.token_hex(6)}"
            stage = os.path.join(self.dir, name)
            final = ""
            self._staging.add(name)
            try:
                os.mkdir(stage, 0o700)
                self._populate(stage, prec, kind)
                with self.db.transaction():
                    if self.records.find(key) is not None:
                        raise AlreadyExists(f"snapshot {key!r} already exists")
                    again = self._parent(parent)
                    if prec is not None and (again is None or again.id != prec.id):
                        raise NotFound(f"parent snapshot {parent!r} changed while preparing {key!r}")
                    sid = self.records.insert(key, prec.id if prec else None, kind, labels)
                    final = self._path(sid)
                    if os.path.lexists(final):  # left by a crash in an earlier, rolled-back insert
                        self._destroy(final)
                    os.rename(stage, final)
                fsutil.fsync_dir(self.dir)
            except BaseException:
                for p in (stage, final):
                    if p and os.path.lexists(p) and (p == stage or self.records.find(key) is None):
                        self._destroy(p)
                raise
            finally:
                self._staging.discard(name)
            return self._mounts(self.records.get(key))

    def _parent(self, parent: str) -> Record | None:
        if not parent:
            return None
        prec = self.records.find(parent)
        if prec is None:
            raise NotFound(f"parent snapshot {parent!r} not found")
        if prec.kind != COMMITTED:
            raise InvalidArgument(f"parent snapshot {parent!r} is {prec.kind}, not committed")
        return prec
