"""Unpack: an image manifest → a chain of committed snapshots, one per layer, named by chain ID.

Each missing layer is applied into a fresh active snapshot ``extract-<rand>-<chainID>`` on its
parent chain, its diff ID is checked against the config, and only then is it committed under the
chain ID. A crash leaves at most an uncommitted ``extract-*`` snapshot (removed by
``cleanup_extractions`` at start-up, or by GC once the lease expires), never a committed partial
layer.
"""

from __future__ import annotations

import logging
import os
import secrets
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from berth.errors import AlreadyExists, Conflict, DataCorrupt, InvalidArgument, NotFound
from berth.oci import image as oci

if TYPE_CHECKING:
    from berth.content import ContentStore
    from berth.snapshots.base import Snapshotter

log = logging.getLogger("berth.images.unpack")

EXTRACT_PREFIX = "extract-"
UNPACK_LEASE_SECONDS = 6 * 3600.0


@dataclass
class AppliedLayer:
    chain_id: str
    diff_id: str
    size: int


@dataclass
class UnpackResult:
    """The top chain ID ("" for an image without layers) and the layers applied this time."""

    chain_id: str
    chain_ids: list[str] = field(default_factory=list)
    applied: list[AppliedLayer] = field(default_factory=list)


def _committed(snapshotter: Snapshotter, key: str) -> bool:
    try:
        info = snapshotter.stat(key)
    except NotFound:
        return False
    if info.kind != "committed":
        raise Conflict(f"snapshot {key} exists but is not committed ({info.kind})")
    return True


def unpack(content: ContentStore, snapshotter: Snapshotter, manifest: oci.Descriptor, *,
           leases: Any = None, limits: Any = None) -> UnpackResult:
    """Make every layer of the image a committed snapshot; return the chain.

    ``leases`` (a ``berth.metadata.leases.Leases``) protects the blobs and snapshots from GC
    while the unpack runs. A diff ID mismatch raises DataCorrupt and removes the snapshot.
    """
    from berth.archive import apply_layer

    m = oci.parse_manifest(content.read(manifest.digest, oci.MAX_MANIFEST_SIZE + 1), manifest.media_type)
    cfg = oci.parse_config(content.read(m.config.digest, oci.MAX_CONFIG_SIZE + 1))
    oci.check_manifest_config(m, cfg)
    chains = oci.chain_ids(cfg.diff_ids)
    result = UnpackResult(chain_id=chains[-1] if chains else "", chain_ids=chains)
    if not chains or _committed(snapshotter, chains[-1]):
        return result
    with ExitStack() as stack:
        lease = None
        if leases is not None:
            from berth.metadata.leases import lease as _lease

            lease = stack.enter_context(_lease(leases, expires_in=UNPACK_LEASE_SECONDS,
                                               labels={"berth.unpack": manifest.digest, **owner_labels()}))
            lease.add("content", manifest.digest)
            lease.add("content", m.config.digest)
        parent = ""
        for i, (layer, diff_id, chain) in enumerate(zip(m.layers, cfg.diff_ids, chains, strict=True)):
            if _committed(snapshotter, chain):
                parent = chain
                continue
            if not content.exists(layer.digest):
                what = " (a foreign layer: fetch it from " + ", ".join(layer.urls) + ")" if layer.urls else ""
                raise NotFound(f"layer {i} blob {layer.digest} is not in the content store{what}")
            if lease is not None:
                lease.add("content", layer.digest)
            key = f"{EXTRACT_PREFIX}{secrets.token_hex(6)}-{chain}"
            if lease is not None:
                lease.add("snapshot", key)
            snapshotter.prepare(key, parent, labels={"berth.unpack.chain": chain})
            try:
                with content.open(layer.digest) as src:
                    applied = apply_layer(src, snapshotter.upper_dir(key),
                                          whiteout_mode=snapshotter.whiteout_mode,
                                          lower_dirs=snapshotter.lower_dirs(key), limits=limits)
                if applied.diff_id != diff_id:
                    raise DataCorrupt(f"layer {i} ({layer.digest}): diff ID {applied.diff_id} does not match "
                                      f"the config's {diff_id}")
                try:
                    snapshotter.commit(chain, key)
                except AlreadyExists:
                    # another unpack committed the same layer meanwhile: use theirs
                    _remove_quietly(snapshotter, key)
                else:
                    result.applied.append(AppliedLayer(chain, diff_id, applied.size))
            except BaseException:
                _remove_quietly(snapshotter, key)
                raise
            if lease is not None:
                lease.add("snapshot", chain)
            parent = chain
    return result


def _start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return ""
    return data[data.rindex(b")") + 2:].split()[19].decode()


def owner_labels() -> dict[str, str]:
    """Labels naming this process (pid + start time) so a crashed owner's lease can be told apart."""
    pid = os.getpid()
    return {"berth.pid": str(pid), "berth.pid_start": _start_time(pid)}


def owner_alive(labels: dict) -> bool:
    """False when the labels name a process that is gone (or a recycled pid); True otherwise."""
    pid = labels.get("berth.pid", "")
    if not pid.isdigit():
        return True
    return _start_time(int(pid)) == labels.get("berth.pid_start", "")


def _remove_quietly(snapshotter: Snapshotter, key: str) -> None:
    try:
        snapshotter.remove(key)
    except NotFound:
        pass
    except Exception as e:  # keep the original error; GC removes the rest later
        log.warning("cannot remove extraction snapshot %s: %s", key, e)


def cleanup_extractions(snapshotter: Snapshotter, *, held: set[str] | None = None) -> list[str]:
    """Remove uncommitted ``extract-*`` snapshots left by a crash (call at start-up).

    ``held`` names keys a live lease still protects (an unpack running in another process).
    """
    removed = []
    for info in list(snapshotter.walk()):
        if info.kind == "committed" or not info.key.startswith(EXTRACT_PREFIX):
            continue
        if held and info.key in held:
            continue
        try:
            snapshotter.remove(info.key)
        except (NotFound, Conflict, InvalidArgument) as e:
            log.warning("cannot remove stale extraction %s: %s", info.key, e)
            continue
        removed.append(info.key)
    return removed
