"""Snapshotters with berth.archive: layers applied per whiteout mode, diffs written back."""

from __future__ import annotations

import io
import os
import shutil
import tarfile

import pytest

import berth.archive
from berth.metadata.db import Database
from berth.snapshots import open_snapshotter, probe
from berth.snapshots.testsuite import mounted

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not hasattr(berth.archive, "apply_layer"), reason="berth.archive not there yet"),
]


def _tar(entries: list[tuple[str, bytes | None]]) -> bytes:
    """A layer tar: (name, data) is a file, (name/, None) a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in entries:
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime = 1_700_000_000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                t.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


BASE = _tar([("bin/", None), ("bin/tool", b"tool"), ("gone", b"g"), ("dir/", None), ("dir/old", b"o"),
             ("kept", b"k")])
TOP = _tar([(".wh.gone", b""), ("dir/", None), ("dir/.wh..wh..opq", b""), ("dir/new", b"n")])


@pytest.fixture(params=["vfs", "overlay", "btrfs"])
def snap(request, tmp_path):
    if request.param == "btrfs":
        root = os.path.join(request.getfixturevalue("btrfs_dir"), "root")
    else:
        root = str(tmp_path / "root")
        if request.param == "overlay" and not probe.overlay_works(str(tmp_path / "probe")):
            pytest.skip("overlayfs cannot be mounted here")
    db = Database(str(tmp_path / "meta.db"))
    yield open_snapshotter(root, db, request.param)
    db.close()


def _apply(s, name: str, parent: str, layer: bytes) -> None:
    key = name + "-extract"
    s.prepare(key, parent)
    res = berth.archive.apply_layer(io.BytesIO(layer), s.upper_dir(key), whiteout_mode=s.whiteout_mode,
                                    lower_dirs=s.lower_dirs(key))
    assert res.entries > 0
    s.commit(name, key)


def test_apply_and_diff_roundtrip(snap, tmp_path, no_leaked_mounts):
    _apply(snap, "base", "", BASE)
    _apply(snap, "top", "base", TOP)
    scratch = str(tmp_path / "scratch")
    os.mkdir(scratch)
    snap.prepare("ctr", "top")
    with mounted(snap.mounts("ctr"), scratch) as m:
        assert sorted(os.listdir(m)) == ["bin", "dir", "kept"]
        assert os.listdir(os.path.join(m, "dir")) == ["new"]
        os.unlink(os.path.join(m, "kept"))
        with open(os.path.join(m, "bin", "added"), "w") as f:
            f.write("added")
        shutil.rmtree(os.path.join(m, "dir"))
        os.mkdir(os.path.join(m, "dir"))
        with open(os.path.join(m, "dir", "fresh"), "w") as f:
            f.write("fresh")
        expected = _tree(m)
    out = io.BytesIO()
    berth.archive.write_diff(snap.upper_dir("ctr"), out, whiteout_mode=snap.whiteout_mode,
                             lower_dirs=snap.lower_dirs("ctr"), compression=None)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as t:
        names = {n.rstrip("/").removeprefix("./") for n in t.getnames()}
    assert ".wh.kept" in names and "bin/added" in names and "dir/fresh" in names, names
    assert "dir/new" not in names and "bin/tool" not in names, names
    # the diff applied on the same parent reproduces the container's tree
    _apply(snap, "again", "top", out.getvalue())
    snap.view("again-view", "again")
    with mounted(snap.mounts("again-view"), scratch) as m:
        assert _tree(m) == expected


def _tree(root: str) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for d in dirnames:
            out[os.path.normpath(os.path.join(rel, d))] = None
        for f in filenames:
            with open(os.path.join(dirpath, f), "rb") as fh:
                out[os.path.normpath(os.path.join(rel, f))] = fh.read()
    return out
