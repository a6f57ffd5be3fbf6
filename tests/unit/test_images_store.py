import os

import pytest

from berth.content import ContentStore
from berth.errors import Conflict, InvalidArgument, NotFound
from berth.images.store import ImageStore, parse_time, rfc3339
from berth.metadata.db import Database
from tests.unit.test_images_util import make_image


@pytest.fixture
def env(tmp_path):
    db = Database(str(tmp_path / "meta.db"))
    content = ContentStore(str(tmp_path / "content"))
    used: set[str] = set()
    store = ImageStore(db, content, in_use=lambda i: i in used)
    yield store, content, used
    db.close()


def test_add_get_tag_resolution(env):
    store, content, _ = env
    m = make_image(content, [{"a": b"1"}])
    img = store.add(m, names=["busybox"], repo_digests=[f"busybox@{m.digest}"])
    assert img.id.startswith("sha256:")
    assert img.repo_tags == ["busybox:latest"]
    assert img.repo_digests == [f"busybox@{m.digest}"]
    for ref in ["busybox", "busybox:latest", "docker.io/library/busybox:latest", img.id, img.id[7:19],
                img.id[:12], f"busybox@{m.digest}"]:
        assert store.get(ref).id == img.id, ref
    with pytest.raises(NotFound, match="No such image: nope"):
        store.get("nope")
    with pytest.raises(NotFound):
        store.get("busybox:other")
    store.tag("busybox", "localhost:5000/x/y:v1")
    assert store.get("localhost:5000/x/y:v1").id == img.id
    with pytest.raises(InvalidArgument):
        store.tag("busybox", f"x@{m.digest}")
    with pytest.raises(InvalidArgument):
        store.add(m, names=["Bad Name"])


def test_add_requires_blobs(env, tmp_path):
    store, content, _ = env
    other = ContentStore(str(tmp_path / "other"))
    m = make_image(other, [{"a": b"1"}])
    with pytest.raises(NotFound):
        store.add(m)


def test_tag_moves_between_images(env):
    store, content, _ = env
    a = store.add(make_image(content, [{"a": b"1"}]), names=["app:v1"])
    b = store.add(make_image(content, [{"b": b"2"}]), names=["app:v1"])
    assert store.get("app:v1").id == b.id
    assert store.get(a.id).tags == []
    assert store.list(filters={"dangling": ["true"]})[0]["Id"] == a.id


def test_rmi_untag_then_delete(env):
    store, content, _ = env
    img = store.add(make_image(content, [{"a": b"1"}]), names=["one:latest", "two:latest"])
    assert store.remove("one") == [{"Untagged": "one:latest"}]
    assert store.get("two").id == img.id
    res = store.remove("two")
    assert res == [{"Untagged": "two:latest"}, {"Deleted": img.id}]
    with pytest.raises(NotFound):
        store.get(img.id)
    # blobs are collected
    assert not content.exists(img.id)


def test_rmi_digest_refs_go_with_last_tag(env):
    store, content, _ = env
    m = make_image(content, [{"a": b"1"}])
    img = store.add(m, names=["app:1"], repo_digests=[f"app@{m.digest}"])
    res = store.remove("app:1")
    assert res == [{"Untagged": "app:1"}, {"Untagged": f"app@{m.digest}"}, {"Deleted": img.id}]


def test_rmi_by_id_with_several_repos_needs_force(env):
    store, content, _ = env
    img = store.add(make_image(content, [{"a": b"1"}]), names=["a:1", "b:1"])
    with pytest.raises(Conflict, match="referenced in multiple repositories"):
        store.remove(img.id[:12])
    res = store.remove(img.id[:12], force=True)
    assert {"Untagged": "a:1"} in res and {"Untagged": "b:1"} in res and res[-1] == {"Deleted": img.id}


def test_rmi_in_use(env):
    store, content, used = env
    img = store.add(make_image(content, [{"a": b"1"}]), names=["a:1"])
    used.add(img.id)
    with pytest.raises(Conflict, match="must force"):
        store.remove("a:1")
    with pytest.raises(Conflict):
        store.remove(img.id)
    assert store.get("a:1").id == img.id
    res = store.remove(img.id, force=True)
    assert res[-1] == {"Deleted": img.id}


def test_list_sizes_shared_unique(env):
    store, content, _ = env
    base = {"base": b"x" * 1000}
    a = store.add(make_image(content, [base, {"a": b"a" * 10}]), names=["a"])
    b = store.add(make_image(content, [base, {"b": b"b" * 20}], created="2024-02-01T00:00:00Z"), names=["b"])
    summaries = {s["Id"]: s for s in store.list()}
    sa, sb = summaries[a.id], summaries[b.id]
    assert sa["SharedSize"] == sb["SharedSize"] > 0
    assert sa["Size"] == sa["SharedSize"] + sa["UniqueSize"]
    assert sb["UniqueSize"] > 0
    assert [s["Id"] for s in store.list()] == [b.id, a.id]  # newest first
    assert [s["Id"] for s in store.list(filters={"reference": ["a"]})] == [a.id]
    assert store.list(filters={"reference": ["zz*"]}) == []
    store.tag("a", "other:2")
    assert [s["RepoTags"] for s in store.list(filters={"reference": ["a"]})] == [["a:latest"]]  # as moby
    assert sorted(store.list(filters={"reference": ["*"]})[1]["RepoTags"]) == ["a:latest", "other:2"]


def test_inspect_and_history(env):
    store, content, _ = env
    m = make_image(content, [{"a": b"1"}, {"b": b"22"}], labels={"k": "v"},
                   extra_history=[{"created": "2024-01-03T00:00:00Z", "created_by": "CMD sh",
                                   "empty_layer": True}])
    img = store.add(m, names=["app:1"])
    info = store.inspect("app:1")
    for key in ("Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "Container",
                "ContainerConfig", "DockerVersion", "Author", "Config", "Architecture", "Os", "Size",
                "GraphDriver", "RootFS", "Metadata"):
        assert key in info, key
    assert info["Id"] == img.id and info["RepoTags"] == ["app:1"]
    assert info["Config"]["Labels"] == {"k": "v"}
    assert info["RootFS"]["Type"] == "layers" and len(info["RootFS"]["Layers"]) == 2
    assert info["Metadata"]["LastTagTime"] != "0001-01-01T00:00:00Z"
    assert info["Created"] == "2024-01-02T03:04:05Z"
    hist = store.history("app:1")
    assert len(hist) == 3
    assert hist[0]["Id"] == img.id and hist[0]["Tags"] == ["app:1"] and hist[0]["Size"] == 0
    assert hist[0]["CreatedBy"] == "CMD sh"
    assert hist[1]["Id"] == "<missing>" and hist[1]["Size"] > 0
    assert set(hist[0]) == {"Id", "Created", "CreatedBy", "Tags", "Size", "Comment"}


def test_prune(env):
    store, content, used = env
    a = store.add(make_image(content, [{"a": b"1"}]), names=["a"])
    b = store.add(make_image(content, [{"b": b"1"}]))
    c = store.add(make_image(content, [{"c": b"1"}]))
    used.add(c.id)
    res = store.prune()
    assert {"Deleted": b.id} in res["ImagesDeleted"]
    assert store.exists(a.id) and store.exists(c.id) and not store.exists(b.id)
    res = store.prune(all=True)
    assert {"Deleted": a.id} in res["ImagesDeleted"]
    assert store.exists(c.id)
    assert store.prune()["ImagesDeleted"] is None


def test_untag(env):
    store, content, _ = env
    img = store.add(make_image(content, [{"a": b"1"}]), names=["a:1"])
    assert store.untag("a:1") == "a:1"
    assert store.get(img.id).tags == []
    with pytest.raises(NotFound):
        store.untag("a:1")


def test_records_survive_reopen(env, tmp_path):
    store, content, _ = env
    img = store.add(make_image(content, [{"a": b"1"}]), names=["a:1"])
    db2 = Database(os.path.join(tmp_path, "meta.db"))
    again = ImageStore(db2, content)
    assert again.get("a:1").id == img.id
    db2.close()


def test_times():
    assert rfc3339(0) == "0001-01-01T00:00:00Z"
    assert parse_time("2024-01-02T03:04:05Z") == 1704164645.0
    assert abs(parse_time("2024-01-02T03:04:05.123456789Z") - 1704164645.123456789) < 1e-6
    assert parse_time("2024-01-02T04:04:05+01:00") == 1704164645.0
    assert parse_time("garbage") == 0.0
    assert rfc3339(1704164645.5) == "2024-01-02T03:04:05.5Z"


def test_hold_protects_blobs_from_gc(env):
    import time

    from berth.images.blobs import put_json
    from berth.oci import image as oci

    store, content, _ = env
    with store.hold("test") as held:
        d = put_json(content, {"x": 1}, oci.OCI_CONFIG, lease=held)
        unheld = put_json(content, {"y": 2}, oci.OCI_CONFIG)
        time.sleep(0.05)
        res = store.gc()
        assert content.exists(d.digest) and not content.exists(unheld.digest)
        assert unheld.digest in res.removed_blobs
    time.sleep(0.05)
    store.gc()
    assert not content.exists(d.digest)


def test_hostile_ids_and_names(env):
    store, content, _ = env
    store.add(make_image(content, [{"a": b"1"}]), names=["a:1"])
    for bad in ["sha256:../../x", "../x", "%", "_", "sha256:%", "a" * 10000, "", "\x00"]:
        with pytest.raises((NotFound, InvalidArgument)):
            store.get(bad)
