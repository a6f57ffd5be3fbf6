"""Conformance checks every snapshotter must pass.

Each check is a plain function ``check_x(make, tmp)``: ``make()`` returns a Snapshotter over one
fixed storage root and database (calling it again simulates a restart), ``tmp`` is a scratch
directory for mount points. Checks that mount need root; ``CHECKS`` lists them all with the
drivers they apply to. Every mount is undone in ``finally``.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from berth.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from berth.mount import Mount, mount_all, unmount_all
from berth.snapshots.base import Snapshotter

SnapshotterFactory = Callable[[], Snapshotter]
CheckFunc = Callable[[SnapshotterFactory, str], None]


@dataclass
class Check:
    """A conformance check and where it applies."""

    func: CheckFunc
    needs_mount: bool
    drivers: tuple[str, ...] | None  # None: every driver

    @property
    def name(self) -> str:
        return self.func.__name__.removeprefix("check_")

    def applies_to(self, driver: str) -> bool:
        return self.drivers is None or driver in self.drivers


CHECKS: list[Check] = []


def _check(needs_mount: bool = False,
           drivers: tuple[str, ...] | None = None) -> Callable[[CheckFunc], CheckFunc]:
    def register(func: CheckFunc) -> CheckFunc:
        CHECKS.append(Check(func, needs_mount, drivers))
        return func
    return register


@contextmanager
def mounted(mounts: list[Mount], tmp: str) -> Iterator[str]:
    """Mount a snapshot's mounts on a fresh dir under tmp; always unmounted and removed after."""
    target = tempfile.mkdtemp(prefix="mnt-", dir=tmp)
    try:
        mount_all(mounts, target)
        yield target
    finally:
        unmount_all(target)
        os.rmdir(target)


def _write(path: str, data: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(data)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _raises(exc: type[BaseException], fn: Callable[..., object], *args: object) -> None:
    try:
        fn(*args)
    except exc:
        return
    raise AssertionError(f"{fn.__name__}{args!r} did not raise {exc.__name__}")


def _layer(s: Snapshotter, name: str, parent: str, files: dict[str, str]) -> None:
    """Commit a layer named name on parent holding files (written into its upper dir)."""
    key = name + "-active"
    s.prepare(key, parent)
    up = s.upper_dir(key)
    for rel, data in files.items():
        _write(os.path.join(up, rel), data)
    s.commit(name, key)


def _snapshots_dir(s: Snapshotter, key: str) -> str:
    """<root>/snapshots, from a snapshot's upper dir (<root>/snapshots/<id>/fs)."""
    return os.path.dirname(os.path.dirname(s.upper_dir(key)))


# ---- lifecycle ----------------------------------------------------------------------------------

@_check()
def check_prepare_commit_stat(make: SnapshotterFactory, tmp: str) -> None:
    s = make()
    assert s.name and s.whiteout_mode in ("overlay", "delete")
    mounts = s.prepare("a", labels={"l": "1"})
    assert mounts and all(isinstance(m, Mount) for m in mounts)
    info = s.stat("a")
    assert (info.key, info.parent, info.kind, info.labels) == ("a", "", "active", {"l": "1"})
    assert info.created > 0 and info.updated >= info.created
    assert s.lower_dirs("a") == []
    _write(os.path.join(s.upper_dir("a"), "etc/hello"), "hi")
    s.commit("A", "a")
    _raises(NotFound, s.stat, "a")
    info = s.stat("A")
    assert (info.key, info.kind, info.labels) == ("A", "committed", {"l": "1"})
    assert _read(os.path.join(s.upper_dir("A"), "etc/hello")) == "hi"
    s.prepare("b", "A")
    s.commit("B", "b", labels={"m": "2"})
    assert s.stat("B").labels == {"m": "2"} and s.stat("B").parent == "A"
    assert {(i.key, i.parent, i.kind) for i in s.walk()} == {("A", "", "committed"), ("B", "A", "committed")}
    # records survive a restart
    again = make()
    assert {i.key for i in again.walk()} == {"A", "B"}
    assert again.upper_dir("B") == s.upper_dir("B")
    assert again.cleanup() == []


@_check()
def check_name_collisions(make: SnapshotterFactory, tmp: str) -> None:
    s = make()
    _layer(s, "base", "", {"f": "1"})
    s.prepare("a", "base")
    _raises(AlreadyExists, s.prepare, "a")
    _raises(AlreadyExists, s.prepare, "base", "")
    _raises(AlreadyExists, s.view, "a", "base")
    s.prepare("c", "base")
    _raises(AlreadyExists, s.commit, "base", "c")
    s.commit("C", "c")
    s.prepare("d")
    _raises(AlreadyExists, s.commit, "C", "d")
    assert s.stat("d").kind == "active"
    assert {i.key for i in s.walk()} == {"base", "a", "C", "d"}
    assert s.cleanup() == [], "a refused request left something behind"


@_check()
def check_errors(make: SnapshotterFactory, tmp: str) -> None:
    s = make()
    for fn in (s.stat, s.mounts, s.usage, s.remove, s.upper_dir, s.lower_dirs):
        _raises(NotFound, fn, "missing")
    _raises(NotFound, s.commit, "x", "missing")
    _raises(NotFound, s.prepare, "k", "missing-parent")
    _raises(NotFound, s.view, "v", "missing-parent")
    _raises(InvalidArgument, s.prepare, "")
    _raises(InvalidArgument, s.prepare, "nul\x00key")
    _raises(InvalidArgument, s.prepare, "k", "", {"x": 1})
    s.prepare("act")
    _raises(InvalidArgument, s.prepare, "k", "act")  # parent must be committed
    _raises(InvalidArgument, s.view, "v", "act")
    s.commit("com", "act")
    s.view("v", "com")
    _raises(InvalidArgument, s.commit, "x", "v")  # a view cannot be committed
    _raises(InvalidArgument, s.commit, "x", "com")  # nor can a committed snapshot
    _raises(InvalidArgument, s.prepare, "k", "v")  # nor be a parent
    assert {i.key for i in s.walk()} == {"com", "v"}
    assert s.cleanup() == []


@_check()
def check_remove(make: SnapshotterFactory, tmp: str) -> None:
    s = make()
    _layer(s, "A", "", {"a": "1"})
    s.prepare("b", "A")
    s.view("v", "A")
    _raises(Conflict, s.remove, "A")
    assert s.stat("A").kind == "committed"
    d = os.path.dirname(s.upper_dir("b"))
    s.remove("b")
    assert not os.path.exists(d)
    _raises(Conflict, s.remove, "A")
    s.remove("v")
    s.remove("A")
    _raises(NotFound, s.remove, "A")
    assert list(s.walk()) == []
    assert s.cleanup() == []


@_check()
def check_cleanup(make: SnapshotterFactory, tmp: str) -> None:
    s = make()
    _layer(s, "A", "", {"a": "1"})
    s.prepare("keep", "A")
    s.prepare("lost", "A")
    snaps = _snapshots_dir(s, "A")
    lost_dir = os.path.dirname(s.upper_dir("lost"))
    # a directory no record knows (as a crash between rename and commit leaves), a stale stage
    # of a dead process, and a record whose directory went away
    stray = os.path.join(snaps, "987654")
    _write(os.path.join(stray, "fs", "junk"), "x")
    stale = os.path.join(snaps, ".new-999999999-abc")
    _write(os.path.join(stale, "fs", "junk"), "x")
    moved = os.path.join(snaps, "moved-away")
    os.rename(lost_dir, moved)
    removed = make().cleanup()
    assert "lost" in removed and stray in removed and stale in removed and moved in removed, removed
    for p in (stray, stale, moved):
        assert not os.path.lexists(p), p
    _raises(NotFound, s.stat, "lost")
    assert {i.key for i in s.walk()} == {"A", "keep"}
    assert _read(os.path.join(s.upper_dir("A"), "a")) == "1"
    assert s.cleanup() == []


@_check()
def check_usage(make: SnapshotterFactory, tmp: str) -> None:
    s = make()
    s.prepare("u")
    before = s.usage("u")
    up = s.upper_dir("u")
    _write(os.path.join(up, "d/big"), "x" * 10000)
    _write(os.path.join(up, "small"), "abc")
    os.link(os.path.join(up, "d/big"), os.path.join(up, "d/big-link"))  # counted once
    after = s.usage("u")
    assert after.size - before.size == 10003, (before, after)
    assert after.inodes - before.inodes == 3, (before, after)  # d, big (+link), small
    s.commit("U", "u")
    assert s.usage("U") == after


# ---- mounted behaviour --------------------------------------------------------------------------

@_check(needs_mount=True)
def check_parent_chain(make: SnapshotterFactory, tmp: str) -> None:
    s = make()
    _layer(s, "L1", "", {"one": "1", "shared": "from 1", "dir/a": "a"})
    _layer(s, "L2", "L1", {"two": "2", "shared": "from 2", "dir/b": "b"})
    _layer(s, "L3", "L2", {"three": "3"})
    lowers = s.lower_dirs("L3")
    if s.whiteout_mode == "overlay":
        assert lowers == [s.upper_dir("L2"), s.upper_dir("L1")]
    else:
        assert lowers == [s.upper_dir("L2")]
    s.prepare("top", "L3")
    with mounted(s.mounts("top"), tmp) as m:
        assert _read(os.path.join(m, "one")) == "1"
        assert _read(os.path.join(m, "two")) == "2"
        assert _read(os.path.join(m, "three")) == "3"
        assert _read(os.path.join(m, "shared")) == "from 2"
        assert sorted(os.listdir(os.path.join(m, "dir"))) == ["a", "b"]
        _write(os.path.join(m, "new"), "written")
        _write(os.path.join(m, "shared"), "changed")
    assert _read(os.path.join(s.upper_dir("top"), "new")) == "written"
    with mounted(s.mounts("L3"), tmp) as m:  # a committed snapshot is unchanged
        assert _read(os.path.join(m, "shared")) == "from 2"
        assert not os.path.exists(os.path.join(m, "new"))
    assert make().mounts("top") == s.mounts("top")


@_check(needs_mount=True)
def check_view(make: SnapshotterFactory, tmp: str) -> None:
    s = make()
    _layer(s, "L1", "", {"one": "1"})
    _layer(s, "L2", "L1", {"two": "2"})
    for parent in ("L1", "L2"):
        key = f"view-{parent}"
        s.view(key, parent)
        assert s.stat(key).kind == "view" and s.stat(key).parent == parent
        with mounted(s.mounts(key), tmp) as m:
            assert _read(os.path.join(m, "one")) == "1"
            assert os.path.exists(os.path.join(m, "two")) == (parent == "L2")
            try:
                _write(os.path.join(m, "nope"), "x")
            except OSError as e:
                assert e.errno == errno.EROFS, e
            else:
                raise AssertionError("a view is writable")
    s.remove("view-L1")
    s.remove("view-L2")
    assert s.cleanup() == []


@_check(needs_mount=True)
def check_whiteouts(make: SnapshotterFactory, tmp: str) -> None:
    """A whiteout hides a lower file; an opaque dir hides the lower dir's entries."""
    s = make()
    _layer(s, "base", "", {"gone": "g", "kept": "k", "rmme": "r", "dir/old": "o", "dir2/x": "x"})
    s.prepare("child", "base")
    up = s.upper_dir("child")
    if s.whiteout_mode == "overlay":
        os.mknod(os.path.join(up, "gone"), stat.S_IFCHR | 0o000, os.makedev(0, 0))
        os.mkdir(os.path.join(up, "dir"))
        os.setxattr(os.path.join(up, "dir"), "trusted.overlay.opaque", b"y")
        _write(os.path.join(up, "dir/new"), "n")
    else:
        os.unlink(os.path.join(up, "gone"))
        os.unlink(os.path.join(up, "dir/old"))
        _write(os.path.join(up, "dir/new"), "n")
    with mounted(s.mounts("child"), tmp) as m:
        assert not os.path.lexists(os.path.join(m, "gone"))
        assert _read(os.path.join(m, "kept")) == "k"
        assert os.listdir(os.path.join(m, "dir")) == ["new"]
        os.unlink(os.path.join(m, "rmme"))  # deleting through the mount
        shutil.rmtree(os.path.join(m, "dir2"))
        os.mkdir(os.path.join(m, "dir2"))  # re-created: must come back empty
    rm = os.path.join(up, "rmme")
    if s.whiteout_mode == "overlay":
        st = os.lstat(rm)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, "no 0/0 whiteout in the upper dir"
    else:
        assert not os.path.lexists(rm)
    with mounted(s.mounts("child"), tmp) as m:
        assert not os.path.lexists(os.path.join(m, "rmme"))
        assert os.listdir(os.path.join(m, "dir2")) == []
    with mounted(s.mounts("base"), tmp) as m:  # the parent still has everything
        assert sorted(os.listdir(m)) == ["dir", "dir2", "gone", "kept", "rmme"]
        assert os.listdir(os.path.join(m, "dir")) == ["old"]


@_check(needs_mount=True)
def check_changes_stay_in_upper(make: SnapshotterFactory, tmp: str) -> None:
    """A renamed lower dir and a chmod'ed lower file land in the upper dir as full, plain files."""
    s = make()
    _layer(s, "base", "", {"olddir/file": "content", "meta": "m"})
    s.prepare("c", "base")
    with mounted(s.mounts("c"), tmp) as m:
        # with redirect_dir=off overlay answers EXDEV and the copy happens as mv does it
        shutil.move(os.path.join(m, "olddir"), os.path.join(m, "newdir"))
        os.chmod(os.path.join(m, "meta"), 0o600)
    up = s.upper_dir("c")
    assert _read(os.path.join(up, "newdir/file")) == "content"
    assert _read(os.path.join(up, "meta")) == "m", "metadata-only copy-up: the data is not in the upper dir"
    assert stat.S_IMODE(os.lstat(os.path.join(up, "meta")).st_mode) == 0o600
    if s.whiteout_mode == "overlay":
        st = os.lstat(os.path.join(up, "olddir"))
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
        for path in (os.path.join(up, "newdir"), os.path.join(up, "meta")):
            bad = {"trusted.overlay.redirect", "trusted.overlay.metacopy"} & set(os.listxattr(path))
            assert not bad, (path, bad)
    else:
        assert not os.path.lexists(os.path.join(up, "olddir"))


@_check(needs_mount=True)
def check_copy_keeps_metadata(make: SnapshotterFactory, tmp: str) -> None:
    """Ownership, modes, xattrs, hardlinks, symlinks, devices and fifos reach a child intact."""
    s = make()
    s.prepare("p")
    up = s.upper_dir("p")
    f = os.path.join(up, "suid")
    _write(f, "data")
    os.chown(f, 1234, 5678)
    os.chmod(f, 0o4751)
    os.link(f, os.path.join(up, "hard"))
    os.setxattr(f, "user.berth", b"value")
    os.symlink("/etc/passwd", os.path.join(up, "link"))
    os.mknod(os.path.join(up, "null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mkfifo(os.path.join(up, "fifo"), 0o640)
    os.mkdir(os.path.join(up, "sticky"), 0o1777)
    os.chmod(os.path.join(up, "sticky"), 0o1777)
    s.commit("P", "p")
    s.prepare("c", "P")
    with mounted(s.mounts("c"), tmp) as m:
        st = os.lstat(os.path.join(m, "suid"))
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o4751)
        assert os.getxattr(os.path.join(m, "suid"), "user.berth") == b"value"
        hard = os.lstat(os.path.join(m, "hard"))
        assert (hard.st_ino, hard.st_nlink) == (st.st_ino, 2)
        assert os.readlink(os.path.join(m, "link")) == "/etc/passwd"
        dev = os.lstat(os.path.join(m, "null"))
        assert stat.S_ISCHR(dev.st_mode) and dev.st_rdev == os.makedev(1, 3)
        assert stat.S_ISFIFO(os.lstat(os.path.join(m, "fifo")).st_mode)
        assert stat.S_IMODE(os.lstat(os.path.join(m, "sticky")).st_mode) == 0o1777


@_check(needs_mount=True, drivers=("overlay",))
def check_deep_chain(make: SnapshotterFactory, tmp: str) -> None:
    """128 committed layers mount as one overlay with every layer's file visible."""
    s = make()
    parent = ""
    for i in range(128):
        _layer(s, f"layer-{i:03d}", parent, {f"f{i:03d}": str(i)})
        parent = f"layer-{i:03d}"
    s.prepare("top", parent)
    assert len(s.lower_dirs("top")) == 128
    with mounted(s.mounts("top"), tmp) as m:
        names = sorted(os.listdir(m))
        assert names == [f"f{i:03d}" for i in range(128)]
        assert _read(os.path.join(m, "f000")) == "0" and _read(os.path.join(m, "f127")) == "127"
    s.view("top-view", parent)
    with mounted(s.mounts("top-view"), tmp) as m:
        assert len(os.listdir(m)) == 128
