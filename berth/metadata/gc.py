"""Garbage collection: mark what is reachable from the given roots and leases, sweep the rest.

The caller decides what the roots are (image records give manifest digests, containers give
snapshot keys); this module knows only how blobs reference blobs (manifest and index JSON) and how
snapshots reference snapshots (their parent chain). A sweep never stops at the first failure: each
failing removal is logged and recorded, and the rest goes on.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from berth.errors import BerthError, NotFound
from berth.metadata.leases import CONTENT, SNAPSHOT, Leases
from berth.oci.digest import is_digest

if TYPE_CHECKING:
    from berth.content.store import BlobInfo, ContentStore
    from berth.snapshots.base import Snapshotter

MAX_PARSE = 4 << 20  # a JSON blob larger than this is not a manifest (as containerd's limit)
DESCRIPTOR_FIELDS = ("config", "layers", "manifests", "blobs", "subject")
REFERRING_TYPES = frozenset({
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.artifact.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
})


@dataclass
class GCResult:
    removed_blobs: list[str] = field(default_factory=list)
    removed_snapshots: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    reclaimed_bytes: int = 0


class _MarkError(Exception):
    """A reachable blob could not be read, so what it references is unknown."""


def collect(content: ContentStore, snapshotter: Snapshotter | None, *, blob_roots: Iterable[str],
            snapshot_roots: Iterable[str], leases: Leases | None = None,
            log: logging.Logger = logging.getLogger("berth.gc")) -> GCResult:
    """Delete every blob and snapshot not reachable from the roots or held by a live lease.

    Only blobs listed before marking starts are candidates, so a blob committed during the
    collection is kept (its operation's root may not exist yet). If a reachable blob cannot be
    read, no blob is deleted this round.
    """
    result = GCResult()
    try:
        candidates = list(content.walk())
    except OSError as e:
        candidates = []
        msg = f"blob sweep skipped: cannot list blobs: {e}"
        log.error("gc: %s", msg)
        result.errors.append(msg)
    held: set[tuple[str, str]] = set()
    if leases is not None:
        expired = leases.expire()
        if expired:
            log.info("gc: dropped %d expired lease(s)", len(expired))
        held = leases.resources()

    blob_marks = list(blob_roots) + [ref for kind, ref in held if kind == CONTENT]
    try:
        marked = _mark_blobs(content, blob_marks, log)
    except _MarkError as e:
        msg = f"blob sweep skipped: {e}"
        log.error("gc: %s", msg)
        result.errors.append(msg)
    else:
        _sweep_blobs(content, candidates, marked, result, log)

    if snapshotter is not None:
        snap_marks = list(snapshot_roots) + [ref for kind, ref in held if kind == SNAPSHOT]
        _collect_snapshots(snapshotter, snap_marks, result, log)
    return result


# -- blobs -------------------------------------------------------------------------------------
def referenced_digests(data: bytes) -> list[str]:
    """Digests a manifest or index references (config, layers, manifests, blobs, subject).

    Anything that is not a JSON manifest or index (a layer, a config) references nothing.
    """
    start = data[:64].lstrip()
    if not start.startswith(b"{") or len(data) > MAX_PARSE:
        return []
    try:
        obj = json.loads(data)
    except ValueError:
        return []
    if not isinstance(obj, dict):
        return []
    if obj.get("mediaType") not in REFERRING_TYPES and obj.get("schemaVersion") != 2:
        return []
    out: list[str] = []
    for name in DESCRIPTOR_FIELDS:
        value = obj.get(name)
        for desc in value if isinstance(value, list) else [value]:
            if isinstance(desc, dict) and is_digest(desc.get("digest")):
                out.append(desc["digest"])
    return out


def _mark_blobs(content: ContentStore, roots: Iterable[str], log: logging.Logger) -> set[str]:
    marked: set[str] = set()
    stack = []
    for root in roots:
        if is_digest(root):
            stack.append(root)
        else:
            log.warning("gc: ignoring malformed blob root %r", root)
    while stack:
        digest = stack.pop()
        if digest in marked:
            continue
        marked.add(digest)
        try:
            data = _read_head_or_all(content, digest)
        except NotFound:
            log.debug("gc: referenced blob %s is missing", digest)
            continue
        except OSError as e:
            raise _MarkError(f"cannot read reachable blob {digest}: {e}") from e
        stack.extend(d for d in referenced_digests(data) if d not in marked)
    return marked


def _read_head_or_all(content: ContentStore, digest: str) -> bytes:
    """The whole blob if it may be a manifest (starts with '{' and is small), else its first bytes."""
    with content.open(digest) as f:
        head = f.read(64)
        if not head.lstrip().startswith(b"{") or os.fstat(f.fileno()).st_size > MAX_PARSE:
            return head
        return head + f.read(MAX_PARSE)


def _sweep_blobs(content: ContentStore, candidates: list[BlobInfo], marked: set[str],
                 result: GCResult, log: logging.Logger) -> None:
    for blob in candidates:
        if blob.digest in marked:
            continue
        try:
            content.delete(blob.digest)
        except (NotFound, FileNotFoundError):
            continue
        except (OSError, BerthError) as e:
            msg = f"blob {blob.digest}: {e}"
            log.error("gc: cannot remove %s", msg)
            result.errors.append(msg)
            continue
        result.removed_blobs.append(blob.digest)
        result.reclaimed_bytes += blob.size
        log.debug("gc: removed blob %s (%d bytes)", blob.digest, blob.size)


# -- snapshots ---------------------------------------------------------------------------------
def _collect_snapshots(snapshotter: Snapshotter, roots: Iterable[str], result: GCResult,
                       log: logging.Logger) -> None:
    try:
        infos = {info.key: info for info in snapshotter.walk()}
    except (OSError, BerthError) as e:
        msg = f"snapshot sweep skipped: cannot list snapshots: {e}"
        log.error("gc: %s", msg)
        result.errors.append(msg)
        return
    marked: set[str] = set()
    for root in roots:
        key = root
        while key and key not in marked:
            info = infos.get(key)
            if info is None:
                try:
                    info = snapshotter.stat(key)
                except (NotFound, BerthError, OSError):
                    break
            marked.add(key)
            key = info.parent
    # children first: deeper snapshots (longest parent chain) go before their parents
    doomed = [k for k in infos if k not in marked]
    doomed.sort(key=lambda k: _depth(k, infos), reverse=True)
    for key in doomed:
        size = _usage(snapshotter, key)
        try:
            snapshotter.remove(key)
        except NotFound:
            continue
        except (OSError, BerthError) as e:
            msg = f"snapshot {key}: {e}"
            log.error("gc: cannot remove %s", msg)
            result.errors.append(msg)
            continue
        result.removed_snapshots.append(key)
        result.reclaimed_bytes += size
        log.debug("gc: removed snapshot %s", key)


def _depth(key: str, infos: dict[str, Any]) -> int:
    depth, seen = 0, set()
    while key in infos and key not in seen:
        seen.add(key)
        key = infos[key].parent
        depth += 1
    return depth


def _usage(snapshotter: Snapshotter, key: str) -> int:
    try:
        return snapshotter.usage(key).size
    except (OSError, BerthError):
        return 0
