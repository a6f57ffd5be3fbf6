"""Read-only snapshot views for copy-up."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from berth.errors import InvalidArgument
from berth.mount import Mount
from berth.volumes.copyup import copy_up
from berth.volumes.rootview import mounted_view, readonly_view
from tests.helpers import mounts_under


def test_readonly_view_descriptions():
    ov = Mount("overlay", "overlay", ["index=off", "lowerdir=/l2:/l1", "upperdir=/u", "workdir=/w", "rw"])
    assert readonly_view([ov]) == [Mount("overlay", "overlay", ["ro", "index=off", "lowerdir=/u:/l2:/l1"])]
    assert readonly_view([Mount("overlay", "overlay", ["lowerdir=/only"])]) == [
        Mount("bind", "/only", ["rbind", "ro"])]
    assert readonly_view([Mount("bind", "/fs", ["bind", "rw"])]) == [Mount("bind", "/fs", ["rbind", "ro"])]
    with pytest.raises(InvalidArgument):
        readonly_view([Mount("tmpfs", "tmpfs", [])])
    with pytest.raises(InvalidArgument):
        readonly_view([Mount("overlay", "overlay", ["ro"])])


@pytest.mark.root
def test_overlay_snapshot_view_copy_up(tmp_path, no_leaked_mounts):
    lower, upper, work, vol = (tmp_path / n for n in ("lower", "upper", "work", "vol"))
    for d in (lower / "data/opq", upper / "data/opq", work, vol):
        d.mkdir(parents=True)
    (lower / "data/keep").write_text("lower")
    (lower / "data/gone").write_text("gone")
    (lower / "data/opq/hidden").write_text("hidden by the opaque upper dir")
    os.mknod(upper / "data/gone", stat.S_IFCHR | 0o600, 0)
    os.setxattr(upper / "data/opq", "trusted.overlay.opaque", b"y")
    (upper / "data/opq/new").write_text("upper")
    snap = [Mount("overlay", "overlay", [f"lowerdir={lower}", f"upperdir={upper}", f"workdir={work}"])]
    with mounted_view(snap, str(tmp_path / "scratch")) as root:
        with pytest.raises(OSError) as e:
            open(os.path.join(root, "data/x"), "w")
        assert e.value.errno == errno.EROFS
        assert copy_up(root, "/data", str(vol))
    assert sorted(os.listdir(vol)) == ["keep", "opq"]
    assert os.listdir(vol / "opq") == ["new"]
    assert mounts_under(str(tmp_path)) == [] and os.listdir(tmp_path / "scratch") == []


@pytest.mark.root
def test_bind_snapshot_view(tmp_path, no_leaked_mounts):
    fs = tmp_path / "fs"
    (fs / "etc").mkdir(parents=True)
    (fs / "etc/conf").write_text("c")
    with mounted_view([Mount("bind", str(fs), ["bind", "rw"])], str(tmp_path / "scratch")) as root:
        assert open(os.path.join(root, "etc/conf")).read() == "c"
        with pytest.raises(OSError):
            open(os.path.join(root, "etc/new"), "w")
    assert mounts_under(str(tmp_path)) == [] and os.listdir(tmp_path / "scratch") == []


@pytest.mark.root
def test_failed_view_mount_leaves_nothing(tmp_path, no_leaked_mounts):
    snap = [Mount("overlay", "overlay", [f"lowerdir={tmp_path}/a:{tmp_path}/b"])]
    with pytest.raises(OSError):
        with mounted_view(snap, str(tmp_path / "scratch")):
            pass
    assert os.listdir(tmp_path / "scratch") == []
