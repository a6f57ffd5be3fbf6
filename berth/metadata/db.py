"""SQLite (WAL) database shared by the stores; each component owns its tables and migrations.

A component calls ``db.migrate("snapshots", [sql_v1, sql_v2, ...])`` at open; the
``schema_versions`` table records how far each component's schema has been brought, and every
migration step runs in one transaction with its version bump.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager


class Database:
    """One SQLite file; a connection per thread; explicit transactions."""

    def __init__(self, path: str, *, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._local = threading.local()
        conn = self.conn
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions ("
            " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection (autocommit mode; use transaction() for changes)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            self._local.depth = 0
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (or ROLLBACK on error); nested calls join the outer one."""
        conn = self.conn
        if self._local.depth:
            self._local.depth += 1
            try:
                yield conn
            finally:
                self._local.depth -= 1
            return
        conn.execute("BEGIN IMMEDIATE")
        self._local.depth = 1
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")
        finally:
            self._local.depth = 0

    def execute(self, sql: str, params: Sequence | dict = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def query(self, sql: str, params: Sequence | dict = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Sequence | dict = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    def version(self, component: str) -> int:
        row = self.query_one("SELECT version FROM schema_versions WHERE component=?", (component,))
        return int(row["version"]) if row else 0

    def migrate(self, component: str, migrations: Sequence[str]) -> int:
        """Bring component's schema to len(migrations); each step is one transaction."""
        for target in range(1, len(migrations) + 1):
            with self.transaction() as conn:
                current = self.version(component)
                if current >= target:
                    continue
                for stmt in _split_sql(migrations[target - 1]):
                    conn.execute(stmt)
                conn.execute(
                    "INSERT INTO schema_versions(component, version) VALUES(?, ?)"
                    " ON CONFLICT(component) DO UPDATE SET version=excluded.version",
                    (component, target),
                )
        return self.version(component)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
