"""The build cache: a key per instruction → the image that instruction produced.

key = sha256 over (parent image ID, the instruction text after substitution, the build args in
use, and for COPY/ADD a content hash of the sources with mode and ownership). The mapping lives in
SQLite (``db.migrate("build_cache", ...)``); an entry whose image is gone is a miss (and dropped).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

_MIGRATIONS = [
    """
    CREATE TABLE build_cache (
        key TEXT PRIMARY KEY,
        image_id TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE INDEX build_cache_by_image ON build_cache(image_id)
    """,
]


def cache_key(parent: str, text: str, args: Mapping[str, str] | None = None, content: str = "",
              extra: Mapping[str, Any] | None = None) -> str:
    """The cache key of one instruction applied on parent (an image ID, or "" for scratch)."""
    doc = {
        "v": 1,
        "parent": parent or "",
        "text": text,
        "args": sorted((args or {}).items()),
        "content": content,
        "extra": dict(sorted((extra or {}).items())),
    }
    return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


class BuildCache:
    """key → image ID, in the engine's metadata database."""

    def __init__(self, db: Any) -> None:
        self.db = db
        db.migrate("build_cache", _MIGRATIONS)

    def get(self, key: str) -> str | None:
        row = self.db.query_one("SELECT image_id FROM build_cache WHERE key=?", (key,))
        return row["image_id"] if row else None

    def put(self, key: str, image_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO build_cache(key, image_id, created) VALUES(?, ?, ?)",
                         (key, image_id, time.time()))

    def drop(self, key: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM build_cache WHERE key=?", (key,))

    def prune(self, until: float | None = None) -> int:
        """Forget every entry (or those created before ``until``, unix seconds); the images stay
        until they are removed. Returns how many."""
        with self.db.transaction() as conn:
            if until is None:
                return conn.execute("DELETE FROM build_cache").rowcount
            return conn.execute("DELETE FROM build_cache WHERE created < ?", (until,)).rowcount

    def image_ids(self) -> list[str]:
        return [r["image_id"] for r in self.db.query("SELECT DISTINCT image_id FROM build_cache")]

    def __len__(self) -> int:
        row = self.db.query_one("SELECT COUNT(*) AS n FROM build_cache")
        return int(row["n"]) if row else 0


def prune_cache(images: Any, db: Any, until: float | None = None) -> dict:
    """``docker builder prune``: forget the cache (the entries older than ``until`` when given) and
    remove the step images only it kept (untagged, unused by containers, no entry left, not the parent of
    another image); returns Docker's ``{"CachesDeleted": [...], "SpaceReclaimed": n}`` where
    CachesDeleted names every entry forgotten and SpaceReclaimed counts the images really removed."""
    from berth.errors import Conflict, NotFound

    cache = BuildCache(db)
    ids = cache.image_ids()
    cache.prune(until)
    still = set(cache.image_ids()) if until is not None else set()
    deleted: list[str] = []
    left = [iid for iid in ids if iid not in still]
    forgotten: list[str] = []   # as system df lists them: entries whose image has no name
    for iid in dict.fromkeys(left):
        try:
            img = images.get(iid)
        except NotFound:
            continue
        if not img.tags and not img.digests:
            forgotten.append(iid)
    progress = True
    while left and progress:  # leaves first: a step image with children (the next step) waits for them
        progress = False
        for iid in list(left):
            try:
                img = images.get(iid)
            except NotFound:
                left.remove(iid)
                continue
            if img.tags or img.digests or images.in_use(iid):
                left.remove(iid)
                continue
            if images.children(iid):
                continue
            try:
                images.remove(iid, prune=False)
            except (Conflict, NotFound):
                left.remove(iid)
                continue
            left.remove(iid)
            deleted.append(iid)
            progress = True
    reclaimed = 0
    if deleted:
        res = images.gc()
        reclaimed = int(getattr(res, "reclaimed_bytes", 0) or 0)
    return {"CachesDeleted": forgotten or None, "SpaceReclaimed": reclaimed}
