"""The RUN layer scrub: runtime mount points are dropped, and a hostile upper dir cannot steer it
to host paths (no root needed: plain directories stand in for the snapshot)."""

from __future__ import annotations

import os
import types

from berth.build.builder import Builder


def _builder(upper: str, lowers: list[str]):
    snap = types.SimpleNamespace(upper_dir=lambda key: upper, lower_dirs=lambda key: lowers)
    return types.SimpleNamespace(snap=snap)


def test_mount_points_dropped_real_changes_kept(tmp_path):
    lower = tmp_path / "lower"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc" / "passwd").write_text("root")
    (lower / "proc").mkdir()
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    os.chmod(upper / "etc", os.stat(lower / "etc").st_mode & 0o7777)
    for name in ("hosts", "hostname", "resolv.conf"):
        (upper / "etc" / name).write_text("")
    (upper / "dev" / "pts").mkdir(parents=True)
    (upper / "proc").mkdir(mode=0o700)  # in the image, with a changed mode: a real change
    os.chmod(upper / "proc", 0o700)
    (upper / "made").write_text("kept")
    Builder._scrub(_builder(str(upper), [str(lower)]), "k")
    assert sorted(os.listdir(upper)) == ["made", "proc"]


def test_written_files_are_kept(tmp_path):
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "hosts").write_text("127.0.0.1 x\n")   # not empty: the RUN wrote it
    Builder._scrub(_builder(str(upper), []), "k")
    assert (upper / "etc" / "hosts").read_text() == "127.0.0.1 x\n"


def test_symlinked_dirs_in_upper_are_not_followed(tmp_path):
    victim = tmp_path / "host"
    (victim / "pts").mkdir(parents=True)
    for name in ("hosts", "hostname", "resolv.conf"):
        (victim / name).write_text("")
    upper = tmp_path / "upper"
    upper.mkdir()
    os.symlink(str(victim), upper / "etc")
    os.symlink(str(victim), upper / "dev")
    Builder._scrub(_builder(str(upper), []), "k")
    assert sorted(os.listdir(victim)) == ["hostname", "hosts", "pts", "resolv.conf"]
    assert os.path.islink(upper / "etc") and os.path.islink(upper / "dev")
