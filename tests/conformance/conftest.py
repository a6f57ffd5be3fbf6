"""Storage fixtures: a loop-mounted btrfs made for the session, removed (and detached) after."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.helpers import have_root, mounts_under


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def btrfs_mount(tmp_path_factory) -> str:
    """A 256 MiB btrfs on a loop device, mounted for the session; skips where it cannot be made."""
    if not have_root() or not shutil.which("mkfs.btrfs"):
        pytest.skip("btrfs needs root and mkfs.btrfs")
    base = tmp_path_factory.mktemp("btrfs")
    image, mnt = str(base / "fs.img"), str(base / "mnt")
    os.mkdir(mnt)
    with open(image, "wb") as f:
        f.truncate(256 << 20)
    mk = _run("mkfs.btrfs", "-q", "-f", image)
    if mk.returncode != 0:
        pytest.skip(f"mkfs.btrfs failed: {mk.stderr.strip()}")
    mnt_res = _run("mount", "-o", "loop", image, mnt)
    if mnt_res.returncode != 0:
        pytest.skip(f"cannot loop-mount btrfs: {mnt_res.stderr.strip()}")
    try:
        yield mnt
    finally:
        # mount -o loop sets autoclear: the loop device is detached by the unmount
        _run("umount", mnt)
        leftover = _run("losetup", "-j", image).stdout.strip()
        for line in leftover.splitlines():
            _run("losetup", "-d", line.split(":", 1)[0])
        assert not mounts_under(mnt)
        os.unlink(image)


@pytest.fixture
def btrfs_dir(btrfs_mount, request) -> str:
    """A fresh directory on the session's btrfs for one test, removed afterwards."""
    from berth.snapshots import btrfs

    path = os.path.join(btrfs_mount, request.node.name.replace("/", "_")[:100])
    os.mkdir(path)
    yield path
    # remove any subvolumes a failing test left, then the tree
    for dirpath, dirnames, _files in os.walk(path, topdown=False):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if btrfs.is_subvolume(p):
                btrfs.subvolume_readonly(p, False)
                btrfs.subvolume_delete(p)
    shutil.rmtree(path, ignore_errors=True)
