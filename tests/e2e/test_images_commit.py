"""docker commit: container snapshot changes become a new image layer (vfs and overlay)."""

import contextlib
import os

import pytest

from berth.content import ContentStore
from berth.images.bootstrap import busybox_image
from berth.images.commit import commit_snapshot
from berth.images.store import ImageStore
from berth.metadata.db import Database
from berth.snapshots import open_snapshotter

pytestmark = pytest.mark.root


@pytest.fixture(params=["vfs", "overlay"])
def store(request, tmp_path):
    db = Database(str(tmp_path / "meta.db"))
    s = ImageStore(db, ContentStore(str(tmp_path / "content")),
                   open_snapshotter(str(tmp_path / "snap"), db, request.param))
    yield s
    for _ in range(3):
        for info in list(s.snapshotter.walk()):
            with contextlib.suppress(Exception):
                s.snapshotter.remove(info.key)
    db.close()


def test_commit_adds_a_layer_with_changes(store):
    base = busybox_image(store)
    top = store.unpack(base.id)
    store.snapshotter.prepare("ctr-1", top)
    upper = store.snapshotter.upper_dir("ctr-1")
    os.makedirs(os.path.join(upper, "srv"), exist_ok=True)
    with open(os.path.join(upper, "srv/hello"), "w") as f:
        f.write("committed\n")
    if store.snapshotter.whiteout_mode == "delete":
        os.unlink(os.path.join(upper, "bin/ls"))
    else:
        os.mknod(_mkparent(upper, "bin/ls"), 0o20000, os.makedev(0, 0))
    img = commit_snapshot(store, "ctr-1", parent="busybox", ref="committed:1",
                          changes=["ENV X=1", 'CMD ["id"]'], comment="a comment", author="me",
                          container_id="c" * 64, created_by="sh -c echo")
    info = store.inspect("committed:1")
    assert info["Id"] == img.id
    assert len(info["RootFS"]["Layers"]) == 2
    assert info["Config"]["Cmd"] == ["id"] and "X=1" in info["Config"]["Env"]
    assert info["Comment"] == "a comment" and info["Author"] == "me" and info["Container"] == "c" * 64
    hist = store.history("committed:1")
    assert hist[0]["CreatedBy"] == "sh -c echo" and hist[0]["Size"] > 0 and hist[0]["Tags"] == ["committed:1"]
    store.snapshotter.remove("ctr-1")
    new_top = store.unpack("committed:1")
    store.snapshotter.view("check", new_top)
    try:
        if store.snapshotter.whiteout_mode == "delete":
            root = store.snapshotter.upper_dir("check")
            assert open(os.path.join(root, "srv/hello")).read() == "committed\n"
            assert not os.path.lexists(os.path.join(root, "bin/ls"))
            assert os.path.isfile(os.path.join(root, "bin/busybox"))
        else:
            layer_dir = store.snapshotter.lower_dirs("check")[0]
            assert open(os.path.join(layer_dir, "srv/hello")).read() == "committed\n"
            st = os.lstat(os.path.join(layer_dir, "bin/ls"))
            assert os.major(st.st_rdev) == 0 and os.minor(st.st_rdev) == 0   # the whiteout
    finally:
        store.snapshotter.remove("check")


def _mkparent(upper, rel):
    os.makedirs(os.path.dirname(os.path.join(upper, rel)), exist_ok=True)
    return os.path.join(upper, rel)
