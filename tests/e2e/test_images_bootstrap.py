"""Base images built on this machine: busybox from busybox-static, debian via debootstrap."""

import contextlib
import os
import shutil

import pytest

from berth.content import ContentStore
from berth.errors import NotFound, Unavailable
from berth.images.bootstrap import DEFAULT_CACHE_DIR, apt_mirror, busybox_image, debian_image
from berth.images.store import ImageStore
from berth.metadata.db import Database
from berth.snapshots import open_snapshotter


def open_store(base: str) -> ImageStore:
    os.makedirs(base, exist_ok=True)
    db = Database(os.path.join(base, "meta.db"))
    return ImageStore(db, ContentStore(os.path.join(base, "content")),
                      open_snapshotter(os.path.join(base, "snapshots"), db, "vfs"))


@pytest.fixture
def stores(tmp_path):
    made = []

    def make(name):
        s = open_store(str(tmp_path / name))
        made.append(s)
        return s

    yield make
    for s in made:
        for info in sorted(s.snapshotter.walk(), key=lambda i: i.parent == ""):
            with contextlib.suppress(Exception):
                s.snapshotter.remove(info.key)
        s.db.close()


@pytest.mark.root
def test_busybox_image_is_reproducible_and_runs_as_rootfs(stores):
    a, b = stores("a"), stores("b")
    img = busybox_image(a)
    again = busybox_image(b, name="bb:x")
    assert img.id == again.id
    assert busybox_image(a).id == img.id
    info = a.inspect("busybox")
    assert info["Config"]["Cmd"] == ["sh"]
    assert info["Created"] == "2024-01-01T00:00:00Z"
    assert len(info["RootFS"]["Layers"]) == 1
    hist = a.history("busybox:latest")
    assert [h["CreatedBy"] for h in hist][0] == 'CMD ["sh"]' and "busybox-static" in hist[1]["CreatedBy"]
    m = a.read_manifest(img)
    assert m.layers[0].media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    top = a.unpack("busybox")
    root = a.snapshotter.upper_dir(top)
    assert os.path.isfile(os.path.join(root, "bin/busybox"))
    assert os.readlink(os.path.join(root, "bin/sh")) == "/bin/busybox"
    assert os.path.islink(os.path.join(root, "bin/ls"))
    with open(os.path.join(root, "etc/passwd")) as f:
        assert f.readline().startswith("root:x:0:0:")
    assert os.stat(os.path.join(root, "tmp")).st_mode & 0o7777 == 0o1777
    assert os.path.isfile(os.path.join(root, "etc/group"))


@pytest.mark.root
def test_debootstrap_failure_is_a_clear_error(stores, tmp_path):
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap not installed")
    s = stores("fail")
    cache = tmp_path / "cache"
    with pytest.raises(Unavailable, match="debootstrap .*failed"):
        debian_image(s, cache_dir=str(cache), mirror="http://127.0.0.1:9/debian", timeout=120)
    assert os.listdir(cache) == []
    assert s.all() == []


@pytest.mark.root
@pytest.mark.slow
def test_debian_bookworm(stores):
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap not installed")
    try:
        apt_mirror("bookworm")
    except NotFound as e:
        pytest.skip(str(e))
    s = stores("deb")
    img = debian_image(s)   # built once per machine, then from DEFAULT_CACHE_DIR
    assert any(n.endswith(".layer.tar.gz") for n in os.listdir(DEFAULT_CACHE_DIR))
    again = debian_image(stores("deb2"))
    assert again.id == img.id   # same cached layer and created time
    info = s.inspect("debian:bookworm")
    assert info["Config"]["Cmd"] == ["bash"]
    top = s.unpack("debian:bookworm")
    root = s.snapshotter.upper_dir(top)
    with open(os.path.join(root, "etc/os-release")) as f:
        assert "bookworm" in f.read()
    assert os.path.isfile(os.path.join(root, "usr/bin/apt-get")) or os.path.isfile(
        os.path.join(root, "usr/bin/dpkg"))
    assert os.listdir(os.path.join(root, "dev")) == []
    assert not os.listdir(os.path.join(root, "var/cache/apt/archives")) or all(
        not n.endswith(".deb") for n in os.listdir(os.path.join(root, "var/cache/apt/archives")))
