"""``docker commit``: a container's snapshot changes → a new layer on top of its image.

The diff comes from ``berth.archive.write_diff`` in the snapshotter's whiteout mode (overlay: the
upper dir only; vfs/btrfs: the tree compared with its parent). The new config is the parent's with
the diff ID and a history entry appended, ``--change`` lines applied, and ``container`` /
``container_config`` recorded as Docker does; the base image becomes the new image's parent. The
new layer's snapshot is made by the next unpack (the container's own snapshot stays the container's).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from berth.errors import InvalidArgument
from berth.images.blobs import Layer, _Tee, now_rfc3339, put_image
from berth.images.importer import apply_changes
from berth.oci import image as oci
from berth.oci import reference

if TYPE_CHECKING:
    from berth.images.store import Image, ImageStore


def commit_snapshot(store: ImageStore, key: str, *, parent: str | None, ref: str | None = None,
                    changes: Sequence[str] = (), comment: str = "", author: str = "",
                    container_id: str = "", container_config: dict | None = None,
                    created_by: str = "", compression: str = "gzip") -> Image:
    """Make an image from the active snapshot ``key`` whose base is image ``parent`` (None: scratch).

    The caller pauses the container if it wants a consistent copy (``docker commit --pause``).
    """

    snap = store.snapshotter
    if snap is None:
        raise InvalidArgument("image store has no snapshotter")
    if ref:
        r = reference.parse(ref)
        if r.digest:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: {ref}")
    base: Image | None = store.get(parent) if parent else None
    if base is not None:
        base_manifest = store.read_manifest(base)
        base_cfg = store.read_config(base)
        raw: dict[str, Any] = json.loads(json.dumps(base_cfg.raw))
        layers = [Layer(d, diff, 0) for d, diff in zip(base_manifest.layers, base_cfg.diff_ids, strict=True)]
        history = list(base_cfg.history) or [{"created": base_cfg.created, "created_by": ""}
                                              for _ in base_cfg.diff_ids]
    else:
        raw = oci.new_config(diff_ids=[], history=[], created="")
        layers, history = [], []
    section = apply_changes(raw.get("config") or {}, changes)
    with store.hold("commit") as held:
        return _commit(store, key, raw, section, layers, history, ref=ref, comment=comment, author=author,
                       container_id=container_id, container_config=container_config, created_by=created_by,
                       compression=compression, lease=held, parent_id=base.id if base else "")


def _commit(store: ImageStore, key: str, raw: dict, section: dict, layers: list[Layer], history: list[dict],
            *, ref: str | None, comment: str, author: str, container_id: str, container_config: dict | None,
            created_by: str, compression: str, lease: Any, parent_id: str = "") -> Image:
    from berth.archive import write_diff

    snap = store.snapshotter
    assert snap is not None
    with store.content.writer(f"commit-{secrets.token_hex(8)}") as w:
        res = write_diff(snap.upper_dir(key), _Tee(w), whiteout_mode=snap.whiteout_mode,
                         lower_dirs=snap.lower_dirs(key), compression=compression)
        dg = w.commit()
    lease.add("content", dg)
    if dg != res.digest:
        raise InvalidArgument(f"layer digest {dg} differs from the diff's {res.digest}")
    layer = Layer(oci.Descriptor(res.media_type, res.digest, res.compressed_size), res.diff_id, res.size)
    created = now_rfc3339()
    entry: dict[str, Any] = {"created": created, "created_by": created_by}
    if comment:
        entry["comment"] = comment
    if author:
        entry["author"] = author
    raw.update({"created": created, "config": section, "history": history + [entry]})
    for k, v in (("author", author), ("comment", comment), ("container", container_id)):
        if v:
            raw[k] = v
        else:
            raw.pop(k, None)
    if container_config is not None:
        raw["container_config"] = container_config
    mdesc = put_image(store.content, [*layers, layer], raw, lease=lease)
    img = store.add(mdesc, names=[ref] if ref else [], parent=parent_id or None)
    store.record_layer(oci.chain_id([*(la.diff_id for la in layers), layer.diff_id]), layer.diff_id, res.size)
    return img
