"""Image parents (Docker's Parent): intermediate images hidden from ``images``, dangling filters,
``rmi`` pruning untagged parents, ``image prune`` keeping intermediates; sizes before/after unpack."""

from __future__ import annotations

import json

import pytest

from berth.content import ContentStore
from berth.errors import Conflict, InvalidArgument
from berth.images.blobs import put_image
from berth.images.store import ImageStore
from berth.metadata.db import Database
from berth.oci import image as oci
from tests.unit.test_images_util import put_layer


@pytest.fixture
def env(tmp_path):
    db = Database(str(tmp_path / "meta.db"))
    content = ContentStore(str(tmp_path / "content"))
    used: set[str] = set()
    store = ImageStore(db, content, in_use=lambda i: i in used)
    yield store, content, used
    db.close()


def _image(content, layers, step: str, created: str = "2024-01-02T03:04:05Z") -> oci.Descriptor:
    cfg = {"architecture": oci.host_platform().architecture, "os": "linux", "created": created,
           "config": {"Cmd": ["sh"]},
           "history": [{"created": created, "created_by": f"step {i}"} for i in range(len(layers))]
           + [{"created": created, "created_by": step, "empty_layer": True}]}
    return put_image(content, layers, cfg)


def _build(store, content):
    """base (tagged) <- s1 (+layer) <- s2 (config only) <- app (+layer, tagged): a build's steps."""
    l1 = put_layer(content, {"bin/sh": b"sh" * 100})
    l2 = put_layer(content, {"etc/conf": b"c" * 50})
    l3 = put_layer(content, {"app/run": b"r" * 70})
    base = store.add(_image(content, [l1], "FROM"), names=["base:1"])
    s1 = store.add(_image(content, [l1, l2], "RUN make", "2024-01-03T00:00:00Z"), parent=base.id)
    s2 = store.add(_image(content, [l1, l2], "ENV A=1", "2024-01-04T00:00:00Z"), parent=s1.id)
    app = store.add(_image(content, [l1, l2, l3], "COPY app", "2024-01-05T00:00:00Z"), names=["app:1"],
                    parent=s2.id)
    return base, s1, s2, app


def _ids(items):
    return [i["Id"] for i in items]


def test_parents_hide_intermediate_images(env):
    store, content, _ = env
    base, s1, s2, app = _build(store, content)
    assert store.get(app.id).parent == s2.id and store.children(s1.id) == [s2.id]
    assert store.inspect("app:1")["Parent"] == s2.id and store.inspect("base:1")["Parent"] == ""
    assert _ids(store.list()) == [app.id, base.id]
    listed = store.list(all=True)
    assert _ids(listed) == [app.id, s2.id, s1.id, base.id]
    by_id = {i["Id"]: i for i in listed}
    assert by_id[s1.id]["RepoTags"] == ["<none>:<none>"] and by_id[s1.id]["RepoDigests"] == ["<none>@<none>"]
    assert by_id[s1.id]["ParentId"] == base.id and by_id[base.id]["ParentId"] == ""
    assert by_id[app.id]["RepoTags"] == ["app:1"] and by_id[app.id]["Containers"] == -1
    # the chain's layers are shared: the top image's unique part is its own layer
    assert by_id[app.id]["UniqueSize"] == content.info(store.read_manifest(app).layers[-1].digest).size
    # dangling = untagged and childless: none yet
    assert store.list(filters={"dangling": ["true"]}) == []
    assert store.list(all=True, filters={"dangling": ["true"]}) == []
    assert _ids(store.list(all=True, filters={"dangling": ["false"]})) == [app.id, base.id]
    assert _ids(store.list(filters={"reference": ["app"]})) == [app.id]
    with pytest.raises(InvalidArgument, match="dangling=maybe"):
        store.list(filters={"dangling": ["maybe"]})


def test_parent_must_be_known(env):
    store, content, _ = env
    layer = put_layer(content, {"a": b"1"})
    with pytest.raises(InvalidArgument, match="parent"):
        store.add(_image(content, [layer], "x"), parent="sha256:" + "0" * 64)
    img = store.add(_image(content, [layer], "x"))
    with pytest.raises(InvalidArgument, match="parent"):
        store.add(_image(content, [layer], "x"), parent=img.id)  # itself
    assert store.get(img.id).parent == ""


def test_untagging_the_last_name_of_a_parent_keeps_it_as_intermediate(env):
    store, content, _ = env
    base, s1, s2, app = _build(store, content)
    assert store.remove("base:1") == [{"Untagged": "base:1"}]
    assert store.exists(base.id)
    assert base.id not in _ids(store.list()) and base.id in _ids(store.list(all=True))
    with pytest.raises(Conflict, match=r"\(cannot be forced\) - image has dependent child images"):
        store.remove(s1.id, force=True)
    assert store.exists(s1.id)


def test_rmi_prunes_the_untagged_parent_chain(env):
    store, content, _ = env
    base, s1, s2, app = _build(store, content)
    got = store.remove("app:1")
    assert got == [{"Untagged": "app:1"}, {"Deleted": app.id}, {"Deleted": s2.id}, {"Deleted": s1.id}]
    assert [store.exists(i.id) for i in (base, s1, s2, app)] == [True, False, False, False]
    assert _ids(store.list(all=True)) == [base.id]


def test_rmi_noprune_leaves_the_parent_dangling(env):
    store, content, _ = env
    base, s1, s2, app = _build(store, content)
    assert store.remove("app:1", prune=False) == [{"Untagged": "app:1"}, {"Deleted": app.id}]
    assert store.exists(s2.id)
    assert _ids(store.list(filters={"dangling": ["true"]})) == [s2.id]  # childless now
    assert _ids(store.list()) == [s2.id, base.id]


def test_rmi_stops_at_a_parent_that_is_used_named_or_shared(env):
    store, content, used = env
    base, s1, s2, app = _build(store, content)
    other = store.add(_image(content, [put_layer(content, {"o": b"o"})], "other"), parent=s1.id)
    used.add(s2.id)
    assert store.remove("app:1") == [{"Untagged": "app:1"}, {"Deleted": app.id}]  # s2 is in use
    used.discard(s2.id)
    # s2 goes, s1 stays: other still has s1 as its parent
    assert store.remove(s2.id) == [{"Deleted": s2.id}]
    assert store.exists(s1.id) and store.exists(other.id)
    assert store.remove(other.id) == [{"Deleted": other.id}, {"Deleted": s1.id}]  # base is named
    assert store.exists(base.id)


def test_prune_keeps_intermediate_images(env):
    store, content, used = env
    base, s1, s2, app = _build(store, content)
    head = store.add(_image(content, [put_layer(content, {"h": b"h"})], "dangling head"), parent=s2.id)
    loose = store.add(_image(content, [put_layer(content, {"l": b"l"})], "loose"))
    kept = store.add(_image(content, [put_layer(content, {"k": b"k"})], "kept"))
    used.add(kept.id)
    res = store.prune()
    deleted = [d["Deleted"] for d in res["ImagesDeleted"] if "Deleted" in d]
    assert head.id in deleted and loose.id in deleted
    assert s2.id not in deleted and s1.id not in deleted  # parents of app:1
    assert all(store.exists(i.id) for i in (base, s1, s2, app, kept))
    assert res["SpaceReclaimed"] > 0  # no snapshots here, but the deleted images' blobs were freed
    assert store.prune()["ImagesDeleted"] is None
    # prune -a: the unused named images go, and with them their untagged parents
    res = store.prune(all=True)
    assert {"Untagged": "app:1"} in res["ImagesDeleted"] and {"Untagged": "base:1"} in res["ImagesDeleted"]
    assert [i.id for i in store.all()] == [kept.id]


def test_prune_label_filter(env):
    store, content, _ = env
    layer = put_layer(content, {"x": b"x"})
    cfg = {"architecture": oci.host_platform().architecture, "os": "linux", "created": "2024-01-01T00:00:00Z",
           "config": {"Labels": {"keep": "no"}}}
    a = store.add(put_image(content, [layer], cfg))
    b = store.add(_image(content, [layer], "b"))
    res = store.prune(filters={"label": ["keep=no"]})
    assert res["ImagesDeleted"] == [{"Deleted": a.id}] and store.exists(b.id)


def test_parent_column_migrates_an_old_database(tmp_path):
    """A data root made before parents existed (schema 1) opens, its images get parent ""."""
    from berth.images import store as st

    db = Database(str(tmp_path / "meta.db"))
    db.migrate("images", st._MIGRATIONS[:1])
    content = ContentStore(str(tmp_path / "content"))
    layer = put_layer(content, {"a": b"1"})
    m = _image(content, [layer], "old")
    store_id = oci.parse_manifest(content.read(m.digest), m.media_type).config.digest
    with db.transaction() as conn:
        conn.execute("INSERT INTO images(id, manifest, manifest_digest, added) VALUES(?, ?, ?, 0)",
                     (store_id, json.dumps(m.to_dict()), m.digest))
    store = ImageStore(db, content)
    assert db.version("images") == len(st._MIGRATIONS)
    assert store.get(store_id).parent == ""
    db.close()


@pytest.mark.root
def test_sizes_are_compressed_until_unpacked(tmp_path):
    """Size/history: the compressed blob size before unpack, the uncompressed tar size after."""
    from berth.snapshots import open_snapshotter

    db = Database(str(tmp_path / "meta.db"))
    content = ContentStore(str(tmp_path / "content"))
    snap = open_snapshotter(str(tmp_path / "snapshots"), db, "vfs")
    store = ImageStore(db, content, snap)
    l1 = put_layer(content, {"bin/tool": bytes(200_000)})           # compresses very well
    l2 = put_layer(content, {"etc/data": bytes(range(256)) * 400})
    img = store.add(_image(content, [l1, l2], "x"), names=["sz:1"])
    packed = l1.descriptor.size + l2.descriptor.size
    assert store.list()[0]["Size"] == packed == store.inspect("sz:1")["Size"]
    assert [h["Size"] for h in store.history("sz:1") if h["Size"]] == [l2.descriptor.size, l1.descriptor.size]
    store.unpack("sz:1")
    unpacked = l1.uncompressed_size + l2.uncompressed_size
    assert unpacked > 2 * packed
    assert store.list()[0]["Size"] == unpacked == store.inspect("sz:1")["Size"] == store.size(img.id)
    assert [h["Size"] for h in store.history("sz:1") if h["Size"]] == [l2.uncompressed_size,
                                                                        l1.uncompressed_size]
    # a size recorded for a layer whose snapshot is gone (removed behind the store's back) is not used
    store.remove("sz:1")
    img = store.add(_image(content, [l1, l2], "x"), names=["sz:1"])
    store.record_layer(oci.chain_ids([l1.diff_id])[0], l1.diff_id, l1.uncompressed_size)
    assert store.list()[0]["Size"] == packed
    store.remove("sz:1")
    assert list(snap.walk()) == []
    db.close()


@pytest.mark.root
def test_rmi_deletes_layers_of_each_pruned_parent(tmp_path):
    from berth.snapshots import open_snapshotter

    db = Database(str(tmp_path / "meta.db"))
    content = ContentStore(str(tmp_path / "content"))
    snap = open_snapshotter(str(tmp_path / "snapshots"), db, "vfs")
    store = ImageStore(db, content, snap)
    base, s1, s2, app = _build(store, content)
    store.unpack("app:1")
    chains = oci.chain_ids(store.read_config(app).diff_ids)
    got = store.remove("app:1")
    assert got == [{"Untagged": "app:1"}, {"Deleted": app.id}, {"Deleted": chains[2]}, {"Deleted": s2.id},
                   {"Deleted": s1.id}, {"Deleted": chains[1]}]
    assert {i.key for i in snap.walk()} == {chains[0]}  # base:1's layer stays
    res = store.prune(all=True)
    assert {"Deleted": chains[0]} in res["ImagesDeleted"] and res["SpaceReclaimed"] > 0
    assert list(snap.walk()) == []
    db.close()


def test_history_names_the_parent_chain(env):
    """One history entry per step image, as a build makes them: IDs and tags walk the parents."""
    store, content, _ = env
    base, s1, s2, app = _build(store, content)
    hist = store.history("app:1")
    # app: 3 layer entries + 1 empty one; its parents s2, s1, base take the entries below it
    assert [h["Id"] for h in hist] == [app.id, s2.id, s1.id, base.id]
    assert [h["Tags"] for h in hist] == [["app:1"], None, None, ["base:1"]]
    assert [h["CreatedBy"] for h in hist][:2] == ["COPY app", "step 2"]
    assert store.history(base.id)[0]["Id"] == base.id and store.history(base.id)[1]["Id"] == "<missing>"


def test_prune_until_and_label_not(env):
    store, content, _ = env
    layer = put_layer(content, {"x": b"x"})

    def labelled(created: str, labels: dict | None) -> oci.Descriptor:
        cfg = {"architecture": oci.host_platform().architecture, "os": "linux", "created": created,
               "config": {"Labels": labels}}
        return put_image(content, [layer], cfg)

    old = store.add(labelled("2020-01-01T00:00:00Z", None))
    new = store.add(labelled("2025-01-01T00:00:00Z", None))
    keep = store.add(labelled("2019-01-01T00:00:00Z", {"keep": "1"}))
    res = store.prune(until=1_600_000_000.0, filters={"label!": ["keep"]})  # 2020-09-13
    assert res["ImagesDeleted"] == [{"Deleted": old.id}]
    assert store.exists(new.id) and store.exists(keep.id)
