"""Container records in SQLite: create, resolve (ID, name, unique prefix), update, list, delete.

The database is the truth for records; process state is refreshed from the kernel by the
engine (pid + start time) and stored here as a cache.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from berth.containers.state import Status
from berth.errors import Conflict, InvalidArgument, NotFound
from berth.metadata.db import Database

_NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_HEX_RE = re.compile(r"^[a-f0-9]+$")
MAX_NAME = 255

MIGRATIONS = [
    """
    CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created REAL NOT NULL,
        image_id TEXT NOT NULL,
        image_name TEXT NOT NULL,
        snapshot_key TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL,
        host_config TEXT NOT NULL,
        state TEXT NOT NULL,
        extra TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX containers_image ON containers(image_id)
    """,
]


@dataclass
class State:
    """The State part of a container (Docker's ContainerState, plus the pid's start time)."""

    status: str = Status.CREATED
    pid: int = 0
    pid_start: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    oom_killed: bool = False
    restart_count: int = 0
    paused: bool = False
    restarting: bool = False
    removal_in_progress: bool = False
    dead: bool = False
    manually_stopped: bool = False
    health: dict | None = None


@dataclass
class Container:
    """One container record."""

    id: str
    name: str  # without the leading "/"
    image_id: str
    image_name: str
    config: dict
    host_config: dict
    created: float = field(default_factory=time.time)
    snapshot_key: str = ""
    state: State = field(default_factory=State)
    extra: dict = field(default_factory=dict)  # network settings, log path, exec ids ...

    @property
    def short_id(self) -> str:
        return self.id[:12]


def new_id() -> str:
    """A random 64-hex ID whose 12-char prefix is not all digits (as Docker's stringid)."""
    while True:
        cid = secrets.token_hex(32)
        if not cid[:12].isdigit():
            return cid


def validate_name(name: str) -> str:
    """Return the name without its leading '/', or raise InvalidArgument."""
    if len(name) > MAX_NAME or not _NAME_RE.match(name):
        raise InvalidArgument(
            f"Invalid container name ({name[:64]}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name.lstrip("/")


class ContainerStore:
    """Container records in the shared metadata database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("containers", MIGRATIONS)

    # -- writes --------------------------------------------------------------------------
    def add(self, c: Container) -> Container:
        c.name = validate_name(c.name)
        with self.db.transaction() as conn:
            row = conn.execute("SELECT id FROM containers WHERE name=?", (c.name,)).fetchone()
            if row:
                raise Conflict(
                    f'Conflict. The container name "/{c.name}" is already in use by container '
                    f'"{row["id"]}". You have to remove (or rename) that container to be able to '
                    "reuse that name.")
            conn.execute(
                "INSERT INTO containers(id, name, created, image_id, image_name, snapshot_key,"
                " config, host_config, state, extra) VALUES(?,?,?,?,?,?,?,?,?,?)",
                (c.id, c.name, c.created, c.image_id, c.image_name, c.snapshot_key,
                 json.dumps(c.config), json.dumps(c.host_config), json.dumps(asdict(c.state)),
                 json.dumps(c.extra)))
        return c

    def save_state(self, c: Container) -> None:
        self.db.execute("UPDATE containers SET state=?, extra=? WHERE id=?",
                        (json.dumps(asdict(c.state)), json.dumps(c.extra), c.id))

    def save(self, c: Container) -> None:
        self.db.execute(
            "UPDATE containers SET config=?, host_config=?, state=?, extra=?, snapshot_key=? WHERE id=?",
            (json.dumps(c.config), json.dumps(c.host_config), json.dumps(asdict(c.state)),
             json.dumps(c.extra), c.snapshot_key, c.id))

    def rename(self, c: Container, new_name: str) -> None:
        new_name = validate_name(new_name)
        with self.db.transaction() as conn:
            row = conn.execute("SELECT id FROM containers WHERE name=?", (new_name,)).fetchone()
            if row and row["id"] != c.id:
                raise Conflict(f'Conflict. The container name "/{new_name}" is already in use by '
                               f'container "{row["id"]}". You have to remove (or rename) that '
                               "container to be able to reuse that name.")
            conn.execute("UPDATE containers SET name=? WHERE id=?", (new_name, c.id))
        c.name = new_name

    def delete(self, cid: str) -> None:
        self.db.execute("DELETE FROM containers WHERE id=?", (cid,))

    # -- reads ---------------------------------------------------------------------------
    def get(self, ref: str) -> Container:
        """Resolve a full ID, a name (with or without '/'), or a unique ID prefix."""
        if not ref:
            raise NotFound("No such container: ")
        row = self.db.query_one("SELECT * FROM containers WHERE id=?", (ref,))
        if row is None:
            row = self.db.query_one("SELECT * FROM containers WHERE name=?", (ref.lstrip("/"),))
        if row is None and _HEX_RE.match(ref):
            rows = self.db.query("SELECT * FROM containers WHERE id LIKE ? LIMIT 2", (ref + "%",))
            if len(rows) > 1:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
            row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"No such container: {ref}")
        return _from_row(row)

    def all(self) -> Iterator[Container]:
        for row in self.db.query("SELECT * FROM containers ORDER BY created DESC"):
            yield _from_row(row)

    def using_image(self, image_id: str) -> list[str]:
        return [r["id"] for r in self.db.query("SELECT id FROM containers WHERE image_id=?", (image_id,))]


def _from_row(row) -> Container:
    st = json.loads(row["state"])
    known = State.__dataclass_fields__
    return Container(
        id=row["id"], name=row["name"], image_id=row["image_id"], image_name=row["image_name"],
        config=json.loads(row["config"]), host_config=json.loads(row["host_config"]),
        created=row["created"], snapshot_key=row["snapshot_key"],
        state=State(**{k: v for k, v in st.items() if k in known}),
        extra=json.loads(row["extra"]))
