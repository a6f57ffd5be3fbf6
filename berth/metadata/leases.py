"""Leases: records that keep resources (blobs, snapshots, images) safe from GC during an operation.

A pull, unpack or build creates a lease, adds every blob digest and snapshot key it makes *before*
making it, and deletes the lease once the result is reachable from a root (an image record, a
container). A lease may expire, so one left behind by a crashed process stops protecting things.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from berth.errors import AlreadyExists, InvalidArgument, NotFound
from berth.metadata.db import Database
from berth.oci.digest import validate

CONTENT = "content"    # ref: a blob digest
SNAPSHOT = "snapshot"  # ref: a snapshot key or name
IMAGE = "image"        # ref: an image name or ID
KINDS = (CONTENT, SNAPSHOT, IMAGE)

DEFAULT_EXPIRY = 24 * 3600.0  # the lease() context manager's default

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/+-]{0,254}$")
_MAX_REF = 4096

MIGRATIONS = [
    """
    CREATE TABLE leases (
        id TEXT PRIMARY KEY,
        created REAL NOT NULL,
        expires REAL,
        labels TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE lease_resources (
        lease_id TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        ref TEXT NOT NULL,
        PRIMARY KEY (lease_id, kind, ref)
    );
    CREATE INDEX lease_resources_by_ref ON lease_resources(kind, ref)
    """,
]


@dataclass
class Lease:
    """One lease; ``add``/``remove`` act on its resources through the Leases it came from."""

    id: str
    created: float
    expires: float | None = None
    labels: dict = field(default_factory=dict)
    _leases: Leases | None = field(default=None, repr=False, compare=False)

    def add(self, kind: str, ref: str) -> None:
        self._owner().add_resource(self.id, kind, ref)

    def remove(self, kind: str, ref: str) -> None:
        self._owner().remove_resource(self.id, kind, ref)

    def _owner(self) -> Leases:
        if self._leases is None:
            raise InvalidArgument(f"lease {self.id} is not bound to a lease store")
        return self._leases


class Leases:
    """The lease table in the shared metadata database."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        db.migrate("leases", MIGRATIONS)

    def create(self, id: str | None = None, expires_in: float | None = None,
               labels: dict | None = None) -> Lease:
        """A new lease (a random id if none); AlreadyExists if id is taken by a live lease."""
        lease_id = id if id is not None else "lease-" + secrets.token_hex(8)
        if not isinstance(lease_id, str) or not _ID_RE.match(lease_id):
            raise InvalidArgument(f"invalid lease id: {lease_id!r}")
        if expires_in is not None and not (isinstance(expires_in, (int, float)) and expires_in > 0):
            raise InvalidArgument(f"invalid lease expiry: {expires_in!r}")
        labels = dict(labels or {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise InvalidArgument("lease labels must map strings to strings")
        now = self.clock()
        expires = now + expires_in if expires_in is not None else None
        with self.db.transaction() as conn:
            row = conn.execute("SELECT expires FROM leases WHERE id=?", (lease_id,)).fetchone()
            if row is not None:
                if not self._expired(row["expires"], now):
                    raise AlreadyExists(f"lease {lease_id} already exists")
                conn.execute("DELETE FROM leases WHERE id=?", (lease_id,))
            conn.execute("INSERT INTO leases(id, created, expires, labels) VALUES (?, ?, ?, ?)",
                         (lease_id, now, expires, json.dumps(labels, sort_keys=True)))
        return Lease(lease_id, now, expires, labels, self)

    def get(self, lease_id: str) -> Lease:
        """A live lease; NotFound if it does not exist or has expired."""
        row = self.db.query_one("SELECT * FROM leases WHERE id=?", (lease_id,))
        if row is None or self._expired(row["expires"], self.clock()):
            raise NotFound(f"lease {lease_id} not found")
        return self._lease(row)

    def list(self) -> list[Lease]:
        """Every live lease, oldest first."""
        now = self.clock()
        rows = self.db.query("SELECT * FROM leases ORDER BY created, id")
        return [self._lease(r) for r in rows if not self._expired(r["expires"], now)]

    def delete(self, lease_id: str) -> None:
        """Drop a lease and what it holds; NotFound if missing."""
        with self.db.transaction() as conn:
            if conn.execute("DELETE FROM leases WHERE id=?", (lease_id,)).rowcount == 0:
                raise NotFound(f"lease {lease_id} not found")

    def add_resource(self, lease_id: str, kind: str, ref: str) -> None:
        """Protect (kind, ref) while the lease lives; adding twice is a no-op."""
        _check_resource(kind, ref)
        with self.db.transaction() as conn:
            row = conn.execute("SELECT expires FROM leases WHERE id=?", (lease_id,)).fetchone()
            if row is None or self._expired(row["expires"], self.clock()):
                raise NotFound(f"lease {lease_id} not found")
            conn.execute("INSERT OR IGNORE INTO lease_resources(lease_id, kind, ref) VALUES (?, ?, ?)",
                         (lease_id, kind, ref))

    def remove_resource(self, lease_id: str, kind: str, ref: str) -> None:
        """Stop protecting (kind, ref) under this lease (a no-op if it was not held)."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM lease_resources WHERE lease_id=? AND kind=? AND ref=?",
                         (lease_id, kind, ref))

    def lease_resources(self, lease_id: str) -> set[tuple[str, str]]:
        """What one lease holds (NotFound if the lease is missing or expired)."""
        self.get(lease_id)
        rows = self.db.query("SELECT kind, ref FROM lease_resources WHERE lease_id=?", (lease_id,))
        return {(r["kind"], r["ref"]) for r in rows}

    def resources(self) -> set[tuple[str, str]]:
        """(kind, ref) held by every live (unexpired) lease."""
        rows = self.db.query(
            "SELECT DISTINCT r.kind, r.ref FROM lease_resources r JOIN leases l ON l.id = r.lease_id"
            " WHERE l.expires IS NULL OR l.expires > ?", (self.clock(),))
        return {(r["kind"], r["ref"]) for r in rows}

    def expire(self) -> list[str]:
        """Delete expired leases; return their ids."""
        with self.db.transaction() as conn:
            rows = conn.execute("SELECT id FROM leases WHERE expires IS NOT NULL AND expires <= ?",
                                (self.clock(),)).fetchall()
            ids = [r["id"] for r in rows]
            conn.executemany("DELETE FROM leases WHERE id=?", [(i,) for i in ids])
        return ids

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _expired(expires: float | None, now: float) -> bool:
        return expires is not None and expires <= now

    def _lease(self, row) -> Lease:
        return Lease(row["id"], row["created"], row["expires"], json.loads(row["labels"]), self)


def _check_resource(kind: str, ref: str) -> None:
    if kind not in KINDS:
        raise InvalidArgument(f"unknown lease resource kind {kind!r} (one of {', '.join(KINDS)})")
    if not isinstance(ref, str) or not ref or len(ref) > _MAX_REF or "\0" in ref:
        raise InvalidArgument(f"invalid {kind} reference for a lease: {ref!r}")
    if kind == CONTENT:
        validate(ref)


@contextmanager
def lease(db: Database | Leases, *, expires_in: float | None = DEFAULT_EXPIRY,
          labels: dict | None = None) -> Iterator[Lease]:
    """A lease for the duration of a with-block (deleted on exit, also on error).

    It expires after expires_in seconds anyway, so a crashed process does not pin resources.
    """
    leases = db if isinstance(db, Leases) else Leases(db)
    held = leases.create(expires_in=expires_in, labels=labels)
    try:
        yield held
    finally:
        try:
            leases.delete(held.id)
        except NotFound:
            pass
