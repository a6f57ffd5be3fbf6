"""VolumeStore: CRUD, Volume JSON, filters, prune, in-use protection, container life cycle."""

from __future__ import annotations

import os
import re

import pytest

from berth.errors import Conflict, InvalidArgument, NotFound
from berth.metadata.db import Database
from berth.volumes.mountspec import parse_bind, plan_mounts
from berth.volumes.names import ANONYMOUS_LABEL, looks_anonymous, new_anonymous_name, validate_name
from berth.volumes.store import VolumeStore
from tests.helpers import mounts_under


class Users:
    """The engine's in_use callback, driven by the test."""

    def __init__(self) -> None:
        self.by_name: dict[str, list[str]] = {}

    def __call__(self, name: str) -> list[str]:
        return self.by_name.get(name, [])


@pytest.fixture
def users():
    return Users()


@pytest.fixture
def store(tmp_path, users):
    db = Database(str(tmp_path / "meta.db"))
    s = VolumeStore(db, str(tmp_path / "root"), in_use=users)
    yield s
    db.close()


def test_create_inspect_shape(store, tmp_path):
    v = store.create("data", labels={"team": "a"})
    assert v["Name"] == "data" and v["Driver"] == "local" and v["Scope"] == "local"
    assert v["Mountpoint"] == str(tmp_path / "root/volumes/data/_data")
    assert os.path.isdir(v["Mountpoint"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", v["CreatedAt"])
    assert v["Labels"] == {"team": "a"} and v["Options"] is None
    assert "UsageData" not in v
    assert store.inspect("data") == v
    assert sorted(os.listdir(tmp_path / "root/volumes")) == ["data"]


def test_create_is_idempotent(store):
    a = store.create("data")
    assert store.create("data", labels={"x": "y"}) == a


def test_create_other_driver(store):
    with pytest.raises(NotFound, match='plugin "nfs" not found'):
        store.create("data", driver="nfs")


def test_create_random_name(store):
    v = store.create()
    assert looks_anonymous(v["Name"]) and v["Labels"] == {}
    a = store.create(anonymous=True)
    assert a["Labels"] == {ANONYMOUS_LABEL: ""}


@pytest.mark.parametrize("name", ["a", "-x", "a/b", "../x", "x y", ".hidden", "é1"])
def test_create_bad_names_leave_nothing(store, tmp_path, name):
    with pytest.raises(InvalidArgument, match=f"^create {re.escape(name)}: "):
        store.create(name)
    assert os.listdir(tmp_path / "root/volumes") == []


@pytest.mark.parametrize("opts,msg", [
    ({"colour": "x"}, 'invalid option: "colour"'),
    ({"type": "tmpfs"}, 'missing required option: "device"'),
    ({"device": "tmpfs"}, 'missing required option: "type"'),
    ({"o": "size=1m"}, 'missing required option: "device"'),
    ({"size": "10g"}, "quota size requested but no quota support"),
    ({"type": "tm/pfs", "device": "x"}, 'invalid option: "type=tm/pfs"'),
])
def test_create_bad_options(store, tmp_path, opts, msg):
    with pytest.raises(InvalidArgument) as e:
        store.create("data", options=opts)
    assert str(e.value) == msg
    assert os.listdir(tmp_path / "root/volumes") == [] and store.list() == []


def test_create_bad_label_and_option_types(store):
    with pytest.raises(InvalidArgument, match="invalid labels"):
        store.create("data", labels=["a=b"])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="invalid options"):
        store.create("data", options="type=tmpfs")  # type: ignore[arg-type]
    assert store.list() == []


def test_options_recorded(store):
    v = store.create("t1", options={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    assert v["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}


def test_names():
    assert validate_name("a1") == "a1" and validate_name("A_b.c-d") == "A_b.c-d"
    assert looks_anonymous(new_anonymous_name()) and new_anonymous_name() != new_anonymous_name()


def test_missing(store):
    with pytest.raises(NotFound) as e:
        store.inspect("nope")
    assert str(e.value) == "get nope: no such volume"
    with pytest.raises(NotFound, match="^get nope: no such volume$"):
        store.remove("nope")
    store.remove("nope", force=True)


def test_remove(store, tmp_path):
    v = store.create("data")
    with open(os.path.join(v["Mountpoint"], "f"), "w") as f:
        f.write("x")
    os.mkdir(os.path.join(v["Mountpoint"], "d"), 0o500)
    store.remove("data")
    assert os.listdir(tmp_path / "root/volumes") == [] and not store.exists("data")


def test_remove_in_use(store, users):
    store.create("data")
    users.by_name["data"] = ["c1", "c2"]
    with pytest.raises(Conflict) as e:
        store.remove("data")
    assert str(e.value) == "remove data: volume is in use - [c1, c2]"
    assert store.exists("data")
    store.mount("data", "c3")
    users.by_name.clear()
    with pytest.raises(Conflict, match=r"in use - \[c3\]"):
        store.remove("data", force=True)
    store.unmount("data", "c3")
    store.remove("data")


def test_list_filters(store, users):
    store.create("alpha", labels={"env": "prod", "tier": "web"})
    store.create("beta", labels={"env": "dev"})
    store.create("gamma")
    users.by_name["beta"] = ["c1"]

    def names(f):
        return [v["Name"] for v in store.list(f)]

    assert names(None) == ["alpha", "beta", "gamma"]
    assert names({"name": ["al"]}) == ["alpha"]
    assert names({"name": ["^(beta|gamma)$"]}) == ["beta", "gamma"]
    assert names({"label": ["env"]}) == ["alpha", "beta"]
    assert names({"label": ["env=prod", "tier=web"]}) == ["alpha"]
    assert names({"label": ["env=prod", "tier=db"]}) == []
    assert names({"dangling": ["true"]}) == ["alpha", "gamma"]
    assert names({"dangling": {"0": True}}) == ["beta"]
    assert names('{"driver": ["local"]}') == ["alpha", "beta", "gamma"]
    assert names({"driver": ["other"]}) == []
    with pytest.raises(InvalidArgument, match="^invalid filter 'colour'$"):
        store.list({"colour": ["x"]})
    with pytest.raises(InvalidArgument, match="^invalid filter 'dangling=maybe'$"):
        store.list({"dangling": ["maybe"]})
    with pytest.raises(InvalidArgument):
        store.list("{not json")


def test_usage_data(store, users):
    v = store.create("data")
    with open(os.path.join(v["Mountpoint"], "f"), "wb") as f:
        f.write(b"x" * 1000)
    os.link(os.path.join(v["Mountpoint"], "f"), os.path.join(v["Mountpoint"], "g"))
    users.by_name["data"] = ["c1"]
    assert store.inspect("data", usage=True)["UsageData"] == {"Size": 1000, "RefCount": 1}
    assert store.list(usage=True)[0]["UsageData"]["RefCount"] == 1


def test_prune(store, users):
    store.create("named", labels={"keep": "no"})
    anon = store.create(anonymous=True)["Name"]
    anon_used = store.create(anonymous=True, labels={"keep": "yes"})["Name"]
    users.by_name[anon_used] = ["c1"]
    with open(os.path.join(store.path(anon), "f"), "wb") as f:
        f.write(b"y" * 10)
    assert store.prune() == {"VolumesDeleted": [anon], "SpaceReclaimed": 10}
    users.by_name.clear()
    assert store.prune({"all": ["true"], "label!": ["keep=yes"]}) == {
        "VolumesDeleted": ["named"], "SpaceReclaimed": 0}
    assert store.prune({"all": ["1"], "label": ["keep=no"]})["VolumesDeleted"] == []
    assert store.prune({"all": ["false"]})["VolumesDeleted"] == [anon_used]
    assert store.list() == []
    with pytest.raises(InvalidArgument, match="invalid filter 'dangling'"):
        store.prune({"dangling": ["true"]})
    with pytest.raises(InvalidArgument, match="invalid filter 'all=yes'"):
        store.prune({"all": ["yes"]})


def test_reopen_recovers_interrupted_operations(tmp_path, users):
    db = Database(str(tmp_path / "meta.db"))
    s = VolumeStore(db, str(tmp_path / "root"), in_use=users)
    s.create("data")
    os.makedirs(tmp_path / "root/volumes/.tmp-dead/_data")
    os.makedirs(tmp_path / "root/volumes/.trash-dead/_data/x")
    s.create("removing")
    db.execute("UPDATE volumes SET removing=1 WHERE name='removing'")  # crash inside rm
    s.create("moved")
    db.execute("UPDATE volumes SET removing=1 WHERE name='moved'")  # crash after the rename
    os.rename(tmp_path / "root/volumes/moved", tmp_path / "root/volumes/.trash-moved")
    s.create("elsewhere")
    os.rename(tmp_path / "root/volumes/elsewhere", tmp_path / "elsewhere")  # disk not there (yet)
    os.makedirs(tmp_path / "root/volumes/orphan/_data")  # crash in create, after the rename
    os.makedirs(tmp_path / "root/volumes/.not-a-volume/_data")
    s2 = VolumeStore(db, str(tmp_path / "root"), in_use=users)
    assert [v["Name"] for v in s2.list()] == ["data", "elsewhere", "orphan"]
    assert s2.inspect("orphan")["Mountpoint"] == s2.path("orphan")
    assert sorted(os.listdir(tmp_path / "root/volumes")) == [".not-a-volume", "data", "orphan"]
    db.close()


def test_life_cycle_prepare_attach_detach_remove_anonymous(store, users, tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "cache").mkdir(parents=True)
    (rootfs / "cache/seed").write_text("seed")
    (rootfs / "data").mkdir()
    (rootfs / "data/img").write_text("image")
    host = tmp_path / "hostdir/sub"
    mounts = plan_mounts(binds=["named:/data", f"{host}:/h", "nc:/nc:nocopy"], volumes=["/cache"])
    prepared = store.prepare(mounts)
    assert host.is_dir()  # -v creates a missing bind source
    by = {m.destination: m for m in prepared}
    anon = by["/cache"].volume_name
    assert looks_anonymous(anon) and by["/cache"].source == store.path(anon)
    assert store.inspect(anon)["Labels"] == {ANONYMOUS_LABEL: ""}
    assert by["/data"].source == store.path("named")
    (rootfs / "nc").mkdir()
    (rootfs / "nc/x").write_text("x")

    filled = store.attach(prepared, "c1", rootfs=str(rootfs))
    assert sorted(filled) == sorted(["named", anon])
    assert open(os.path.join(store.path(anon), "seed")).read() == "seed"
    assert os.listdir(store.path("nc")) == []  # nocopy
    assert store.users("named") == ["c1"]

    # a second container: the volume is no longer empty, nothing is copied again
    (rootfs / "data/img").write_text("changed")
    assert store.attach(prepared, "c2", rootfs=str(rootfs)) == []
    assert open(os.path.join(store.path("named"), "img")).read() == "image"
    store.detach(prepared, "c2")
    store.detach(None, "c1")
    assert store.users("named") == []

    users.by_name[anon] = ["c9"]
    assert store.remove_anonymous(prepared, "c1") == []
    users.by_name[anon] = ["c1"]
    assert store.remove_anonymous(prepared, "c1") == [anon]
    assert store.exists("named") and store.exists("nc") and not store.exists(anon)


def test_prepare_failure_removes_what_it_created(store, tmp_path):
    mounts = [parse_bind("/cache"), parse_bind("fresh:/f")]
    bad = parse_bind("other:/o")
    bad.driver_options = {"colour": "red"}
    with pytest.raises(InvalidArgument):
        store.prepare([*mounts, bad])
    assert store.list() == [] and os.listdir(tmp_path / "root/volumes") == []


def test_prepare_existing_with_other_driver(store):
    store.create("data")
    m = parse_bind("data:/d", volume_driver="nfs")
    with pytest.raises(Conflict, match="volume name must be unique"):
        store.prepare([m])


@pytest.mark.root
def test_tmpfs_volume_mounted_while_used(store, tmp_path, no_leaked_mounts):
    store.create("tv", options={"type": "tmpfs", "device": "tmpfs", "o": "size=1m,mode=0750"})
    path = store.path("tv")
    prepared = store.prepare([parse_bind("tv:/t")])
    try:
        store.attach(prepared, "c1")
        store.attach(prepared, "c2")
        assert mounts_under(path) == [path]
        assert oct(os.stat(path).st_mode & 0o7777) == "0o750"
        with open(os.path.join(path, "f"), "w") as f:
            f.write("hi")
        store.detach(prepared, "c1")
        assert mounts_under(path) == [path]
        store.detach(prepared, "c2")
        assert mounts_under(path) == []
        assert os.listdir(path) == []  # the data lived on the tmpfs
        store.remove("tv")
    finally:
        for mp in reversed(mounts_under(str(tmp_path))):
            os.system(f"umount -l {mp!r}")


@pytest.mark.root
def test_bind_device_volume_and_remove_refuses_mounts(store, tmp_path, no_leaked_mounts):
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "keep").write_text("precious")
    store.create("bv", options={"type": "none", "device": str(dev), "o": "bind"})
    path = store.path("bv")
    try:
        store.mount("bv", "c1")
        assert os.listdir(path) == ["keep"]
        store.unmount("bv", "c1")
        assert mounts_under(path) == []
        os.makedirs(os.path.join(path, "m"))
        os.system(f"mount --bind {str(dev)!r} {os.path.join(path, 'm')!r}")
        with pytest.raises(Conflict, match="a mount is still in place"):
            store.remove("bv")
        assert (dev / "keep").read_text() == "precious" and store.exists("bv")
    finally:
        for mp in reversed(mounts_under(str(tmp_path))):
            os.system(f"umount -l {mp!r}")
    assert (dev / "keep").exists()


@pytest.mark.root
def test_failed_device_mount_leaves_no_reference(store):
    store.create("bad", options={"type": "ext4", "device": "/nonexistent-device-berth"})
    with pytest.raises(Exception, match="failed to mount local volume"):
        store.mount("bad", "c1")
    assert store.users("bad") == []


def test_concurrent_create_same_name(tmp_path, users):
    import threading

    db = Database(str(tmp_path / "meta.db"))
    s = VolumeStore(db, str(tmp_path / "root"), in_use=users)
    results, errors = [], []

    def worker():
        try:
            results.append(s.create("shared")["Name"])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == ["shared"] * 6
    assert sorted(os.listdir(tmp_path / "root/volumes")) == ["shared"]
    db.close()


@pytest.mark.root
def test_attach_copies_up_from_snapshot_mounts(store, tmp_path, no_leaked_mounts):
    from berth.mount import Mount

    lower, upper, work = (tmp_path / n for n in ("lower", "upper", "work"))
    for d in (lower / "data", upper / "data", work):
        d.mkdir(parents=True)
    (lower / "data/a").write_text("a")
    (upper / "data/b").write_text("b")
    snap = [Mount("overlay", "overlay", [f"lowerdir={lower}", f"upperdir={upper}", f"workdir={work}"])]
    prepared = store.prepare(plan_mounts(volumes=["/data"]))
    assert store.attach(prepared, "c1", rootfs_mounts=snap) == [prepared[0].volume_name]
    assert sorted(os.listdir(prepared[0].source)) == ["a", "b"]
    assert mounts_under(str(tmp_path)) == []
    store.detach(prepared, "c1")
    # not empty any more: no view is mounted at all (a bogus mount list is never used)
    bogus = [Mount("overlay", "overlay", [f"lowerdir={tmp_path}/x:{tmp_path}/y"])]
    assert store.attach(prepared, "c2", rootfs_mounts=bogus) == []
    store.detach(prepared, "c2")


@pytest.mark.root
def test_open_sweeps_a_view_left_mounted(tmp_path, users, no_leaked_mounts):
    db = Database(str(tmp_path / "meta.db"))
    VolumeStore(db, str(tmp_path / "root"), in_use=users)
    view = tmp_path / "root/volumes/.tmp-views/view-dead"
    view.mkdir(parents=True)
    src = tmp_path / "src"
    src.mkdir()
    (src / "keep").write_text("k")
    os.system(f"mount --bind {str(src)!r} {str(view)!r}")
    VolumeStore(db, str(tmp_path / "root"), in_use=users)
    assert mounts_under(str(tmp_path)) == [] and os.listdir(tmp_path / "root/volumes") == []
    assert (src / "keep").exists()
    db.close()
