"""Copy-up of image content into an empty volume: metadata kept, rootfs escapes refused."""

from __future__ import annotations

import os
import stat

import pytest

from berth.volumes import copyup
from berth.volumes.copyup import copy_tree, copy_up


@pytest.fixture
def dirs(tmp_path):
    rootfs = tmp_path / "rootfs"
    vol = tmp_path / "vol"
    rootfs.mkdir()
    vol.mkdir()
    return rootfs, vol


def test_copies_tree_with_links_modes_times_xattrs(dirs):
    rootfs, vol = dirs
    src = rootfs / "data"
    (src / "sub/deeper").mkdir(parents=True)
    (src / "file").write_bytes(b"hello" * 1000)
    os.chmod(src / "file", 0o640)
    os.utime(src / "file", ns=(1_000_000_000, 2_000_000_000))
    os.setxattr(src / "file", "user.note", b"kept")
    (src / "sub/deeper/x").write_text("x")
    os.link(src / "file", src / "hard")
    os.symlink("/etc/passwd", src / "abs-link")        # copied as a link, never followed
    os.symlink("../file", src / "sub/rel-link")
    os.symlink("/nonexistent", src / "dangling")
    os.symlink("/etc", src / "dir-link")
    os.mkfifo(src / "fifo", 0o600)
    os.chmod(src / "sub", 0o750)
    os.utime(src / "sub", ns=(3_000_000_000, 4_000_000_000))
    os.chmod(src, 0o711)

    assert copy_up(str(rootfs), "/data", str(vol)) is True
    assert (vol / "file").read_bytes() == b"hello" * 1000
    st = os.stat(vol / "file")
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_mtime_ns == 2_000_000_000
    assert os.getxattr(vol / "file", "user.note") == b"kept"
    assert os.stat(vol / "hard").st_ino == st.st_ino
    assert os.readlink(vol / "abs-link") == "/etc/passwd"
    assert os.readlink(vol / "sub/rel-link") == "../file"
    assert os.readlink(vol / "dangling") == "/nonexistent"
    assert os.path.islink(vol / "dir-link") and os.readlink(vol / "dir-link") == "/etc"
    assert stat.S_ISFIFO(os.lstat(vol / "fifo").st_mode)
    sub = os.stat(vol / "sub")
    assert stat.S_IMODE(sub.st_mode) == 0o750 and sub.st_mtime_ns == 4_000_000_000
    assert (vol / "sub/deeper/x").read_text() == "x"
    assert stat.S_IMODE(os.stat(vol).st_mode) == 0o711  # the volume root takes the source's mode


def test_only_into_an_empty_volume(dirs):
    rootfs, vol = dirs
    (rootfs / "data").mkdir()
    (rootfs / "data/new").write_text("new")
    (vol / "old").write_text("old")
    assert copy_up(str(rootfs), "/data", str(vol)) is False
    assert os.listdir(vol) == ["old"]


def test_missing_or_not_a_directory(dirs):
    rootfs, vol = dirs
    (rootfs / "file").write_text("f")
    assert copy_up(str(rootfs), "/nope", str(vol)) is False
    assert copy_up(str(rootfs), "/file", str(vol)) is False
    assert os.listdir(vol) == []


def test_absolute_symlink_out_of_rootfs_is_not_followed(dirs, tmp_path):
    rootfs, vol = dirs
    secret = tmp_path / "host-secret"
    secret.mkdir()
    (secret / "key").write_text("host key")
    os.symlink(str(secret), rootfs / "data")  # points at a host path that is not in the rootfs
    assert copy_up(str(rootfs), "/data", str(vol)) is False
    assert os.listdir(vol) == []


def test_relative_symlink_escape_stays_inside_rootfs(dirs, tmp_path):
    rootfs, vol = dirs
    secret = tmp_path / "host-secret"
    secret.mkdir()
    (secret / "key").write_text("host key")
    os.symlink("../../../../../../../../" + str(secret).lstrip("/"), rootfs / "data")
    assert copy_up(str(rootfs), "/data", str(vol)) is False
    assert os.listdir(vol) == []
    # the same chain resolves inside the rootfs when the target exists there
    inside = rootfs / str(secret).lstrip("/")
    inside.mkdir(parents=True)
    (inside / "image-file").write_text("from the image")
    assert copy_up(str(rootfs), "/data", str(vol)) is True
    assert os.listdir(vol) == ["image-file"]


def test_symlinked_image_path_resolves_in_rootfs(dirs):
    rootfs, vol = dirs
    (rootfs / "etc").mkdir()
    (rootfs / "etc/conf").write_text("image conf")
    os.symlink("/etc", rootfs / "data")
    assert copy_up(str(rootfs), "/data", str(vol)) is True
    assert (vol / "conf").read_text() == "image conf"


def test_intermediate_symlink_in_path(dirs, tmp_path):
    rootfs, vol = dirs
    outside = tmp_path / "outside/data"
    outside.mkdir(parents=True)
    (outside / "secret").write_text("s")
    os.symlink(str(tmp_path / "outside"), rootfs / "var")
    assert copy_up(str(rootfs), "/var/data", str(vol)) is False
    assert os.listdir(vol) == []


def test_rootfs_as_fd(dirs):
    rootfs, vol = dirs
    (rootfs / "d").mkdir()
    (rootfs / "d/f").write_text("f")
    fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY)
    try:
        assert copy_up(fd, "d", str(vol)) is True
    finally:
        os.close(fd)
    assert (vol / "f").read_text() == "f"


def test_failure_leaves_the_volume_empty(dirs, monkeypatch):
    rootfs, vol = dirs
    (rootfs / "d/a").mkdir(parents=True)
    (rootfs / "d/a/one").write_text("1")
    (rootfs / "d/b").write_text("2")
    real = copyup._copy_data
    calls = []

    def failing(src, dst, size):
        calls.append(size)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(src, dst, size)

    monkeypatch.setattr(copyup, "_copy_data", failing)
    with pytest.raises(OSError, match="No space left"):
        copy_up(str(rootfs), "/d", str(vol))
    assert os.listdir(vol) == []


def test_copy_tree_plain(tmp_path):
    (tmp_path / "a/x").mkdir(parents=True)
    (tmp_path / "a/x/f").write_text("f")
    (tmp_path / "b").mkdir()
    copy_tree(str(tmp_path / "a"), str(tmp_path / "b"))
    assert (tmp_path / "b/x/f").read_text() == "f"


@pytest.mark.root
def test_ownership_setuid_devices_and_capabilities(dirs):
    rootfs, vol = dirs
    src = rootfs / "data"
    src.mkdir()
    os.chown(src, 1000, 1001)
    os.chmod(src, 0o2775)
    (src / "suid").write_bytes(b"\x7fELF")
    os.chown(src / "suid", 1234, 1235)
    os.chmod(src / "suid", 0o4755)
    os.setxattr(src / "suid", "trusted.berth", b"t")
    os.symlink("suid", src / "link")
    os.chown(src / "link", 77, 78, follow_symlinks=False)
    os.mknod(src / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chown(src / "null", 5, 6)
    os.chmod(src / "null", 0o666)
    (src / "sub").mkdir()
    os.chown(src / "sub", 42, 43)

    assert copy_up(str(rootfs), "/data", str(vol)) is True
    st = os.stat(vol / "suid")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 1235, 0o4755)
    assert os.getxattr(vol / "suid", "trusted.berth") == b"t"
    lst = os.lstat(vol / "link")
    assert (lst.st_uid, lst.st_gid) == (77, 78) and os.readlink(vol / "link") == "suid"
    dev = os.lstat(vol / "null")
    assert stat.S_ISCHR(dev.st_mode) and dev.st_rdev == os.makedev(1, 3)
    assert (dev.st_uid, dev.st_gid, stat.S_IMODE(dev.st_mode)) == (5, 6, 0o666)
    assert (os.stat(vol / "sub").st_uid, os.stat(vol / "sub").st_gid) == (42, 43)
    root = os.stat(vol)
    assert (root.st_uid, root.st_gid, stat.S_IMODE(root.st_mode)) == (1000, 1001, 0o2775)


def test_busybox_image_dir(busybox_rootfs, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    assert copy_up(busybox_rootfs, "/bin", str(vol)) is True
    assert os.readlink(vol / "sh") == "/bin/busybox"  # applet links stay links
    assert os.path.getsize(vol / "busybox") == os.path.getsize(os.path.join(busybox_rootfs, "bin/busybox"))


@pytest.mark.root
def test_from_an_overlay_rootfs_whiteouts_hidden(tmp_path, no_leaked_mounts):
    from berth.mount import Mount, mount_all, unmount_all

    lower, upper, work, merged, vol = (tmp_path / n for n in ("lower", "upper", "work", "merged", "vol"))
    for d in (lower / "data/old", upper / "data", work, merged, vol):
        d.mkdir(parents=True)
    (lower / "data/keep").write_text("lower")
    (lower / "data/old/x").write_text("gone")
    (lower / "data/gone").write_text("gone")
    os.mknod(upper / "data/gone", stat.S_IFCHR | 0o600, 0)  # overlay whiteout
    (upper / "data/new").write_text("upper")
    mount_all([Mount("overlay", "overlay", [f"lowerdir={lower}", f"upperdir={upper}", f"workdir={work}"])],
              str(merged))
    try:
        assert copy_up(str(merged), "/data", str(vol)) is True
    finally:
        unmount_all(str(merged))
    assert sorted(os.listdir(vol)) == ["keep", "new", "old"]
    assert (vol / "new").read_text() == "upper"
