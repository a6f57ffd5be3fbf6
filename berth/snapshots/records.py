"""Snapshot records in SQLite: one row per snapshot, its integer id names its directory."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field

from berth.errors import NotFound
from berth.metadata.db import Database
from berth.snapshots.base import SnapshotInfo

MIGRATIONS = [
    """
    CREATE TABLE snapshots (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        driver TEXT NOT NULL,
        key TEXT NOT NULL,
        parent_id INTEGER REFERENCES snapshots(id),
        kind TEXT NOT NULL CHECK (kind IN ('active', 'committed', 'view')),
        created REAL NOT NULL,
        updated REAL NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',
        UNIQUE (driver, key)
    );
    CREATE INDEX snapshots_parent ON snapshots(parent_id);
    """,
]

_SELECT = (
    "SELECT s.id, s.key, s.parent_id, COALESCE(p.key, '') AS parent, s.kind, s.created, s.updated,"
    " s.labels FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id"
)


@dataclass
class Record:
    """One snapshot row; id is the short id that names the snapshot's directory."""

    id: int
    key: str
    parent_id: int | None
    parent: str
    kind: str
    created: float
    updated: float
    labels: dict = field(default_factory=dict)

    def info(self) -> SnapshotInfo:
        return SnapshotInfo(key=self.key, parent=self.parent, kind=self.kind, created=self.created,
                            updated=self.updated, labels=dict(self.labels))


def _record(row: sqlite3.Row) -> Record:
    return Record(id=row["id"], key=row["key"], parent_id=row["parent_id"], parent=row["parent"],
                  kind=row["kind"], created=row["created"], updated=row["updated"],
                  labels=json.loads(row["labels"]))


class Records:
    """The rows of one driver (drivers share the table; each sees only its own rows)."""

    def __init__(self, db: Database, driver: str) -> None:
        self.db = db
        self.driver = driver
        db.migrate("snapshots", MIGRATIONS)

    def find(self, key: str) -> Record | None:
        row = self.db.query_one(_SELECT + " WHERE s.driver=? AND s.key=?", (self.driver, key))
        return _record(row) if row else None

    def get(self, key: str) -> Record:
        rec = self.find(key)
        if rec is None:
            raise NotFound(f"snapshot {key!r} not found")
        return rec

    def by_id(self, sid: int) -> Record | None:
        row = self.db.query_one(_SELECT + " WHERE s.driver=? AND s.id=?", (self.driver, sid))
        return _record(row) if row else None

    def all(self) -> list[Record]:
        return [_record(r) for r in self.db.query(_SELECT + " WHERE s.driver=? ORDER BY s.id",
                                                  (self.driver,))]

    def chain_ids(self, sid: int) -> list[int]:
        """sid and its ancestors' ids, sid first."""
        rows = self.db.query(
            "WITH RECURSIVE c(id, parent_id, depth) AS ("
            " SELECT id, parent_id, 0 FROM snapshots WHERE id=?"
            " UNION ALL SELECT s.id, s.parent_id, c.depth + 1 FROM snapshots s JOIN c ON s.id = c.parent_id)"
            " SELECT id FROM c ORDER BY depth", (sid,))
        return [r["id"] for r in rows]

    def children(self, sid: int) -> list[str]:
        return [r["key"] for r in self.db.query("SELECT key FROM snapshots WHERE parent_id=?", (sid,))]

    def insert(self, key: str, parent_id: int | None, kind: str, labels: dict) -> int:
        now = time.time()
        cur = self.db.execute(
            "INSERT INTO snapshots(driver, key, parent_id, kind, created, updated, labels)"
            " VALUES(?, ?, ?, ?, ?, ?, ?)",
            (self.driver, key, parent_id, kind, now, now, json.dumps(labels, sort_keys=True)))
        return int(cur.lastrowid)

    def mark_committed(self, sid: int, name: str, labels: dict) -> None:
        self.db.execute(
            "UPDATE snapshots SET key=?, kind='committed', updated=?, labels=? WHERE id=?",
            (name, time.time(), json.dumps(labels, sort_keys=True), sid))

    def delete(self, sid: int) -> None:
        self.db.execute("DELETE FROM snapshots WHERE id=?", (sid,))

    def detach_children(self, sid: int) -> None:
        self.db.execute("UPDATE snapshots SET parent_id=NULL, updated=? WHERE parent_id=?",
                        (time.time(), sid))
