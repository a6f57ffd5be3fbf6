"""btrfs specifics: every snapshot is a subvolume, committed ones and views are read-only."""

from __future__ import annotations

import errno
import os

import pytest

from berth.metadata.db import Database
from berth.snapshots import btrfs, open_snapshotter

pytestmark = pytest.mark.root


def test_subvolume_ioctls(btrfs_dir):
    a, b = os.path.join(btrfs_dir, "a"), os.path.join(btrfs_dir, "b")
    btrfs.subvolume_create(a)
    assert btrfs.is_subvolume(a) and not btrfs.is_subvolume(btrfs_dir)
    with open(os.path.join(a, "f"), "w") as f:
        f.write("x")
    btrfs.subvolume_snapshot(a, b, readonly=True)
    assert btrfs.subvolume_readonly(b) and not btrfs.subvolume_readonly(a)
    with open(os.path.join(b, "f")) as f:
        assert f.read() == "x"
    with pytest.raises(OSError) as e:
        open(os.path.join(b, "g"), "w")
    assert e.value.errno == errno.EROFS
    btrfs.subvolume_readonly(a, True)
    assert btrfs.subvolume_readonly(a)
    btrfs.subvolume_delete(a)
    btrfs.subvolume_delete(b)
    assert os.listdir(btrfs_dir) == []


def test_snapshots_are_subvolumes(btrfs_dir, tmp_path):
    db = Database(str(tmp_path / "meta.db"))
    s = open_snapshotter(os.path.join(btrfs_dir, "root"), db, "btrfs")
    s.prepare("a")
    up = s.upper_dir("a")
    assert btrfs.is_subvolume(up) and not btrfs.subvolume_readonly(up)
    with open(os.path.join(up, "f"), "w") as f:
        f.write("1")
    s.commit("A", "a")
    assert btrfs.subvolume_readonly(s.upper_dir("A"))
    s.view("v", "A")
    s.prepare("b", "A")
    assert btrfs.subvolume_readonly(s.upper_dir("v"))
    assert btrfs.is_subvolume(s.upper_dir("b")) and not btrfs.subvolume_readonly(s.upper_dir("b"))
    assert s.lower_dirs("b") == [s.upper_dir("A")]
    for key in ("v", "b", "A"):
        s.remove(key)
    assert os.listdir(os.path.join(btrfs_dir, "root", "snapshots")) == []
    db.close()
