"""VolumeStore: the local driver's named and anonymous volumes, recorded in SQLite.

Layout as Docker: ``<root>/volumes/<name>/_data`` is the mountpoint. Creation is staged in
``<root>/volumes/.tmp-*`` and renamed into place in the same transaction that inserts the
record; removal deletes the record, renames the directory to ``.trash-*`` and then deletes it
(leftovers of a crash are swept at open). Whether a volume is in use comes from the engine's
``in_use(name) -> [container ids]`` callback plus the store's own mount references.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

from berth.errors import AlreadyExists, BerthError, Conflict, InvalidArgument, NotFound
from berth.metadata.db import Database
from berth.mount import Mount, unmount_all
from berth.volumes import filters as flt
from berth.volumes import local
from berth.volumes.fsutil import is_empty, mounts_below, remove_tree, tree_size
from berth.volumes.mountspec import ResolvedMount, create_bind_sources
from berth.volumes.names import ANONYMOUS_LABEL, new_anonymous_name, validate_name

MIGRATIONS = [
    """
    CREATE TABLE volumes (
        name TEXT PRIMARY KEY, driver TEXT NOT NULL, mountpoint TEXT NOT NULL,
        created TEXT NOT NULL, labels TEXT NOT NULL DEFAULT '{}', options TEXT,
        scope TEXT NOT NULL DEFAULT 'local');
    CREATE TABLE volume_refs (
        name TEXT NOT NULL REFERENCES volumes(name) ON DELETE CASCADE,
        ref TEXT NOT NULL, PRIMARY KEY (name, ref));
    CREATE INDEX volume_refs_ref ON volume_refs(ref);
    """,
    "ALTER TABLE volumes ADD COLUMN removing INTEGER NOT NULL DEFAULT 0",
]

DRIVER = "local"
InUse = Callable[[str], list[str]]


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class VolumeStore:
    """Volumes of the local driver under ``<root>/volumes``.

    ``in_use(name)`` (from the engine) lists the containers that reference a volume; a volume
    referenced by any container cannot be removed or pruned.
    """

    def __init__(self, db: Database, root: str, in_use: InUse | None = None) -> None:
        self.db = db
        self.dir = os.path.join(root, "volumes")
        self.in_use_cb = in_use
        db.migrate("volumes", MIGRATIONS)
        os.makedirs(self.dir, 0o701, exist_ok=True)
        self._recover()

    # ------------------------------------------------------------ helpers

    def _recover(self) -> None:
        """Finish what a crash interrupted: sweep staging and trash (unmounting a copy-up view
        left there), finish removals that had begun, and adopt a volume directory without a
        record (a create that died after its rename; Docker's local driver adopts them too).
        A record whose directory is missing is kept: its disk may simply not be there yet."""
        for row in self.db.query("SELECT * FROM volumes WHERE removing=1"):
            self._delete(row)
        entries = os.listdir(self.dir)
        for entry in entries:
            if entry.startswith((".tmp-", ".trash-")):
                path = os.path.join(self.dir, entry)
                for mp in reversed(mounts_below(path)):
                    unmount_all(mp)
                remove_tree(path)
        known = {r["name"] for r in self.db.query("SELECT name FROM volumes")}
        for name in entries:
            if name in known or not os.path.isdir(self.path(name)):
                continue
            try:
                validate_name(name)
            except InvalidArgument:
                continue
            self.db.execute(
                "INSERT OR IGNORE INTO volumes(name, driver, mountpoint, created, labels, options, scope)"
                " VALUES(?,?,?,?,?,?,?)",
                (name, DRIVER, self.path(name), _rfc3339(os.stat(self.path(name)).st_mtime), "{}", None,
                 "local"))

    def path(self, name: str) -> str:
        """The mountpoint (``_data``) of a volume name."""
        return os.path.join(self.dir, name, "_data")

    def _row(self, name: str) -> sqlite3.Row:
        row = self.db.query_one("SELECT * FROM volumes WHERE name=?", (name,))
        if row is None:
            raise NotFound(f"get {name}: no such volume")
        return row

    def users(self, name: str) -> list[str]:
        """Containers using the volume: the engine's references plus active mounts."""
        ids = list(self.in_use_cb(name)) if self.in_use_cb else []
        for r in self.db.query("SELECT ref FROM volume_refs WHERE name=? ORDER BY ref", (name,)):
            if r["ref"] not in ids:
                ids.append(r["ref"])
        return ids

    def _view(self, row: sqlite3.Row, usage: bool = False) -> dict:
        opts = json.loads(row["options"]) if row["options"] is not None else None
        v = {"CreatedAt": row["created"], "Driver": row["driver"], "Labels": json.loads(row["labels"]),
             "Mountpoint": row["mountpoint"], "Name": row["name"], "Options": opts, "Scope": row["scope"]}
        if usage:
            v["UsageData"] = {"Size": tree_size(row["mountpoint"]), "RefCount": len(self.users(row["name"]))}
        return v

    # ------------------------------------------------------------ CRUD

    def create(self, name: str | None = None, *, driver: str = DRIVER,
               labels: Mapping[str, str] | None = None, options: Mapping[str, str] | None = None,
               anonymous: bool = False) -> dict:
        """Create a volume (or return the existing one of that name); the Volume JSON.

        An empty name gets a random 64-hex name; ``anonymous`` also sets the
        ``com.docker.volume.anonymous`` label, as for volumes a container creates implicitly.
        """
        driver = driver or DRIVER
        if driver != DRIVER:
            raise NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" not found')
        if not name:
            name = new_anonymous_name()
        try:
            validate_name(name)
        except InvalidArgument as e:
            raise InvalidArgument(f"create {name}: {e.message}") from None
        labels = _str_map(labels, "labels")
        if anonymous:
            labels.setdefault(ANONYMOUS_LABEL, "")
        opts = local.validate_options(_str_map(options, "options")) if options is not None else None
        existing = self.db.query_one("SELECT * FROM volumes WHERE name=?", (name,))
        if existing is not None:
            return self._existing(existing, driver)
        stage = os.path.join(self.dir, f".tmp-{secrets.token_hex(8)}")
        os.mkdir(stage, 0o701)
        try:
            os.mkdir(os.path.join(stage, "_data"), 0o755)
            final = os.path.join(self.dir, name)
            with self.db.transaction() as conn:
                try:
                    conn.execute(
                        "INSERT INTO volumes(name, driver, mountpoint, created, labels, options, scope)"
                        " VALUES(?,?,?,?,?,?,?)",
                        (name, driver, self.path(name), _rfc3339(time.time()), json.dumps(labels),
                         json.dumps(opts) if opts is not None else None, "local"))
                except sqlite3.IntegrityError:
                    raise AlreadyExists(f"volume {name} already exists") from None
                if os.path.lexists(final):
                    raise Conflict(f"create {name}: {final} exists without a volume record")
                os.rename(stage, final)
        except AlreadyExists:
            remove_tree(stage)
            return self._existing(self._row(name), driver)
        except BaseException:
            remove_tree(stage)
            raise
        return self.inspect(name)

    def _existing(self, row: sqlite3.Row, driver: str) -> dict:
        if row["driver"] != driver:
            raise Conflict(f"create {row['name']}: volume name must be unique")
        return self._view(row)

    def inspect(self, name: str, *, usage: bool = False) -> dict:
        """The Volume JSON of name; NotFound("get <name>: no such volume")."""
        return self._view(self._row(name), usage)

    def exists(self, name: str) -> bool:
        return self.db.query_one("SELECT 1 FROM volumes WHERE name=?", (name,)) is not None

    def list(self, filters: Mapping | str | None = None, *, usage: bool = False) -> list[dict]:
        """Volumes matching the filters ``name``, ``label``, ``dangling``, ``driver``, by name."""
        f = flt.normalize(filters, flt.LIST_FILTERS)
        dangling = flt.parse_bool(f, "dangling")
        out = []
        for row in self.db.query("SELECT * FROM volumes ORDER BY name"):
            labels = json.loads(row["labels"])
            if "name" in f and not flt.match_name(row["name"], f["name"]):
                continue
            if "driver" in f and row["driver"] not in f["driver"]:
                continue
            if "label" in f and not flt.match_labels(labels, f["label"]):
                continue
            if dangling is not None and bool(self.users(row["name"])) == dangling:
                continue
            out.append(self._view(row, usage))
        return out

    def remove(self, name: str, *, force: bool = False) -> None:
        """Remove a volume; Conflict if a container uses it; a missing one is fine with force."""
        row = self.db.query_one("SELECT * FROM volumes WHERE name=?", (name,))
        if row is None:
            if force:
                return
            raise NotFound(f"get {name}: no such volume")
        users = self.users(name)
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        self._delete(row)

    def _delete(self, row: sqlite3.Row) -> None:
        # mark, move the directory out of the way, drop the record, delete the data; a crash
        # at any point is finished by _recover
        name = row["name"]
        local.unmount_device(row["mountpoint"])
        left = mounts_below(os.path.join(self.dir, name))
        if left:
            raise Conflict(f"remove {name}: a mount is still in place there: {left[0]}")
        self.db.execute("UPDATE volumes SET removing=1 WHERE name=?", (name,))
        trash = os.path.join(self.dir, f".trash-{secrets.token_hex(8)}")
        try:
            os.rename(os.path.join(self.dir, name), trash)
        except FileNotFoundError:
            trash = ""
        self.db.execute("DELETE FROM volumes WHERE name=?", (name,))
        if trash:
            remove_tree(trash)

    def prune(self, filters: Mapping | str | None = None) -> dict:
        """Remove unused volumes: anonymous ones only, or every unused one with ``all=true``;
        ``label`` / ``label!`` narrow it. ``{"VolumesDeleted": [...], "SpaceReclaimed": n}``."""
        f = flt.normalize(filters, flt.PRUNE_FILTERS)
        everything = bool(flt.parse_bool(f, "all"))
        deleted, reclaimed = [], 0
        for row in self.db.query("SELECT * FROM volumes ORDER BY name"):
            labels = json.loads(row["labels"])
            if not everything and ANONYMOUS_LABEL not in labels:
                continue
            if "label" in f and not flt.match_labels(labels, f["label"]):
                continue
            if "label!" in f and not flt.match_no_labels(labels, f["label!"]):
                continue
            if self.users(row["name"]):
                continue
            size = tree_size(row["mountpoint"])
            try:
                self._delete(row)
            except (OSError, BerthError):
                continue  # keep pruning the others, as Docker does
            deleted.append(row["name"])
            reclaimed += size
        return {"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}

    # ------------------------------------------------------------ container life cycle

    def prepare(self, mounts: Iterable[ResolvedMount]) -> list[ResolvedMount]:
        """Create the volumes a new container's mounts name (anonymous ones get a fresh name)
        and missing ``-v`` bind sources; returns the mounts with ``source`` filled in.

        On error the volumes and directories created by this call are removed again.
        """
        created: list[str] = []
        made_dirs: list[str] = []
        out: list[ResolvedMount] = []
        try:
            for m in mounts:
                if m.type != "volume":
                    if m.type == "bind":
                        made_dirs += create_bind_sources([m])
                    out.append(m)
                    continue
                name = m.volume_name or new_anonymous_name()
                if not self.exists(name):
                    self.create(name, driver=m.driver or DRIVER, labels=m.labels,
                                options=m.driver_options or None, anonymous=m.anonymous)
                    created.append(name)
                else:
                    self._existing(self._row(name), m.driver or DRIVER)
                out.append(replace(m, volume_name=name, source=self.path(name), driver=m.driver or DRIVER))
        except BaseException:
            for name in reversed(created):
                self._delete(self._row(name))
            for d in reversed(made_dirs):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            raise
        return out

    def mount(self, name: str, ref: str) -> str:
        """Take a reference for ref (a container id); mounts a device volume on first use.
        Returns the mountpoint."""
        row = self._row(name)
        opts = json.loads(row["options"]) if row["options"] else None
        with self.db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO volume_refs(name, ref) VALUES(?,?)", (name, ref))
            if opts and local.needs_mount(opts) and not _mounted(row["mountpoint"]):
                local.mount_device(opts, row["mountpoint"])
        return row["mountpoint"]

    def unmount(self, name: str, ref: str) -> None:
        """Drop ref's reference; unmounts a device volume after its last user."""
        row = self.db.query_one("SELECT * FROM volumes WHERE name=?", (name,))
        if row is None:
            return
        opts = json.loads(row["options"]) if row["options"] else None
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM volume_refs WHERE name=? AND ref=?", (name, ref))
            left = conn.execute("SELECT COUNT(*) FROM volume_refs WHERE name=?", (name,)).fetchone()[0]
            if left == 0 and local.needs_mount(opts):
                local.unmount_device(row["mountpoint"])

    def attach(self, mounts: Iterable[ResolvedMount], container_id: str,
               rootfs: str | int | None = None, *, rootfs_mounts: list[Mount] | None = None) -> list[str]:
        """Mount a starting container's volumes and copy the image's content into the empty
        ones whose mount allows it; returns the names of the volumes that were filled.

        The image content comes from ``rootfs`` (a host path or directory fd) or, when that is
        None, from a read-only view of the snapshot's ``rootfs_mounts``, mounted only when
        some volume may need it.
        """
        mounts = list(mounts)
        if rootfs is None and rootfs_mounts and any(self._may_copy(m) for m in mounts):
            from berth.volumes.rootview import mounted_view

            with mounted_view(rootfs_mounts, os.path.join(self.dir, ".tmp-views")) as root:
                return self._attach(mounts, container_id, root)
        return self._attach(mounts, container_id, rootfs)

    def _may_copy(self, m: ResolvedMount) -> bool:
        if m.type != "volume" or not m.copy_up:
            return False
        row = self._row(m.volume_name)
        return local.needs_mount(json.loads(row["options"]) if row["options"] else None) or \
            is_empty(row["mountpoint"])

    def _attach(self, mounts: list[ResolvedMount], container_id: str, rootfs: str | int | None) -> list[str]:
        from berth.volumes.copyup import copy_up

        done: list[str] = []
        filled: list[str] = []
        try:
            for m in mounts:
                if m.type != "volume":
                    continue
                path = self.mount(m.volume_name, container_id)
                done.append(m.volume_name)
                if m.copy_up and rootfs is not None and is_empty(path):
                    try:
                        if copy_up(rootfs, m.destination, path):
                            filled.append(m.volume_name)
                    except OSError as e:
                        raise BerthError(
                            f"failed to copy image data into volume {m.volume_name}: {e}") from None
        except BaseException:
            for name in reversed(done):
                self.unmount(name, container_id)
            raise
        return filled

    def detach(self, mounts: Iterable[ResolvedMount] | None, container_id: str) -> None:
        """Release a stopped container's references (all of them when mounts is None)."""
        if mounts is None:
            names = [r["name"] for r in self.db.query("SELECT name FROM volume_refs WHERE ref=?",
                                                      (container_id,))]
        else:
            names = [m.volume_name for m in mounts if m.type == "volume"]
        for name in names:
            self.unmount(name, container_id)

    def remove_anonymous(self, mounts: Iterable[ResolvedMount], container_id: str = "") -> list[str]:
        """``rm -v`` / ``--rm``: remove the container's anonymous volumes that nothing else uses.

        Named volumes are kept; volumes still used by other containers are skipped.
        Returns the names removed.
        """
        if container_id:
            self.detach(None, container_id)
        removed = []
        for m in mounts:
            if m.type != "volume" or not m.volume_name:
                continue
            row = self.db.query_one("SELECT * FROM volumes WHERE name=?", (m.volume_name,))
            if row is None or ANONYMOUS_LABEL not in json.loads(row["labels"]):
                continue
            if [c for c in self.users(m.volume_name) if c != container_id]:
                continue
            self._delete(row)
            removed.append(m.volume_name)
        return removed


def _str_map(value: object, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"invalid {what}: must be a map of strings")
    return {str(k): str(v) for k, v in value.items()}


def _mounted(path: str) -> bool:
    from berth.mount import is_mountpoint

    return is_mountpoint(path)
