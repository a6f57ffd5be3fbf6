"""Mount-target resolution under a rootfs (no mounts made, no root needed): symlinks never lead out."""

from __future__ import annotations

import os

import pytest

from berth.errors import InvalidArgument
from berth.runtime import rootfs


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "rootfs"
    r.mkdir()
    fd = os.open(r, os.O_PATH | os.O_DIRECTORY)
    yield r, fd
    os.close(fd)


def _real(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def test_mkdir_all_nested(root):
    r, fd = root
    assert _real(rootfs.mkdir_all(fd, "/a/b/c")) == str(r / "a/b/c")
    assert _real(rootfs.mkdir_all(fd, "a/b/c/")) == str(r / "a/b/c")   # idempotent


def test_absolute_symlink_is_resolved_inside(root, tmp_path):
    r, fd = root
    outside = tmp_path / "host-dev"
    os.symlink(str(outside), r / "dev")
    got = _real(rootfs.mkdir_all(fd, "/dev/pts"))
    assert got == str(r) + str(outside) + "/pts"
    assert not outside.exists()


def test_dotdot_symlink_cannot_escape(root, tmp_path):
    r, fd = root
    os.symlink("../../../../..", r / "up")
    assert _real(rootfs.mkdir_all(fd, "/up/etc")) == str(r / "etc")
    assert _real(rootfs.open_file(fd, "/up/etc/hosts")) == str(r / "etc/hosts")
    assert (r / "etc/hosts").is_file()


def test_symlink_loop_is_an_error(root):
    r, fd = root
    os.symlink("b", r / "a")
    os.symlink("a", r / "b")
    with pytest.raises(OSError):
        os.close(rootfs.mkdir_all(fd, "/a/x"))


def test_proc_target_must_not_be_a_symlink(root, tmp_path):
    r, fd = root
    os.symlink(str(tmp_path), r / "proc")
    setup = rootfs.RootfsSetup({"root": {"path": str(r)}}, str(tmp_path), userns=False, cgroupns=False)
    setup.rootfd = fd
    with pytest.raises(InvalidArgument, match="symlink"):
        setup._nosym_dir("/proc")
    (r / "sys").mkdir()
    os.close(setup._nosym_dir("/sys"))
    os.close(setup._nosym_dir("/newdir"))
    assert (r / "newdir").is_dir()


def test_cgroup_hierarchies_parse():
    hier = rootfs._cgroup_hierarchies()
    if hier is None:
        pytest.skip("pure cgroup v2 host")
    assert all(mp.startswith("/") for mp, _ in hier.values())
