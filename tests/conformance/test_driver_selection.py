"""open_snapshotter: priority order (btrfs, overlay, vfs), explicit names, bad names."""

from __future__ import annotations

import os

import pytest

from berth.errors import InvalidArgument
from berth.metadata.db import Database
from berth.snapshots import Snapshotter, open_snapshotter, pick_driver, probe


@pytest.fixture
def db(tmp_path):
    d = Database(str(tmp_path / "meta.db"))
    yield d
    d.close()


def test_explicit_vfs_and_unknown(tmp_path, db):
    s = open_snapshotter(str(tmp_path / "root"), db, "vfs")
    assert isinstance(s, Snapshotter) and s.name == "vfs" and s.whiteout_mode == "delete"
    with pytest.raises(InvalidArgument, match="unknown storage driver"):
        open_snapshotter(str(tmp_path / "root"), db, "aufs")


@pytest.mark.root
def test_overlay_picked_on_ext4(tmp_path, db, no_leaked_mounts):
    root = str(tmp_path / "root")
    assert probe.overlay_works(root)
    assert pick_driver(root) == "overlay"
    s = open_snapshotter(root, db)
    assert s.name == "overlay" and s.whiteout_mode == "overlay"
    assert os.listdir(root) == ["snapshots"], "the overlay probe left something behind"


@pytest.mark.root
def test_overlay_probe_fails_on_overlay_upper(tmp_path, no_leaked_mounts):
    """An overlay cannot be the upper layer of another overlay: the probe must say no, not crash."""
    from berth.mount import Mount, mount_all, unmount_all

    for d in ("l1", "l2", "m"):
        (tmp_path / d).mkdir()
    mnt = str(tmp_path / "m")
    mount_all([Mount("overlay", "overlay", [f"lowerdir={tmp_path}/l1:{tmp_path}/l2"])], mnt)
    try:
        assert probe.overlay_works(os.path.join(mnt, "x")) is False
    except OSError:
        pass  # cannot even create the probe dir on a read-only overlay: also "no"
    finally:
        unmount_all(mnt)


@pytest.mark.root
def test_btrfs_picked_on_btrfs(btrfs_dir, tmp_path, db):
    root = os.path.join(btrfs_dir, "root")
    assert pick_driver(root) == "btrfs"
    s = open_snapshotter(root, db)
    assert s.name == "btrfs" and s.whiteout_mode == "delete"


def test_btrfs_refused_off_btrfs(tmp_path, db):
    with pytest.raises(InvalidArgument, match="not on btrfs"):
        open_snapshotter(str(tmp_path / "root"), db, "btrfs")
