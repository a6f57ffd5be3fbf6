"""Unpack into real snapshotters (vfs; overlay as root), diff ID checks, crash safety."""

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from berth.content import ContentStore
from berth.errors import DataCorrupt, NotFound
from berth.images.blobs import Layer, put_image
from berth.images.store import ImageStore
from berth.images.unpack import cleanup_extractions
from berth.metadata.db import Database
from berth.mount import mount_all, unmount_all
from berth.oci import image as oci
from berth.snapshots import open_snapshotter
from tests.unit.test_images_util import make_image, put_layer

DRIVERS = [pytest.param("vfs", marks=pytest.mark.root), pytest.param("overlay", marks=pytest.mark.root)]


def open_env(base: str, driver: str):
    os.makedirs(base, exist_ok=True)
    db = Database(os.path.join(base, "meta.db"))
    content = ContentStore(os.path.join(base, "content"))
    snap = open_snapshotter(os.path.join(base, "snapshots"), db, driver)
    return ImageStore(db, content, snap)


@pytest.fixture
def make_env(tmp_path):
    made = []

    def make(driver: str) -> ImageStore:
        store = open_env(str(tmp_path / f"root-{driver}"), driver)
        made.append(store)
        return store

    yield make
    for store in made:
        for info in sorted(store.snapshotter.walk(), key=lambda i: -len(_chain(store, i.key))):
            with contextlib.suppress(Exception):
                store.snapshotter.remove(info.key)
        store.db.close()


def _chain(store, key):
    out = []
    while key:
        out.append(key)
        key = store.snapshotter.stat(key).parent
    return out


@contextlib.contextmanager
def rootfs(store: ImageStore, chain: str, tmp_path):
    """The merged tree of a committed chain: a view mounted on a tmp dir."""
    key = f"view-{os.getpid()}-{time.monotonic_ns()}"
    mounts = store.snapshotter.view(key, chain)
    target = tmp_path / key
    target.mkdir()
    mount_all(mounts, str(target))
    try:
        yield str(target)
    finally:
        unmount_all(str(target))
        store.snapshotter.remove(key)


LAYERS = [
    {"a/x": b"x", "a/keep": b"k", "d/1": b"1", "d/2": b"2", "etc/hostname": b"one\n"},
    {"a/.wh.x": b"", "d/.wh..wh..opq": b"", "d/3": b"3", "etc/hostname": b"two\n"},
]


@pytest.mark.parametrize("driver", DRIVERS)
def test_unpack_applies_layers_and_whiteouts(make_env, tmp_path, driver, no_leaked_mounts):
    store = make_env(driver)
    img = store.add(make_image(store.content, LAYERS), names=["layered:1"])
    top = store.unpack("layered:1")
    cfg = store.read_config(img)
    chains = oci.chain_ids(cfg.diff_ids)
    assert top == chains[-1]
    for c in chains:
        assert store.snapshotter.stat(c).kind == "committed"
    with rootfs(store, top, tmp_path) as root:
        assert sorted(os.listdir(os.path.join(root, "a"))) == ["keep"]
        assert sorted(os.listdir(os.path.join(root, "d"))) == ["3"]
        with open(os.path.join(root, "etc/hostname")) as f:
            assert f.read() == "two\n"
    assert store.is_unpacked(img)
    # a second unpack applies nothing
    before = {i.key for i in store.snapshotter.walk()}
    assert store.unpack("layered:1") == top
    assert {i.key for i in store.snapshotter.walk()} == before
    # sizes are the uncompressed layer sizes now (recorded at unpack)
    rows = store.db.query("SELECT size FROM image_layers")
    assert len(rows) == 2 and store.list()[0]["Size"] == sum(r["size"] for r in rows)
    info = store.inspect("layered:1")
    assert info["GraphDriver"]["Name"] == driver and info["GraphDriver"]["Data"]["UpperDir"]
    # a second image sharing the first layer reuses its snapshot
    other = store.add(make_image(store.content, [LAYERS[0], {"new": b"n"}]), names=["other:1"])
    store.unpack("other:1")
    assert store.snapshotter.stat(chains[0]).kind == "committed"
    # rmi releases the image's own snapshots but keeps the shared one
    res = store.remove("layered:1")
    assert {"Deleted": img.id} in res and {"Deleted": top} in res
    with pytest.raises(NotFound):
        store.snapshotter.stat(top)
    assert store.snapshotter.stat(chains[0]).kind == "committed"
    store.remove("other:1")
    assert [i.key for i in store.snapshotter.walk()] == []
    assert other.id not in {b.digest for b in store.content.walk()}


@pytest.mark.root
def test_diff_id_mismatch_is_refused(make_env):
    store = make_env("vfs")
    good = put_layer(store.content, {"f": b"1"})
    bad = Layer(good.descriptor, "sha256:" + "0" * 64, good.uncompressed_size)
    cfg = {"architecture": oci.host_platform().architecture, "os": "linux", "config": {}}
    store.add(put_image(store.content, [bad], cfg), names=["bad:1"])
    with pytest.raises(DataCorrupt, match="diff ID"):
        store.unpack("bad:1")
    assert list(store.snapshotter.walk()) == []


@pytest.mark.root
def test_missing_layer_blob(make_env):
    store = make_env("vfs")
    img = store.add(make_image(store.content, [{"f": b"1"}]), names=["gone:1"])
    store.content.delete(store.read_manifest(img).layers[0].digest)
    with pytest.raises(NotFound, match="not in the content store"):
        store.unpack("gone:1")
    assert list(store.snapshotter.walk()) == []


CHILD = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {repo!r})
    import berth.archive
    from tests.e2e.test_images_unpack import open_env
    real = berth.archive.apply_layer
    flag = {flag!r}

    class Slow:
        def __init__(self, src):
            self.src, self.n = src, 0
        def readable(self):
            return True
        def _tick(self, n):
            self.n += n
            if self.n > (1 << 20):
                open(flag, "w").close()
                time.sleep(3600)
        def read(self, n=-1):
            data = self.src.read(65536 if n is None or n < 0 else min(n, 65536))
            self._tick(len(data))
            return data
        def readinto(self, b):
            data = self.read(len(b))
            b[:len(data)] = data
            return len(data)

    def slow_apply(src, root, **kw):
        return real(Slow(src), root, **kw)

    berth.archive.apply_layer = slow_apply
    store = open_env({base!r}, {driver!r})
    store.unpack("big:1")
""")


@pytest.mark.root
@pytest.mark.parametrize("driver", ["vfs", "overlay"])
def test_kill_mid_unpack_leaves_no_committed_partial(make_env, tmp_path, driver):
    store = make_env(driver)
    files = {f"data/{i}": os.urandom(64 << 10) for i in range(48)}
    img = store.add(make_image(store.content, [{"base": b"b"}, files]), names=["big:1"])
    chains = oci.chain_ids(store.read_config(img).diff_ids)
    flag = str(tmp_path / "reached")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = CHILD.format(repo=repo, flag=flag, base=str(tmp_path / f"root-{driver}"), driver=driver)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=repo)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(flag):
            assert child.poll() is None, "child exited before the kill point"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    # reopen as after a crash
    store.db.close()
    again = open_env(str(tmp_path / f"root-{driver}"), driver)
    try:
        assert again.snapshotter.stat(chains[0]).kind == "committed"   # the first layer finished
        with pytest.raises(NotFound):
            again.snapshotter.stat(chains[1])                          # the killed one is not committed
        stale = [i.key for i in again.snapshotter.walk() if i.key.startswith("extract-")]
        assert len(stale) == 1 and again.snapshotter.stat(stale[0]).kind == "active"
        assert cleanup_extractions(again.snapshotter, held=set(stale)) == []
        assert again.recover() == stale
        ingest = os.path.join(again.content.root, "ingest")
        assert not os.path.isdir(ingest) or os.listdir(ingest) == []
        assert again.unpack("big:1") == chains[1]
    finally:
        for key in reversed(chains):
            with contextlib.suppress(Exception):
                again.snapshotter.remove(key)
        again.db.close()
