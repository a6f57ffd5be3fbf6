"""save → load round trips of real images through real snapshotters."""

import contextlib
import io

import pytest
import zstandard

from berth.content import ContentStore
from berth.images.bootstrap import busybox_image
from berth.images.saveload import load, save
from berth.images.store import ImageStore
from berth.metadata.db import Database
from berth.snapshots import open_snapshotter
from tests.unit.test_images_util import make_image

pytestmark = pytest.mark.root


@pytest.fixture
def stores(tmp_path):
    made = []

    def make(name, driver="vfs", **kw):
        base = tmp_path / name
        base.mkdir()
        db = Database(str(base / "meta.db"))
        snap = open_snapshotter(str(base / "snap"), db, driver)
        s = ImageStore(db, ContentStore(str(base / "content")), snap, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        for info in sorted(s.snapshotter.walk(), key=lambda i: i.parent == ""):
            with contextlib.suppress(Exception):
                s.snapshotter.remove(info.key)
        s.db.close()


@pytest.mark.parametrize("compress", [None, "zstd"])
def test_busybox_save_load_same_id(stores, compress):
    a, b = stores("a"), stores("b", "overlay")
    img = busybox_image(a)
    a.tag("busybox", "localhost:5000/tools/bb:1")
    buf = io.BytesIO()
    save(a, ["busybox:latest", "localhost:5000/tools/bb:1"], buf)
    data = buf.getvalue()
    if compress == "zstd":
        data = zstandard.ZstdCompressor().compress(data)
    res = load(b, io.BytesIO(data))
    assert sorted(res.messages) == ["Loaded image: busybox:latest", "Loaded image: localhost:5000/tools/bb:1"]
    got = b.get("localhost:5000/tools/bb:1")
    assert got.id == img.id and got.manifest.digest == img.manifest.digest
    top = b.unpack(got.id)
    assert top == a.unpack(img.id)
    # save of the loaded image is byte-identical
    again = io.BytesIO()
    save(b, ["busybox:latest", "localhost:5000/tools/bb:1"], again)
    assert again.getvalue() == buf.getvalue()


def test_gc_keeps_images_containers_and_drops_orphans(stores):
    held: list[str] = []
    s = stores("gc", container_snapshots=lambda: list(held))
    img = s.add(make_image(s.content, [{"a": b"1"}, {"b": b"2"}]), names=["keep:1"])
    top = s.unpack("keep:1")
    s.snapshotter.prepare("ctr-1", top)
    held.append("ctr-1")
    orphan_blob = s.content.write_bytes(b"orphan")
    s.snapshotter.prepare("orphan-base", "")
    s.snapshotter.commit("orphan-committed", "orphan-base")
    res = s.gc()
    assert orphan_blob in res.removed_blobs
    assert "orphan-committed" in res.removed_snapshots
    assert s.snapshotter.stat("ctr-1").kind == "active"
    assert s.snapshotter.stat(top).kind == "committed"
    assert s.content.exists(img.id)
    s.snapshotter.remove("ctr-1")
