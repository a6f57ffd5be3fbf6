import gzip
import io
import json
import os
import tarfile

import pytest

from berth.content import ContentStore
from berth.errors import DataCorrupt, InvalidArgument, LimitExceeded, NotFound
from berth.images.saveload import LoadLimits, load, save
from berth.images.store import ImageStore
from berth.metadata.db import Database
from berth.oci import digest
from berth.oci import image as oci
from tests.unit.test_images_util import make_image, make_tar


def new_store(path) -> ImageStore:
    os.makedirs(path, exist_ok=True)
    return ImageStore(Database(os.path.join(path, "meta.db")), ContentStore(os.path.join(path, "content")))


@pytest.fixture
def src(tmp_path):
    s = new_store(str(tmp_path / "src"))
    yield s
    s.db.close()


@pytest.fixture
def dst(tmp_path):
    s = new_store(str(tmp_path / "dst"))
    yield s
    s.db.close()


def saved(store, refs) -> bytes:
    buf = io.BytesIO()
    save(store, refs, buf)
    return buf.getvalue()


def members(data: bytes) -> dict[str, bytes]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf:
            out[m.name] = tf.extractfile(m).read() if m.isreg() else None
    return out


def blob_count(store) -> int:
    return sum(1 for _ in store.content.walk())


def test_save_format_is_docker25_and_oci(src):
    m = make_image(src.content, [{"a": b"1"}, {"b": b"2"}])
    img = src.add(m, names=["app:1", "app:2", "other:x"])
    data = saved(src, ["app:1"])
    files = members(data)
    want = {"blobs", "blobs/sha256", "index.json", "manifest.json", "oci-layout", "repositories"}
    assert want <= set(files)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    mj = json.loads(files["manifest.json"])
    assert mj[0]["RepoTags"] == ["app:1"] and mj[0]["Config"] == "blobs/sha256/" + img.id[7:]
    assert all(files[p] is not None for p in mj[0]["Layers"])
    idx = json.loads(files["index.json"])
    ann = idx["manifests"][0]["annotations"]
    assert ann == {"io.containerd.image.name": "docker.io/library/app:1",
                   "org.opencontainers.image.ref.name": "1"}
    assert idx["manifests"][0]["digest"] == m.digest
    for name, body in files.items():
        if name.startswith("blobs/sha256/"):
            assert digest.sha256(body) == "sha256:" + name.rsplit("/", 1)[1]
    # a bare repo name saves all its tags; deterministic output
    assert json.loads(members(saved(src, ["app"]))["manifest.json"])[0]["RepoTags"] == ["app:1", "app:2"]
    assert saved(src, ["app:1"]) == data
    # by ID: no names
    mj = json.loads(members(saved(src, [img.id]))["manifest.json"])
    assert mj[0]["RepoTags"] is None


def test_round_trip_same_id_and_digest(src, dst):
    m1 = make_image(src.content, [{"a": b"1"}])
    m2 = make_image(src.content, [{"a": b"1"}, {"c": b"3"}])
    i1 = src.add(m1, names=["one:latest"])
    i2 = src.add(m2, names=["two:latest"])
    res = load(dst, io.BytesIO(saved(src, ["one", "two"])))
    assert sorted(res.messages) == ["Loaded image: one:latest", "Loaded image: two:latest"]
    assert dst.get("one").id == i1.id and dst.get("two").id == i2.id
    assert dst.get("one").manifest.digest == m1.digest
    assert blob_count(dst) == blob_count(src)
    # loading again is idempotent; gzip-compressed archive works too
    res = load(dst, io.BytesIO(gzip.compress(saved(src, ["one"]))))
    assert res.images[0].id == i1.id


def test_load_untagged_reports_id(src, dst):
    img = src.add(make_image(src.content, [{"a": b"1"}]))
    res = load(dst, io.BytesIO(saved(src, [img.id])))
    assert res.messages == [f"Loaded image ID: {img.id}"]


def tar_of(entries: list[tuple]) -> bytes:
    """entries: (name, bytes) regular files, (name, None, linkname) symlinks, (name, 'hard', target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for e in entries:
            ti = tarfile.TarInfo(e[0])
            if len(e) == 3:
                ti.type = tarfile.SYMTYPE if e[1] is None else tarfile.LNKTYPE
                ti.linkname = e[2]
                tf.addfile(ti)
            elif e[1] == "chr":
                ti.type = tarfile.CHRTYPE
                tf.addfile(ti)
            else:
                ti.size = len(e[1])
                tf.addfile(ti, io.BytesIO(e[1]))
    return buf.getvalue()


def legacy_archive(layers: list[bytes], tags, *, symlink_dup=False) -> tuple[bytes, str]:
    diff_ids = [digest.sha256(t) for t in layers]
    cfg = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
           "rootfs": {"type": "layers", "diff_ids": diff_ids}, "created": "2020-01-01T00:00:00Z"}
    cfg_bytes = json.dumps(cfg).encode()
    cfg_hex = digest.sha256(cfg_bytes)[7:]
    entries = [(f"{cfg_hex}.json", cfg_bytes)]
    paths = []
    for i, t in enumerate(layers):
        lid = f"{i:064x}"
        if symlink_dup and i > 0 and t == layers[0]:
            entries.append((f"{lid}/layer.tar", None, f"../{0:064x}/layer.tar"))
        else:
            entries.append((f"{lid}/layer.tar", t))
        entries.append((f"{lid}/json", b"{}"))
        entries.append((f"{lid}/VERSION", b"1.0"))
        paths.append(f"{lid}/layer.tar")
    entries.append(("manifest.json", json.dumps([{"Config": f"{cfg_hex}.json", "RepoTags": tags,
                                                  "Layers": paths}]).encode()))
    entries.append(("repositories", b"{}"))
    return tar_of(entries), "sha256:" + cfg_hex


def test_load_legacy_docker_archive_with_symlinked_layer(dst):
    t1 = make_tar({"a": b"1"})
    data, cfg_id = legacy_archive([t1, t1], ["old:1"], symlink_dup=True)
    res = load(dst, io.BytesIO(data))
    assert res.images[0].id == cfg_id
    m = dst.read_manifest(dst.get("old:1"))
    assert [layer.media_type for layer in m.layers] == [oci.OCI_LAYER, oci.OCI_LAYER]


def test_load_oci_layout_with_nested_index(src, dst):
    m = make_image(src.content, [{"a": b"1"}])
    plat = oci.host_platform()
    other = oci.Descriptor(oci.OCI_MANIFEST, "sha256:" + "9" * 64, 10,
                           platform=oci.Platform("linux", "s390x"))
    nested = oci.Index(oci.OCI_INDEX, [other, oci.Descriptor(m.media_type, m.digest, m.size, platform=plat)])
    nested_bytes = nested.to_bytes()
    nd = digest.sha256(nested_bytes)
    idx = {"schemaVersion": 2, "manifests": [{"mediaType": oci.OCI_INDEX, "digest": nd,
                                              "size": len(nested_bytes),
                                              "annotations": {"org.opencontainers.image.ref.name":
                                                              "localhost/multi:v1"}}]}
    entries = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", json.dumps(idx).encode()),
               (f"blobs/sha256/{digest.sha256(nested_bytes)[7:]}", nested_bytes)]
    for info in src.content.walk():
        entries.append((f"blobs/sha256/{info.digest[7:]}", src.content.read(info.digest)))
    res = load(dst, io.BytesIO(tar_of(entries)))
    img = dst.get("localhost/multi:v1")
    assert img.manifest.digest == m.digest
    assert img.target.digest == digest.sha256(nested_bytes)
    assert res.messages == ["Loaded image: localhost/multi:v1"]


def hostile_cases(src):
    m = make_image(src.content, [{"a": b"1"}])
    good = members(saved_from(src, m))
    mj = json.loads(good["manifest.json"])
    cases = {}
    cases["traversal name"] = [("../../etc/x", b"x")]
    cases["absolute name"] = [("/etc/x", b"x")]
    bad_blob = dict(good)
    first_layer = mj[0]["Layers"][0]
    bad_blob[first_layer] = b"not the layer"
    cases["blob digest mismatch"] = list(bad_blob.items())
    mj_escape = [dict(mj[0], Layers=["../../../etc/passwd"])]
    cases["manifest.json escape"] = [(k, v) for k, v in good.items() if k != "manifest.json"] + [
        ("manifest.json", json.dumps(mj_escape).encode())]
    nolayer = {k: v for k, v in good.items() if k != first_layer}
    cases["missing layer"] = [(k, v) for k, v in nolayer.items() if k != "index.json"]
    cases["symlink out"] = [(k, v) for k, v in good.items() if k not in ("index.json", first_layer)] + [
        (first_layer, None, "../../../../etc/passwd")]
    cases["device"] = [("dev", "chr")]
    cases["not json"] = [("manifest.json", b"{{{")]
    cases["layers null"] = [(k, v) for k, v in good.items() if k not in ("manifest.json", "index.json")] + [
        ("manifest.json", json.dumps([dict(mj[0], Layers=None)]).encode())]
    cases["duplicate"] = [("manifest.json", good["manifest.json"]), ("manifest.json", good["manifest.json"])]
    cases["empty"] = []
    return {k: [e for e in v if e[1] is not None or len(e) == 3] for k, v in cases.items()}


def saved_from(store, m):
    store.add(m, names=["victim:1"])
    return saved(store, ["victim:1"])


@pytest.mark.parametrize("case", ["traversal name", "absolute name", "blob digest mismatch",
                                  "manifest.json escape", "missing layer", "symlink out", "device",
                                  "not json", "layers null", "duplicate", "empty"])
def test_hostile_archives_refused_and_leave_nothing(src, dst, case):
    entries = hostile_cases(src)[case]
    before = blob_count(dst)
    with pytest.raises((InvalidArgument, DataCorrupt, LimitExceeded)):
        load(dst, io.BytesIO(tar_of(entries)))
    assert blob_count(dst) == before
    assert dst.all() == []
    assert not os.listdir(os.path.join(dst.content.root, "ingest")) if os.path.isdir(
        os.path.join(dst.content.root, "ingest")) else True


def test_oversized_metadata_and_entries(dst):
    with pytest.raises(LimitExceeded):
        load(dst, io.BytesIO(tar_of([("manifest.json", b" " * 200)])), limits=LoadLimits(max_meta=100))
    with pytest.raises(LimitExceeded):
        load(dst, io.BytesIO(tar_of([(f"f{i}", b"") for i in range(20)])), limits=LoadLimits(max_entries=10))
    with pytest.raises(InvalidArgument):
        load(dst, io.BytesIO(b"this is not a tar at all" * 100))


def test_save_errors(src):
    with pytest.raises(NotFound):
        save(src, ["nope"], io.BytesIO())
    with pytest.raises(InvalidArgument):
        save(src, [], io.BytesIO())


@pytest.mark.parametrize("how", ["gzip", "plain"])
def test_truncated_archive_refused(src, dst, how):
    src.add(make_image(src.content, [{"a": os.urandom(400_000)}]), names=["t:1"])
    data = saved(src, ["t:1"])
    if how == "gzip":
        data = gzip.compress(data)
    with pytest.raises(InvalidArgument):
        load(dst, io.BytesIO(data[: len(data) // 2]))
    assert blob_count(dst) == 0 and dst.all() == []


def test_load_moves_an_existing_tag(src, dst):
    old = dst.add(make_image(dst.content, [{"old": b"1"}]), names=["app:1"])
    new = src.add(make_image(src.content, [{"new": b"2"}]), names=["app:1"])
    res = load(dst, io.BytesIO(saved(src, ["app:1"])))
    assert res.messages == [
        f"The image app:1 already exists, renaming the old one with ID {old.id} to empty string",
        "Loaded image: app:1"]
    assert dst.get("app:1").id == new.id and dst.get(old.id).tags == []
