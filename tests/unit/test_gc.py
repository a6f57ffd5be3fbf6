"""GC: mark from roots and leases through manifests/indexes and parent chains, sweep the rest."""

from __future__ import annotations

import errno
import json
import logging
import os
import time

import pytest

from berth.content import ContentStore
from berth.errors import Conflict, NotFound
from berth.metadata.db import Database
from berth.metadata.gc import collect, referenced_digests
from berth.metadata.leases import CONTENT, SNAPSHOT, Leases
from berth.oci.digest import sha256
from berth.snapshots.base import SnapshotInfo, Usage

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def desc(store: ContentStore, data: bytes, media_type: str) -> dict:
    return {"mediaType": media_type, "digest": store.write_bytes(data), "size": len(data)}


def jbytes(obj: dict) -> bytes:
    return json.dumps(obj).encode()


def manifest(store: ContentStore, config: bytes, layers: list[bytes], media_type: str | None = OCI_MANIFEST,
             **extra) -> dict:
    m = {"schemaVersion": 2, "config": desc(store, config, "application/vnd.oci.image.config.v1+json"),
         "layers": [desc(store, lb, "application/vnd.oci.image.layer.v1.tar+gzip") for lb in layers], **extra}
    if media_type:
        m["mediaType"] = media_type
    return desc(store, jbytes(m), media_type or OCI_MANIFEST)


class Image:
    """index -> (manifest A -> config A, L1, L2), (manifest B -> config B, L1, L3)."""

    def __init__(self, store: ContentStore, tag: str) -> None:
        self.l1, l2, l3 = os.urandom(1000), os.urandom(2000), os.urandom(3000)
        config_a = jbytes({"architecture": "amd64", "config": {"Cmd": ["sh"]}, "tag": tag})
        config_b = jbytes({"architecture": "arm64", "config": {"Cmd": ["sh"]}, "tag": tag})
        self.ma = manifest(store, config_a, [self.l1, l2])
        self.mb = manifest(store, config_b, [self.l1, l3], media_type=None)  # no mediaType
        self.index = desc(store, jbytes({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                         "manifests": [self.ma, self.mb]}), OCI_INDEX)
        self.a_tree = {self.ma["digest"], sha256(config_a), sha256(self.l1), sha256(l2)}
        self.blobs = self.a_tree | {self.index["digest"], self.mb["digest"], sha256(config_b), sha256(l3)}


def all_blobs(store: ContentStore) -> set[str]:
    return {b.digest for b in store.walk()}


@pytest.fixture
def store(tmp_path) -> ContentStore:
    return ContentStore(str(tmp_path / "content"))


@pytest.fixture
def leases(tmp_path):
    db = Database(str(tmp_path / "meta.db"))
    yield Leases(db)
    db.close()


def test_roots_keep_manifests_configs_and_layers(store):
    img = Image(store, "keep")
    old = Image(store, "old")
    stray = store.write_bytes(b"an unreferenced layer")
    assert len(img.blobs) == 8
    before = {b.digest: b.size for b in store.walk()}
    res = collect(store, None, blob_roots=[img.index["digest"]], snapshot_roots=[])
    assert all_blobs(store) == img.blobs
    gone = (old.blobs | {stray}) - img.blobs
    assert set(res.removed_blobs) == gone
    assert res.reclaimed_bytes == sum(before[d] for d in gone)
    assert res.errors == [] and res.removed_snapshots == []
    # a root can be a single manifest (Docker schema 2 too); the index goes, A's tree stays
    res = collect(store, None, blob_roots=[img.ma["digest"]], snapshot_roots=[])
    assert all_blobs(store) == img.a_tree
    assert img.index["digest"] in res.removed_blobs and img.mb["digest"] in res.removed_blobs


def test_docker_manifest_subject_and_leaves(store):
    config = jbytes({"config": {"digest": "not followed: configs are leaves"}, "rootfs": {}})
    layer_like_json = jbytes({"schemaVersion": 1, "layers": [{"digest": sha256(b"x")}]})
    dm = manifest(store, config, [layer_like_json], media_type=DOCKER_MANIFEST)
    target = store.write_bytes(b"x")  # only referenced by a non-manifest
    referrer = manifest(store, b"{}", [], subject=dm)
    res = collect(store, None, blob_roots=[referrer["digest"]], snapshot_roots=[])
    assert dm["digest"] in all_blobs(store) and sha256(config) in all_blobs(store)
    assert sha256(layer_like_json) in all_blobs(store)
    assert res.removed_blobs == [target]


def test_malformed_and_missing_roots_are_harmless(store, caplog):
    keep = store.write_bytes(b"keep me")
    cyc = store.write_bytes(jbytes({"schemaVersion": 2, "layers": [{"digest": "sha256:../../etc"}]}))
    with caplog.at_level(logging.WARNING, "berth.gc"):
        res = collect(store, None, blob_roots=["sha256:../x", sha256(b"missing"), keep, cyc],
                      snapshot_roots=[])
    assert res.removed_blobs == [] and res.errors == []
    assert "malformed blob root" in caplog.text
    assert referenced_digests(b"[1, 2]") == [] and referenced_digests(b"\x1f\x8b garbage") == []
    assert referenced_digests(b"{not json") == []


def test_failing_delete_is_logged_and_sweep_continues(store, caplog):
    stuck = store.write_bytes(b"stuck")
    others = {store.write_bytes(b"other %d" % i) for i in range(5)}

    class Flaky(ContentStore):
        def delete(self, digest: str) -> None:
            if digest == stuck:
                raise OSError(errno.EIO, "Input/output error")
            super().delete(digest)

    flaky = Flaky(store.root)
    with caplog.at_level(logging.ERROR, "berth.gc"):
        res = collect(flaky, None, blob_roots=[], snapshot_roots=[])
    assert set(res.removed_blobs) == others
    assert len(res.errors) == 1 and stuck in res.errors[0]
    assert stuck in caplog.text
    assert all_blobs(store) == {stuck}


def test_unreadable_reachable_blob_skips_blob_sweep(store):
    img = Image(store, "x")
    stray = store.write_bytes(b"stray")

    class Broken(ContentStore):
        def open(self, digest: str):
            if digest == img.ma["digest"]:
                raise OSError(errno.EIO, "Input/output error")
            return super().open(digest)

    res = collect(Broken(store.root), None, blob_roots=[img.index["digest"]], snapshot_roots=[])
    assert res.removed_blobs == [] and stray in all_blobs(store)
    assert res.errors and "blob sweep skipped" in res.errors[0]


def test_blob_committed_during_gc_is_kept(store):
    old = store.write_bytes(b"old")
    root = store.write_bytes(b"a root layer")

    class Racy(ContentStore):
        fresh = ""

        def open(self, digest: str):
            if not self.fresh:  # a concurrent pull commits while gc marks
                self.fresh = self.write_bytes(b"committed while gc marks")
            return super().open(digest)

    racy = Racy(store.root)
    res = collect(racy, None, blob_roots=[root], snapshot_roots=[])
    assert res.removed_blobs == [old]
    assert all_blobs(store) == {root, racy.fresh}


def test_leases_protect_content(store, leases):
    img = Image(store, "pulling")
    loose = store.write_bytes(b"a layer being downloaded")
    lz = leases.create()
    lz.add(CONTENT, img.index["digest"])
    lz.add(CONTENT, loose)
    short = leases.create(expires_in=0.01)
    short.add(CONTENT, store.write_bytes(b"expired protection"))
    time.sleep(0.03)
    res = collect(store, None, blob_roots=[], snapshot_roots=[], leases=leases)
    assert all_blobs(store) == img.blobs | {loose}
    assert res.removed_blobs == [sha256(b"expired protection")]
    assert [x.id for x in leases.list()] == [lz.id]  # the expired lease was dropped
    leases.delete(lz.id)
    collect(store, None, blob_roots=[], snapshot_roots=[], leases=leases)
    assert all_blobs(store) == set()


class FakeSnapshotter:
    """Records with parent chains; remove refuses parents of live children, like the real ones."""

    name = "fake"
    whiteout_mode = "delete"

    def __init__(self) -> None:
        self.snaps: dict[str, SnapshotInfo] = {}
        self.fail: set[str] = set()
        self.removed: list[str] = []

    def add(self, key: str, parent: str = "", kind: str = "committed") -> None:
        self.snaps[key] = SnapshotInfo(key, parent, kind, 0.0, 0.0, {})

    def stat(self, key: str) -> SnapshotInfo:
        if key not in self.snaps:
            raise NotFound(key)
        return self.snaps[key]

    def walk(self):
        yield from list(self.snaps.values())

    def usage(self, key: str) -> Usage:
        return Usage(100, 1)

    def remove(self, key: str) -> None:
        self.stat(key)
        if any(s.parent == key for s in self.snaps.values()):
            raise Conflict(f"snapshot {key} has children")
        if key in self.fail:
            raise OSError(errno.EBUSY, "Device or resource busy")
        del self.snaps[key]
        self.removed.append(key)


def chain(sn: FakeSnapshotter, *keys: str, active: str = "") -> None:
    parent = ""
    for k in keys:
        sn.add(k, parent)
        parent = k
    if active:
        sn.add(active, parent, "active")


def test_snapshots_kept_through_parent_chains_and_swept_children_first(store, leases):
    sn = FakeSnapshotter()
    chain(sn, "base", "mid", "top", active="container-1")
    chain(sn, "o1", "o2", "o3", active="dead-container")
    sn.add("o2-sibling", "o2")
    chain(sn, "leased-base", "leased-top")
    leases.create().add(SNAPSHOT, "leased-top")
    res = collect(store, sn, blob_roots=[], snapshot_roots=["container-1", "gone-key"], leases=leases)
    assert set(sn.snaps) == {"base", "mid", "top", "container-1", "leased-base", "leased-top"}
    assert set(res.removed_snapshots) == {"o1", "o2", "o3", "dead-container", "o2-sibling"}
    order = sn.removed
    assert order.index("dead-container") < order.index("o3") < order.index("o2") < order.index("o1")
    assert order.index("o2-sibling") < order.index("o2")
    assert res.errors == [] and res.reclaimed_bytes == 500


def test_failing_snapshot_removal_is_recorded_and_sweep_continues(store, caplog):
    sn = FakeSnapshotter()
    chain(sn, "a1", "a2", active="busy")
    chain(sn, "b1", "b2")
    sn.fail.add("busy")
    with caplog.at_level(logging.ERROR, "berth.gc"):
        res = collect(store, sn, blob_roots=[], snapshot_roots=[])
    assert set(res.removed_snapshots) == {"b1", "b2"}
    assert set(sn.snaps) == {"a1", "a2", "busy"}
    assert len(res.errors) == 3  # busy (EBUSY), then a2 and a1 (children remain)
    assert "busy" in caplog.text


def test_with_real_vfs_snapshotter(store, tmp_path):
    from berth.snapshots import open_snapshotter

    db = Database(str(tmp_path / "snap.db"))
    try:
        sn = open_snapshotter(str(tmp_path / "snapshots"), db, "vfs")
        for key, parent in (("l1", ""), ("l2", "l1"), ("x1", ""), ("x2", "x1")):
            sn.prepare(key + "-tmp", parent)
            with open(os.path.join(sn.upper_dir(key + "-tmp"), "f"), "wb") as f:
                f.write(b"y" * 1000)
            sn.commit(key, key + "-tmp")
        sn.prepare("ctr", "l2")
        sn.prepare("dead", "x2")
        res = collect(store, sn, blob_roots=[], snapshot_roots=["ctr"])
        assert res.errors == []
        assert set(res.removed_snapshots) == {"x1", "x2", "dead"}
        assert {i.key for i in sn.walk()} == {"l1", "l2", "ctr"}
        assert res.reclaimed_bytes >= 2000
    finally:
        db.close()
