"""Crash and failure staging: a failed create leaves no record and no directory."""

from __future__ import annotations

import os

import pytest

from berth.metadata.db import Database
from berth.snapshots import vfs


class _Boom(Exception):
    pass


@pytest.fixture
def snap(tmp_path):
    db = Database(str(tmp_path / "meta.db"))
    s = vfs.VfsSnapshotter(str(tmp_path / "root"), db)
    yield s
    db.close()


def test_failed_populate_leaves_nothing(snap, monkeypatch):
    def boom(stage, parent, kind):
        os.mkdir(os.path.join(stage, "fs"))
        raise _Boom()

    monkeypatch.setattr(snap, "_populate", boom)
    with pytest.raises(_Boom):
        snap.prepare("a")
    assert list(snap.walk()) == [] and os.listdir(snap.dir) == []


def test_failure_after_rename_rolls_back(snap, monkeypatch):
    """The row insert and the rename share one transaction: an error after both undoes both."""
    real_rename = os.rename

    def rename_then_fail(src, dst):
        real_rename(src, dst)
        if os.path.basename(src).startswith(".new-"):
            raise _Boom()

    monkeypatch.setattr(os, "rename", rename_then_fail)
    with pytest.raises(_Boom):
        snap.prepare("a")
    monkeypatch.undo()
    assert list(snap.walk()) == []
    assert os.listdir(snap.dir) == []
    snap.prepare("a")  # and the name is free again
    assert snap.stat("a").kind == "active"


def test_crash_between_rename_and_commit_is_cleaned(snap, tmp_path):
    """Simulate the crash: a directory named like an id with no row; the id is then reused."""
    snap.prepare("a")
    sid = int(os.path.basename(os.path.dirname(snap.upper_dir("a"))))
    stray = os.path.join(snap.dir, str(sid + 1))
    os.makedirs(os.path.join(stray, "fs"))
    open(os.path.join(stray, "fs", "junk"), "w").close()
    # the next insert gets id sid+1 and must replace the stray dir, not fail or merge
    snap.prepare("b")
    assert snap.upper_dir("b") == os.path.join(stray, "fs")
    assert os.listdir(snap.upper_dir("b")) == []
    assert snap.cleanup() == []


def test_concurrent_instances_do_not_collide(tmp_path):
    db = Database(str(tmp_path / "meta.db"))
    one = vfs.VfsSnapshotter(str(tmp_path / "root"), db)
    two = vfs.VfsSnapshotter(str(tmp_path / "root"), db)
    one.prepare("a")
    from berth.errors import AlreadyExists

    with pytest.raises(AlreadyExists):
        two.prepare("a")
    assert [i.key for i in two.walk()] == ["a"]
    db.close()


def test_racing_prepares_one_wins(tmp_path):
    """Threads with their own connections race for one key: exactly one record, no stray dirs."""
    import threading

    from berth.errors import AlreadyExists

    db = Database(str(tmp_path / "meta.db"))
    base = vfs.VfsSnapshotter(str(tmp_path / "root"), db)
    base.prepare("p")
    with open(os.path.join(base.upper_dir("p"), "f"), "w") as f:
        f.write("x" * 4096)
    base.commit("P", "p")
    results: list[str] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        s = vfs.VfsSnapshotter(str(tmp_path / "root"), db)
        barrier.wait()
        try:
            s.prepare("same", "P")
            results.append("ok")
        except AlreadyExists:
            results.append("exists")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["exists"] * 3 + ["ok"]
    assert sorted(os.listdir(base.dir)) == sorted(
        os.path.basename(os.path.dirname(base.upper_dir(k))) for k in ("P", "same"))
    db.close()


_CRASH_CHILD = r"""
import os, sys
from berth.metadata.db import Database
from berth.snapshots import vfs, fsutil
root, dbpath, point = sys.argv[1:4]
s = vfs.VfsSnapshotter(root, Database(dbpath))
real_rename, real_fsync_dir = os.rename, fsutil.fsync_dir
def rename(src, dst):
    real_rename(src, dst)
    if point == "after-rename" and os.path.basename(src).startswith(".new-"):
        os._exit(9)  # the row is inserted, the dir renamed, the transaction not committed
def fsync_dir(path):
    if point == "after-commit":
        os._exit(9)
    real_fsync_dir(path)
os.rename = rename
fsutil.fsync_dir = fsync_dir
s.prepare("crashy")
"""


@pytest.mark.parametrize("point,survives", [("after-rename", False), ("after-commit", True)])
def test_real_crash_leaves_stray_dir_or_complete_snapshot(tmp_path, point, survives):
    """A process killed mid-prepare: either no row and a stray dir cleanup() removes, or a snapshot."""
    import subprocess
    import sys

    root, dbpath = str(tmp_path / "root"), str(tmp_path / "meta.db")
    proc = subprocess.run([sys.executable, "-c", _CRASH_CHILD, root, dbpath, point],
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
                          capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    db = Database(dbpath)
    s = vfs.VfsSnapshotter(root, db)
    snaps = os.listdir(s.dir)
    assert len(snaps) == 1 and snaps[0].isdigit(), snaps
    if survives:
        assert s.stat("crashy").kind == "active"
        assert s.cleanup() == []
        assert os.path.isdir(s.upper_dir("crashy"))
    else:
        assert list(s.walk()) == []
        assert s.cleanup() == [os.path.join(s.dir, snaps[0])]
        assert os.listdir(s.dir) == []
        s.prepare("crashy")  # the rolled-back id is reused over a clean slate
        assert os.listdir(s.upper_dir("crashy")) == []
    db.close()
