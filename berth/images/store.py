"""The image store: names (``repo:tag``) and repo digests → images; image ID = config digest.

Records live in SQLite (``db.migrate("images", ...)``); the bytes (manifests, configs, layers) live
in the content store and the unpacked layers are committed snapshots named by chain ID. Removal
follows Docker's rules (``rmi name`` of an image with several tags only untags) and returns
Docker's ``[{"Untagged": ...}, {"Deleted": ...}]`` items.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from berth.errors import Conflict, DataCorrupt, InvalidArgument, NotFound
from berth.oci import digest as _digest
from berth.oci import image as oci
from berth.oci import reference

if TYPE_CHECKING:
    from berth.content import ContentStore
    from berth.metadata.db import Database
    from berth.snapshots.base import Snapshotter

log = logging.getLogger("berth.images")

_MIGRATIONS = [
    """
    CREATE TABLE images (
        id TEXT PRIMARY KEY,
        manifest TEXT NOT NULL,
        manifest_digest TEXT NOT NULL,
        target TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL DEFAULT 0,
        added REAL NOT NULL,
        last_tag_time REAL NOT NULL DEFAULT 0
    );
    CREATE INDEX images_by_manifest ON images(manifest_digest);
    CREATE TABLE image_tags (
        name TEXT PRIMARY KEY,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        created REAL NOT NULL
    );
    CREATE INDEX image_tags_by_image ON image_tags(image_id);
    CREATE TABLE image_digests (
        repo TEXT NOT NULL,
        digest TEXT NOT NULL,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        PRIMARY KEY (repo, digest)
    );
    CREATE INDEX image_digests_by_image ON image_digests(image_id);
    CREATE TABLE image_layers (
        chain_id TEXT PRIMARY KEY,
        diff_id TEXT NOT NULL,
        size INTEGER NOT NULL
    )
    """,
    # 2: the parent image (Docker's Parent: the builder's previous step, a commit's base image)
    """
    ALTER TABLE images ADD COLUMN parent TEXT NOT NULL DEFAULT '';
    CREATE INDEX images_by_parent ON images(parent)
    """,
]

ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass
class Image:
    """One image record with its names."""

    id: str
    manifest: oci.Descriptor
    target: oci.Descriptor | None
    created: float
    added: float
    last_tag_time: float
    parent: str = ""                                   # the parent image ID ("" = none)
    tags: list[str] = field(default_factory=list)      # full names, docker.io/library/busybox:latest
    digests: list[str] = field(default_factory=list)   # full names, docker.io/library/busybox@sha256:...

    @property
    def repo_tags(self) -> list[str]:
        return sorted(reference.parse(t).familiar() for t in self.tags)

    @property
    def repo_digests(self) -> list[str]:
        return sorted(reference.parse(d).familiar() for d in self.digests)

    @property
    def short_id(self) -> str:
        return self.id[7:19]


def rfc3339(ts: float) -> str:
    """Docker's time format: RFC 3339 with nanoseconds trimmed, in UTC."""
    if ts <= 0:
        return ZERO_TIME
    s = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return s + "Z"


def parse_time(s: str) -> float:
    """Parse an RFC 3339 time (nanoseconds allowed); 0 for empty or unparsable."""
    if not s:
        return 0.0
    try:
        main, _, frac = s.replace("z", "Z").partition(".")
        tz = ""
        if frac:
            for i, ch in enumerate(frac):
                if not ch.isdigit():
                    frac, tz = frac[:i], frac[i:]
                    break
        else:
            for sep in ("Z", "+", "-"):
                idx = main.find(sep, 10)
                if idx != -1:
                    main, tz = main[:idx], main[idx:]
                    break
        tz = "+00:00" if tz in ("Z", "") else tz
        base = datetime.fromisoformat(main + tz).timestamp()
        return base + (float("0." + frac) if frac else 0.0)
    except ValueError:
        return 0.0


class ImageStore:
    """Image records over a content store and (optionally) a snapshotter.

    ``in_use(image_id)`` tells whether a container uses an image (the engine's callback);
    ``container_snapshots()`` lists the snapshot keys containers hold (roots for ``gc``).
    """

    def __init__(self, db: Database, content: ContentStore, snapshotter: Snapshotter | None = None, *,
                 in_use: Callable[[str], bool] | None = None,
                 container_snapshots: Callable[[], Iterable[str]] | None = None,
                 leases: Any = None) -> None:
        self.db = db
        self.content = content
        self.snapshotter = snapshotter
        self.in_use = in_use or (lambda _id: False)
        self.container_snapshots = container_snapshots
        if leases is None:
            from berth.metadata.leases import Leases

            leases = Leases(db)
        self.leases = leases
        db.migrate("images", _MIGRATIONS)

    # -- records ---------------------------------------------------------------------------
    def _row_to_image(self, row: Any) -> Image:
        target = json.loads(row["target"]) if row["target"] else None
        img = Image(id=row["id"], manifest=oci.Descriptor.from_dict(json.loads(row["manifest"])),
                    target=oci.Descriptor.from_dict(target) if target else None,
                    created=row["created"], added=row["added"], last_tag_time=row["last_tag_time"],
                    parent=row["parent"] or "")
        img.tags = sorted(r["name"] for r in self.db.query(
            "SELECT name FROM image_tags WHERE image_id=?", (img.id,)))
        img.digests = sorted(f"{r['repo']}@{r['digest']}" for r in self.db.query(
            "SELECT repo, digest FROM image_digests WHERE image_id=?", (img.id,)))
        return img

    def _by_id(self, image_id: str) -> Image | None:
        row = self.db.query_one("SELECT * FROM images WHERE id=?", (image_id,))
        return self._row_to_image(row) if row else None

    def all(self) -> list[Image]:
        return [self._row_to_image(r) for r in self.db.query("SELECT * FROM images ORDER BY created, id")]

    def read_manifest(self, image: Image) -> oci.Manifest:
        return oci.parse_manifest(self.content.read(image.manifest.digest, oci.MAX_MANIFEST_SIZE + 1),
                                  image.manifest.media_type)

    def read_config(self, image: Image) -> oci.ImageConfig:
        return oci.parse_config(self.content.read(image.id, oci.MAX_CONFIG_SIZE + 1))

    def add(self, manifest: oci.Descriptor, *, names: Iterable[str] = (), repo_digests: Iterable[str] = (),
            target: oci.Descriptor | None = None, parent: str | None = None) -> Image:
        """Record the image whose (platform) manifest is in the content store; tag it with names.

        ``target`` is what a name was resolved to if that was an index (kept as a GC root).
        ``parent`` is the image this one was made from (a build step's previous step, a commit's
        base): Docker's ``Parent``, which hides untagged parents from ``images`` and makes ``rmi``
        of the child prune them. It must be a known image; None or "" keeps what is recorded.
        Raises NotFound if the manifest or config blob is missing, InvalidArgument/DataCorrupt if
        they do not parse or disagree.
        """
        if manifest.media_type not in oci.MANIFEST_TYPES:
            raise InvalidArgument(f"not an image manifest: {manifest.media_type}")
        info = self.content.info(manifest.digest)
        if info.size != manifest.size:
            raise DataCorrupt(f"manifest {manifest.digest}: size {info.size} != descriptor {manifest.size}")
        m = oci.parse_manifest(self.content.read(manifest.digest, oci.MAX_MANIFEST_SIZE + 1),
                               manifest.media_type)
        cfg = oci.parse_config(self.content.read(m.config.digest, oci.MAX_CONFIG_SIZE + 1))
        oci.check_manifest_config(m, cfg)
        image_id = m.config.digest
        if parent:
            if parent == image_id or self._by_id(parent) is None:
                raise InvalidArgument(f"invalid parent image {parent!r} for {image_id}")
        parsed_names = [reference.parse(n) for n in names]
        for ref in parsed_names:
            if ref.digest:
                raise InvalidArgument(f"refusing to create a tag with a digest reference: {ref.familiar()}")
        parsed_digests = [reference.parse(d, default_tag=False) for d in repo_digests]
        now = time.time()
        mdesc = json.dumps(oci.Descriptor(manifest.media_type, manifest.digest, manifest.size,
                                          platform=manifest.platform).to_dict())
        tdesc = json.dumps(target.to_dict()) if target else ""
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO images(id, manifest, manifest_digest, target, created, added, last_tag_time,"
                " parent) VALUES(?, ?, ?, ?, ?, ?, 0, ?) ON CONFLICT(id) DO UPDATE SET"
                " manifest=excluded.manifest, manifest_digest=excluded.manifest_digest,"
                " target=CASE WHEN excluded.target != '' THEN excluded.target ELSE images.target END,"
                " parent=CASE WHEN excluded.parent != '' THEN excluded.parent ELSE images.parent END",
                (image_id, mdesc, manifest.digest, tdesc, parse_time(cfg.created), now, parent or ""))
            for ref in parsed_names:
                self._set_tag(conn, str(ref), image_id, now)
            for ref in parsed_digests:
                if not ref.digest:
                    raise InvalidArgument(f"repo digest without a digest: {ref}")
                conn.execute("INSERT OR REPLACE INTO image_digests(repo, digest, image_id) VALUES(?, ?, ?)",
                             (ref.name, ref.digest, image_id))
        return self._by_id(image_id)  # type: ignore[return-value]

    @staticmethod
    def _set_tag(conn: Any, name: str, image_id: str, now: float) -> None:
        conn.execute("INSERT INTO image_tags(name, image_id, created) VALUES(?, ?, ?)"
                     " ON CONFLICT(name) DO UPDATE SET image_id=excluded.image_id, created=excluded.created",
                     (name, image_id, now))
        conn.execute("UPDATE images SET last_tag_time=? WHERE id=?", (now, image_id))

    # -- lookup ----------------------------------------------------------------------------
    def get(self, ref_or_id: str) -> Image:
        """Resolve a name (``busybox``), ``name@digest``, a full ID or an unambiguous ID prefix.

        NotFound: "No such image: <ref>".
        """
        if not isinstance(ref_or_id, str) or not ref_or_id:
            raise NotFound("No such image: ")
        if _digest.is_digest(ref_or_id):
            img = self._by_id(ref_or_id)
            if img:
                return img
            raise NotFound(f"No such image: {ref_or_id}")
        try:
            ref = reference.parse(ref_or_id)
        except InvalidArgument:
            ref = None
        if ref is not None:
            if ref.digest:
                row = self.db.query_one("SELECT image_id FROM image_digests WHERE repo=? AND digest=?",
                                        (ref.name, ref.digest))
                if row is None:
                    # a manifest digest known for another repo name, or by manifest
                    row = self.db.query_one("SELECT id AS image_id FROM images WHERE manifest_digest=?",
                                            (ref.digest,))
                    if row is not None and ref.tag and not self._has_tag(str(ref.with_tag(ref.tag))):
                        row = None
            else:
                row = self.db.query_one("SELECT image_id FROM image_tags WHERE name=?", (str(ref),))
            if row is not None:
                return self._by_id(row["image_id"])  # type: ignore[return-value]
        if reference.looks_like_id(ref_or_id):
            prefix = ref_or_id[7:] if ref_or_id.startswith("sha256:") else ref_or_id
            rows = self.db.query("SELECT id FROM images WHERE id LIKE ? LIMIT 2", (f"sha256:{prefix}%",))
            if len(rows) == 1:
                return self._by_id(rows[0]["id"])  # type: ignore[return-value]
            if len(rows) > 1:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {ref_or_id}")
        raise NotFound(f"No such image: {ref_or_id}")

    def _has_tag(self, name: str) -> bool:
        return self.db.query_one("SELECT 1 FROM image_tags WHERE name=?", (name,)) is not None

    def exists(self, ref_or_id: str) -> bool:
        try:
            self.get(ref_or_id)
            return True
        except (NotFound, InvalidArgument):
            return False

    # -- names -----------------------------------------------------------------------------
    def tag(self, source: str, target: str) -> str:
        """Point the name target at the image source resolves to; return the full target name."""
        img = self.get(source)
        ref = reference.parse(target)
        if ref.digest:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: {target}")
        with self.db.transaction() as conn:
            self._set_tag(conn, str(ref), img.id, time.time())
        return str(ref)

    def untag(self, name: str) -> str:
        """Remove one tag or repo digest (the image stays); return its familiar form."""
        ref = reference.parse(name)
        with self.db.transaction() as conn:
            if ref.digest:
                cur = conn.execute("DELETE FROM image_digests WHERE repo=? AND digest=?",
                                   (ref.name, ref.digest))
            else:
                cur = conn.execute("DELETE FROM image_tags WHERE name=?", (str(ref),))
        if cur.rowcount == 0:
            raise NotFound(f"No such image: {name}")
        return ref.familiar()

    # -- parents ---------------------------------------------------------------------------
    def children(self, image_id: str) -> list[str]:
        """IDs of the images whose parent is image_id."""
        rows = self.db.query("SELECT id FROM images WHERE parent=? ORDER BY id", (image_id,))
        return [r["id"] for r in rows]

    def _has_children(self, image_id: str) -> bool:
        return self.db.query_one("SELECT 1 FROM images WHERE parent=? LIMIT 1", (image_id,)) is not None

    # -- removal ---------------------------------------------------------------------------
    def remove(self, ref_or_id: str, *, force: bool = False, prune: bool = True) -> list[dict]:
        """``docker rmi``: untag a name, or delete the image when no names remain.

        Returns Docker's items: ``{"Untagged": "busybox:latest"}``, ``{"Deleted": "sha256:..."}``
        (the image, then each layer snapshot released). Refuses (Conflict) to delete an image a
        container uses unless force, and an image with child images even when forced; untagging
        the last name of a parent leaves it as an intermediate image. ``prune`` (Docker's default;
        ``--no-prune`` turns it off) then deletes the untagged parents that no other image, name or
        container holds, each with its own "Deleted" items, as moby's ``imageDeleteHelper``.
        """
        records, _ = self._remove(ref_or_id, force=force, prune=prune)
        try:
            self.gc()
        except Exception as e:  # GC failures must not undo a successful delete
            log.warning("gc after removing %s failed: %s", ref_or_id, e)
        return records

    def _remove(self, ref_or_id: str, *, force: bool, prune: bool) -> tuple[list[dict], int]:
        """remove() without GC; also returns the bytes of the layer snapshots released."""
        img = self.get(ref_or_id)
        records: list[dict] = []
        refs = img.tags + img.digests
        by_id = self._is_id_ref(ref_or_id, img)
        if not by_id:
            ref = reference.parse(ref_or_id)
            if not force and _single_reference(refs) and self.in_use(img.id):
                raise Conflict(f'conflict: unable to remove repository reference "{ref_or_id}" (must force)'
                               f" - container is using its referenced image {img.short_id}")
            if not ref.digest or f"{ref.name}@{ref.digest}" in img.digests:
                # (a name@digest resolved by manifest digest, not a recorded repo digest: nothing to untag)
                records.append({"Untagged": self.untag(str(ref))})
            img = self._by_id(img.id)  # type: ignore[assignment]
            if not ref.digest and not any(reference.parse(t).name == ref.name for t in img.tags):
                for d in list(img.digests):
                    if reference.parse(d, default_tag=False).name == ref.name:
                        records.append({"Untagged": self.untag(d)})
            img = self._by_id(img.id)  # type: ignore[assignment]
            if img.tags or img.digests or self._has_children(img.id):
                return records, 0  # still named, or now an intermediate image of its children
        else:
            if self._has_children(img.id):
                raise Conflict(f"conflict: unable to delete {img.short_id} (cannot be forced) - image has "
                               "dependent child images")
            if len(refs) > 1 and not _single_reference(refs) and not force:
                raise Conflict(f"conflict: unable to delete {img.short_id} (must be forced) - image is "
                               "referenced in multiple repositories")
            if self.in_use(img.id) and not force:
                raise Conflict(f"conflict: unable to delete {img.short_id} (must be forced) - image is "
                               "being used by a container")
            for r in refs:
                records.append({"Untagged": self.untag(r)})
        if self.in_use(img.id) and not force:
            raise Conflict(f"conflict: unable to delete {img.short_id} (must be forced) - image is being "
                           "used by a container")
        reclaimed = self._delete(img, records)
        # prune: the untagged parents that are now childless and unused go too (moby stops quietly
        # at the first one that is named, has other children or is used by a container)
        parent, seen = img.parent if prune else "", {img.id}
        while parent and parent not in seen:
            seen.add(parent)
            p = self._by_id(parent)
            if p is None or p.tags or p.digests or self._has_children(p.id) or self.in_use(p.id):
                break
            reclaimed += self._delete(p, records)
            parent = p.parent
        return records, reclaimed

    def _is_id_ref(self, ref_or_id: str, img: Image) -> bool:
        if ref_or_id == img.id:
            return True
        if not reference.looks_like_id(ref_or_id):
            return False
        try:
            ref = reference.parse(ref_or_id)
        except InvalidArgument:
            return True
        return not self._has_tag(str(ref))

    def _delete(self, img: Image, records: list[dict]) -> int:
        """Drop the record and release the image's own layer snapshots (GC is the caller's): append
        Docker's "Deleted" items (the image, then each layer) to records; return the bytes released."""
        released = self._delete_record(img)
        records.append({"Deleted": img.id})
        records.extend({"Deleted": c} for c, _ in released)
        return sum(size for _, size in released)

    def _delete_record(self, img: Image) -> list[tuple[str, int]]:
        try:
            chains = oci.chain_ids(self.read_config(img).diff_ids)
        except (NotFound, InvalidArgument, DataCorrupt):
            chains = []
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM images WHERE id=?", (img.id,))
        return self._release_snapshots(chains)

    def _release_snapshots(self, chains: list[str]) -> list[tuple[str, int]]:
        """Remove the chain's committed snapshots no other image uses, top first."""
        if self.snapshotter is None or not chains:
            return []
        used = self._used_chains()
        removed: list[tuple[str, int]] = []
        for chain in reversed(chains):
            if chain in used:
                break
            try:
                self.snapshotter.remove(chain)
            except NotFound:
                continue
            except Conflict:
                break  # a container or another snapshot sits on it
            row = self.db.query_one("SELECT size FROM image_layers WHERE chain_id=?", (chain,))
            removed.append((chain, int(row["size"]) if row else 0))
            with self.db.transaction() as conn:
                conn.execute("DELETE FROM image_layers WHERE chain_id=?", (chain,))
        return removed

    def _used_chains(self) -> set[str]:
        used: set[str] = set()
        for img in self.all():
            try:
                used.update(oci.chain_ids(self.read_config(img).diff_ids))
            except (NotFound, InvalidArgument, DataCorrupt):
                continue
        return used

    # -- sizes, list, inspect, history ------------------------------------------------------
    def record_layer(self, chain_id: str, diff_id: str, size: int) -> None:
        """Remember a layer's uncompressed size (called by unpack, commit and the builder)."""
        with self.db.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO image_layers(chain_id, diff_id, size) VALUES(?, ?, ?)",
                         (chain_id, diff_id, size))

    def _committed_chains(self) -> set[str] | None:
        """Names of the committed snapshots (None without a snapshotter: every recorded size counts)."""
        if self.snapshotter is None:
            return None
        return {info.key for info in self.snapshotter.walk() if info.kind == "committed"}

    def _layer_sizes(self, img: Image, committed: set[str] | None = None) -> list[tuple[str, int]]:
        """(chain ID, size) per layer: the uncompressed size once the layer is unpacked (its chain
        snapshot exists and its size was recorded), else the compressed blob size (as Docker with
        the containerd store). committed: the committed snapshot names, when the caller has them."""
        try:
            m = self.read_manifest(img)
            cfg = self.read_config(img)
        except (NotFound, InvalidArgument, DataCorrupt):
            return []
        if committed is None:
            committed = self._committed_chains()
        out = []
        for chain, layer in zip(oci.chain_ids(cfg.diff_ids), m.layers, strict=False):
            row = None
            if committed is None or chain in committed:
                row = self.db.query_one("SELECT size FROM image_layers WHERE chain_id=?", (chain,))
            out.append((chain, int(row["size"]) if row else layer.size))
        return out

    def size(self, ref_or_id: str) -> int:
        return sum(s for _, s in self._layer_sizes(self.get(ref_or_id)))

    def list(self, *, all: bool = False, filters: dict[str, list[str]] | None = None,
             shared_size: bool = True) -> list[dict]:
        """Docker's ImageSummary list (newest first), as moby's graphdriver image service lists.

        Untagged images that are the parent of another image (a build's intermediate steps) are
        hidden unless ``all``; untagged images without names are shown as ``<none>:<none>``.
        Filters: ``dangling`` (true: untagged images without children; false: named ones),
        ``reference`` (name globs), ``label`` (``k`` or ``k=v``).
        """
        filters = filters or {}
        dangling = _bool_filter(filters, "dangling")
        images = self.all()
        parents = {img.parent for img in images if img.parent}
        committed = self._committed_chains()
        sizes = {img.id: self._layer_sizes(img, committed) for img in images}
        chain_users: dict[str, int] = {}
        for layers in sizes.values():
            for chain, _ in layers:
                chain_users[chain] = chain_users.get(chain, 0) + 1
        out = []
        for img in sorted(images, key=lambda i: (-i.created, i.id)):
            tags, digests = img.repo_tags, img.repo_digests
            if not tags and not digests:
                if not all and img.id in parents:
                    continue  # an intermediate image
                if dangling is False or filters.get("reference"):
                    continue
                tags, digests = ["<none>:<none>"], ["<none>@<none>"]
            if dangling is True and (img.tags or img.id in parents):
                continue
            if not self._match(img, filters):
                continue
            if filters.get("reference") and img.repo_tags:
                tags = [t for t in tags if _ref_match(t, filters["reference"])]   # moby keeps only these
            layers = sizes[img.id]
            total = sum(s for _, s in layers)
            shared = sum(s for c, s in layers if chain_users.get(c, 0) > 1)
            out.append({
                "Id": img.id, "ParentId": img.parent, "RepoTags": tags, "RepoDigests": digests,
                "Created": int(img.created), "Size": total, "SharedSize": shared if shared_size else -1,
                "UniqueSize": total - shared, "Labels": self._labels(img), "Containers": -1,
            })
        return out

    def _labels(self, img: Image) -> dict:
        try:
            return self.read_config(img).config.get("Labels") or {}
        except (NotFound, InvalidArgument, DataCorrupt):
            return {}

    def _match(self, img: Image, filters: dict[str, list[str]]) -> bool:
        """The reference and label filters (dangling is the caller's)."""
        pats = filters.get("reference", [])
        if pats and not any(_ref_match(n, pats) for n in img.repo_tags):
            return False
        labels_wanted = filters.get("label", [])
        if labels_wanted:
            labels = self._labels(img)
            for lw in labels_wanted:
                k, eq, v = lw.partition("=")
                if k not in labels or (eq and labels[k] != v):
                    return False
        return True

    def inspect(self, ref_or_id: str) -> dict:
        """Docker's ImageInspect for the image."""
        img = self.get(ref_or_id)
        cfg = self.read_config(img)
        raw = cfg.raw
        layers = self._layer_sizes(img)
        graph: dict[str, Any] = {"Name": self.snapshotter.name if self.snapshotter else "", "Data": None}
        chains = oci.chain_ids(cfg.diff_ids)
        if self.snapshotter is not None and chains and self.is_unpacked(img):
            try:
                top = chains[-1]
                lowers = self.snapshotter.lower_dirs(top)
                data = {"UpperDir": self.snapshotter.upper_dir(top)}
                if lowers:
                    data["LowerDir"] = ":".join(lowers)
                graph["Data"] = data
            except Exception:  # driver specific details are best effort
                graph["Data"] = None
        out: dict[str, Any] = {
            "Id": img.id,
            "RepoTags": img.repo_tags,
            "RepoDigests": img.repo_digests,
            "Parent": img.parent,
            "Comment": raw.get("comment") or "",
            "Created": cfg.created or ZERO_TIME,
            "Container": raw.get("container") or "",
            "ContainerConfig": raw.get("container_config") or _empty_container_config(),
            "DockerVersion": raw.get("docker_version") or "",
            "Author": raw.get("author") or "",
            "Config": cfg.config or None,
            "Architecture": cfg.architecture,
            "Os": cfg.os,
            "Size": sum(s for _, s in layers),
            "GraphDriver": graph,
            "RootFS": {"Type": "layers", "Layers": list(cfg.diff_ids)},
            "Metadata": {"LastTagTime": rfc3339(img.last_tag_time)},
        }
        if cfg.variant:
            out["Variant"] = cfg.variant
        if raw.get("os.version"):
            out["OsVersion"] = raw["os.version"]
        out["Descriptor"] = img.manifest.to_dict()
        return out

    def history(self, ref_or_id: str) -> list[dict]:
        """Docker's history items, newest first; the top one carries the image's ID and tags, the
        ones below it those of its parent, grandparent ... while the chain lasts."""
        img = self.get(ref_or_id)
        cfg = self.read_config(img)
        sizes = [s for _, s in self._layer_sizes(img)]
        items: list[dict] = []
        hist = cfg.history or [{"created": cfg.created, "created_by": ""} for _ in cfg.diff_ids]
        layer = 0
        for h in hist:
            size = 0
            if not h.get("empty_layer"):
                size = sizes[layer] if layer < len(sizes) else 0
                layer += 1
            items.insert(0, {"Id": "<missing>", "Created": int(parse_time(str(h.get("created") or ""))),
                             "CreatedBy": h.get("created_by") or "", "Tags": None, "Size": size,
                             "Comment": h.get("comment") or ""})
        # IDs and tags down the parent chain, one entry per image (moby's ImageHistory): a build's
        # steps that still exist show their IDs, the base image's own entries stay "<missing>"
        cur: Image | None = img
        seen: set[str] = set()
        for item in items:
            if cur is None or cur.id in seen:
                break
            seen.add(cur.id)
            item["Id"] = cur.id
            item["Tags"] = cur.repo_tags or None
            cur = self._by_id(cur.parent) if cur.parent else None
        return items

    # -- unpack state ----------------------------------------------------------------------
    def is_unpacked(self, img: Image) -> bool:
        if self.snapshotter is None:
            return False
        chains = oci.chain_ids(self.read_config(img).diff_ids)
        if not chains:
            return True
        try:
            return self.snapshotter.stat(chains[-1]).kind == "committed"
        except NotFound:
            return False

    def unpack(self, ref_or_id: str, **kw: Any) -> str:
        """Unpack the image into committed snapshots; return the top chain ID ("" if no layers)."""
        from berth.images.unpack import unpack

        if self.snapshotter is None:
            raise InvalidArgument("image store has no snapshotter")
        img = self.get(ref_or_id)
        result = unpack(self.content, self.snapshotter, img.manifest, leases=self.leases, **kw)
        for layer in result.applied:
            self.record_layer(layer.chain_id, layer.diff_id, layer.size)
        return result.chain_id

    @contextmanager
    def hold(self, what: str = "build") -> Iterator[Any]:
        """A lease for a multi-step image write (blobs first, record last): GC keeps what it holds."""
        from berth.images.unpack import owner_labels
        from berth.metadata.leases import lease

        with lease(self.leases, expires_in=3600.0, labels={"berth.images": what, **owner_labels()}) as held:
            yield held

    def config(self, ref_or_id: str) -> oci.ImageConfig:
        """The parsed config of an image (what containers are created from)."""
        return self.read_config(self.get(ref_or_id))

    def recover(self) -> list[str]:
        """At start-up: drop leases of dead owners, stale ``extract-*`` snapshots and ingests."""
        from berth.images.unpack import cleanup_extractions, owner_alive

        for held_lease in self.leases.list():
            if not owner_alive(held_lease.labels):
                try:
                    self.leases.delete(held_lease.id)   # its owner crashed
                except NotFound:
                    pass
        removed: list[str] = []
        if self.snapshotter is not None:
            held = {ref for kind, ref in self.leases.resources() if kind == "snapshot"}
            removed = cleanup_extractions(self.snapshotter, held=held)
        self.content.cleanup_ingest()
        return removed

    # -- prune and gc ----------------------------------------------------------------------
    def prune(self, *, all: bool = False, filters: dict[str, list[str]] | None = None,
              until: float | None = None) -> dict:
        """``docker image prune [-a]``: Docker's ImagePruneResponse, as moby's ``ImagesPrune``.

        Dangling mode removes untagged images without children (and, like ``rmi``, their untagged
        parents that nothing else holds), never the intermediate images of a named image; ``all``
        also removes named images no container uses (a named parent only loses its names). Images
        containers use are skipped. Filters: ``label`` (``k``, ``k=v``), ``label!`` (images without
        that label); ``until``: only images created before that unix time.
        """
        filters = filters or {}
        label_only = {"label": filters.get("label", [])}
        not_labels = filters.get("label!", [])
        images = self.all()
        parents = {img.parent for img in images if img.parent}
        deleted: list[dict] = []
        reclaimed = 0
        for img in sorted(images, key=lambda i: (-i.created, i.id)):
            if not img.tags and not img.digests and img.id in parents:
                continue  # intermediate
            if not all and (img.tags or img.id in parents):
                continue
            if not self._match(img, label_only):
                continue
            if not_labels and any(self._match(img, {"label": [lbl]}) for lbl in not_labels):
                continue
            if until is not None and img.created >= until:
                continue
            current = self._by_id(img.id)  # an earlier removal may have pruned it as a parent
            if current is None or self.in_use(img.id):
                continue
            targets = (current.tags + current.digests) if (current.tags or current.digests) else [img.id]
            for target in targets:
                try:
                    recs, size = self._remove(target, force=False, prune=True)
                except (Conflict, NotFound) as e:
                    log.info("prune: skip %s: %s", target, e)
                    continue
                deleted.extend(recs)
                reclaimed += size
        if deleted:
            res = self.gc()
            deleted.extend({"Deleted": s} for s in getattr(res, "removed_snapshots", [])
                           if _digest.is_digest(s) and {"Deleted": s} not in deleted)
            reclaimed = max(reclaimed, int(getattr(res, "reclaimed_bytes", 0) or 0))
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def gc_roots(self) -> tuple[set[str], set[str]]:
        """(blob roots, snapshot roots): every image's manifest (and index); unpacked chains;
        container snapshots; active/view snapshots that are not stale extractions."""
        blobs: set[str] = set()
        snaps: set[str] = set()
        for img in self.all():
            blobs.add(img.manifest.digest)
            if img.target is not None and self.content.exists(img.target.digest):
                blobs.add(img.target.digest)
            try:
                chains = oci.chain_ids(self.read_config(img).diff_ids)
            except (NotFound, InvalidArgument, DataCorrupt):
                chains = []
            if chains:
                snaps.add(chains[-1])
        if self.container_snapshots is not None:
            snaps.update(self.container_snapshots())
        if self.snapshotter is not None:
            for info in self.snapshotter.walk():
                if info.kind != "committed" and not info.key.startswith("extract-"):
                    snaps.add(info.key)
        return blobs, snaps

    def gc(self) -> Any:
        """Collect unreferenced blobs and snapshots (``berth.metadata.gc.collect``)."""
        from berth.metadata import gc as _gc

        blobs, snaps = self.gc_roots()
        return _gc.collect(self.content, self.snapshotter, blob_roots=blobs, snapshot_roots=snaps,
                           leases=self.leases)


def _bool_filter(filters: dict[str, list[str]], name: str) -> bool | None:
    """A true/false filter (None when absent); other values are refused, as Docker does."""
    values = filters.get(name) or []
    if not values:
        return None
    out = set()
    for v in values:
        if v.lower() in ("true", "1"):
            out.add(True)
        elif v.lower() in ("false", "0"):
            out.add(False)
        else:
            raise InvalidArgument(f"invalid filter '{name}={v}'")
    if len(out) > 1:
        raise InvalidArgument(f"invalid filter '{name}': true and false given")
    return out.pop()


def _single_reference(refs: list[str]) -> bool:
    """Docker's isSingleReference: at most one tag and all references in one repository."""
    tags = 0
    repos = set()
    for r in refs:
        ref = reference.parse(r, default_tag=False)
        repos.add(ref.name)
        if not ref.digest:
            tags += 1
    return tags <= 1 and len(repos) <= 1


def _empty_container_config() -> dict:
    return {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
            "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
            "Cmd": None, "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
            "OnBuild": None, "Labels": None}


__all__ = ["Image", "ImageStore", "parse_time", "rfc3339"]


def _ref_match(name: str, patterns: list[str]) -> bool:
    """A familiar ``repo:tag`` against ``reference`` filter globs (whole name or repository)."""
    repo = name.rsplit(":", 1)[0]
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(repo, p) for p in patterns)
