"""Layer diff: overlay-mode (from an upper dir, and through a real overlay mount) and delete-mode
diffs, determinism, compression digests, write_tree, and diff -> apply round trips."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile

import pytest

from berth.archive import apply_layer, open_decompressed, write_diff, write_tree


def snapshot(root) -> dict[str, tuple]:
    """Everything that a layer must carry about a tree (mtimes in whole seconds)."""
    out = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            extra: object = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    extra = hashlib.sha256(f.read()).hexdigest()
                if st.st_nlink > 1:
                    extra = (extra, inodes.setdefault(st.st_ino, rel))
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = st.st_rdev
            xattrs = {} if stat.S_ISLNK(st.st_mode) else {
                k: os.getxattr(p, k) for k in os.listxattr(p) if k.startswith("user.")}
            mtime = None if stat.S_ISDIR(st.st_mode) and rel in ("", ".") else int(st.st_mtime)
            out[rel] = (st.st_mode, st.st_uid, st.st_gid, mtime, extra, xattrs)
    return out


def members(blob: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r|*") as t:
        return [m.name + ("/" if m.isdir() else "") for m in t]


def diff_bytes(upper, **kw) -> tuple[bytes, object]:
    buf = io.BytesIO()
    kw.setdefault("compression", None)
    res = write_diff(str(upper), buf, **kw)
    return buf.getvalue(), res


def make_tree(root, *, owners: bool = False) -> None:
    os.makedirs(root / "etc/ssl", exist_ok=True)
    (root / "etc/hostname").write_bytes(b"box\n")
    (root / "etc/ssl/cert.pem").write_bytes(bytes(range(256)) * 12)
    (root / "bin").mkdir()
    (root / "bin/tool").write_bytes(b"\x7fELF" + bytes(300_000))
    os.chmod(root / "bin/tool", 0o4755)
    os.link(root / "bin/tool", root / "bin/tool2")
    os.symlink("tool", root / "bin/alias")
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    (root / ("long" * 40)).write_bytes(b"long name")
    (root / "ünïcode").write_bytes(b"u")
    os.setxattr(root / "etc/hostname", "user.note", b"\x00\x01")
    os.mkfifo(root / "tmp/fifo")
    if owners:
        os.chown(root / "etc/ssl", 100, 101)
        os.chown(root / "etc/ssl/cert.pem", 3_000_000, 7)
        os.mknod(root / "tmp/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames + dirnames:
            os.utime(os.path.join(dirpath, n), (1_700_000_000, 1_700_000_000), follow_symlinks=False)


def test_round_trip_reproduces_the_tree(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src, owners=os.geteuid() == 0)
    for comp in (None, "gzip", "zstd"):
        blob, res = diff_bytes(src, whiteout_mode="delete", compression=comp)
        assert res.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
        assert res.compressed_size == len(blob)
        plain = open_decompressed(io.BytesIO(blob)).read()
        assert res.diff_id == "sha256:" + hashlib.sha256(plain).hexdigest() and res.size == len(plain)
        assert res.media_type.endswith({None: ".tar", "gzip": ".tar+gzip", "zstd": ".tar+zstd"}[comp])
        dst = tmp_path / f"dst-{comp}"
        dst.mkdir()
        applied = apply_layer(io.BytesIO(blob), str(dst))
        assert applied.diff_id == res.diff_id
        assert snapshot(dst) == snapshot(src)


def test_headers_are_normalised_and_hardlinks_kept(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src)
    blob, _ = diff_bytes(src, whiteout_mode="delete")
    with tarfile.open(fileobj=io.BytesIO(blob)) as t:
        ms = t.getmembers()
    assert all(m.uname == "" and m.gname == "" for m in ms)
    assert all("atime" not in m.pax_headers and "ctime" not in m.pax_headers for m in ms)
    links = [m for m in ms if m.islnk()]
    assert [(m.name, m.linkname) for m in links] == [("bin/tool2", "bin/tool")]
    names = [m.name for m in ms]
    assert names.index("bin") < names.index("bin/alias") < names.index("bin/tool")


def test_same_tree_twice_gives_the_same_diff_id(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    make_tree(a)
    make_tree(b)  # other inodes, ctimes and creation order details
    ra = diff_bytes(a, whiteout_mode="delete", compression="gzip")[1]
    rb = diff_bytes(b, whiteout_mode="delete", compression="gzip")[1]
    assert ra.diff_id == rb.diff_id and ra.digest == rb.digest  # type: ignore[attr-defined]
    assert diff_bytes(a, whiteout_mode="delete")[1].diff_id == ra.diff_id  # type: ignore[attr-defined]
    os.utime(b / "etc/hostname", (1_700_000_001, 1_700_000_001))
    assert diff_bytes(b, whiteout_mode="delete")[1].diff_id != ra.diff_id  # type: ignore[attr-defined]


def test_source_date_epoch_clamps_mtimes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    os.utime(src / "f", (2_000_000_000, 2_000_000_000))
    (src / "old").write_bytes(b"y")
    os.utime(src / "old", (100, 100))
    blob, _ = diff_bytes(src, whiteout_mode="delete", source_date_epoch=1000)
    with tarfile.open(fileobj=io.BytesIO(blob)) as t:
        assert {m.name: m.mtime for m in t} == {"f": 1000, "old": 100}


def _copy(src, dst) -> None:
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)


def test_delete_mode_diff_against_parent(tmp_path):
    parent = tmp_path / "parent"
    parent.mkdir()
    make_tree(parent)
    (parent / "var/lib").mkdir(parents=True)
    (parent / "var/lib/db").write_bytes(b"A" * 100)
    os.utime(parent / "var/lib/db", (1_700_000_000, 1_700_000_000))
    snap = tmp_path / "snap"
    _copy(parent, snap)
    # changes: delete a file and a dir, add, modify content only (same size, whole-second mtime), chmod
    (snap / "etc/hostname").unlink()
    shutil.rmtree(snap / "etc/ssl")
    (snap / "new").mkdir()
    (snap / "new/file").write_bytes(b"n")
    (snap / "var/lib/db").write_bytes(b"B" * 100)
    os.utime(snap / "var/lib/db", (1_700_000_000, 1_700_000_000))
    os.chmod(snap / "tmp", 0o1770)
    os.utime(snap / "tmp", (1_700_000_000, 1_700_000_000))
    blob, res = diff_bytes(snap, whiteout_mode="delete", lower_dirs=[str(parent)])
    got = members(blob)
    assert "etc/.wh.hostname" in got and "etc/.wh.ssl" in got
    assert "new/" in got and "new/file" in got and "var/lib/db" in got and "tmp/" in got
    assert "bin/tool" not in got and "long" * 40 not in got  # unchanged files are not in the layer
    # applying the layer to a copy of the parent reproduces the snapshot
    target = tmp_path / "target"
    _copy(parent, target)
    apply_layer(io.BytesIO(blob), str(target), whiteout_mode="delete")
    assert snapshot(target) == snapshot(snap)


def test_delete_mode_without_parent_is_the_full_tree(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src)
    blob, _ = diff_bytes(src, whiteout_mode="delete")
    buf = io.BytesIO()
    size = write_tree(str(src), buf)
    assert size == len(buf.getvalue())
    assert buf.getvalue() == blob
    assert not any(".wh." in m for m in members(blob))


@pytest.mark.root
def test_overlay_mode_from_upper_dir(tmp_path):
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc/new.conf").write_bytes(b"c")
    os.mknod(upper / "etc/removed", stat.S_IFCHR | 0o600, 0)
    (upper / "cache").mkdir()
    os.setxattr(upper / "cache", "trusted.overlay.opaque", b"y")
    (upper / "cache/fresh").write_bytes(b"f")
    os.setxattr(upper / "etc/new.conf", "trusted.overlay.origin", b"junk")
    blob, _ = diff_bytes(upper, whiteout_mode="overlay")
    assert members(blob) == ["cache/", "cache/.wh..wh..opq", "cache/fresh", "etc/", "etc/new.conf",
                             "etc/.wh.removed"]
    with tarfile.open(fileobj=io.BytesIO(blob)) as t:
        assert not any(k.startswith("SCHILY.xattr.trusted") for m in t for k in m.pax_headers)
    os.setxattr(upper / "cache", "trusted.overlay.redirect", b"/x")
    with pytest.raises(Exception, match="redirect"):
        diff_bytes(upper, whiteout_mode="overlay")


@pytest.mark.root
def test_overlay_round_trip_through_a_real_mount(tmp_path, no_leaked_mounts):
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    make_tree(lower)
    (lower / "data/sub").mkdir(parents=True)
    (lower / "data/sub/old").write_bytes(b"o")
    (lower / "data/keep").write_bytes(b"k")
    opts = f"lowerdir={lower},upperdir={upper},workdir={work},redirect_dir=off,metacopy=off,index=off"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], check=True)
    try:
        (merged / "etc/hostname").unlink()
        shutil.rmtree(merged / "data")
        (merged / "data").mkdir()                          # overlay makes it opaque
        (merged / "data/only").write_bytes(b"only")
        (merged / "etc/ssl/cert.pem").write_bytes(b"changed")
        os.chmod(merged / "etc/ssl", 0o700)                # copy-up of metadata
        os.symlink("/nowhere", merged / "dangling")
        expected = snapshot(merged)
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    blob, res = diff_bytes(upper, whiteout_mode="overlay")
    got = members(blob)
    assert "etc/.wh.hostname" in got and "data/.wh..wh..opq" in got
    assert "long" * 40 not in got  # only the upper dir was walked
    target = tmp_path / "target"
    _copy(lower, target)
    apply_layer(io.BytesIO(blob), str(target), whiteout_mode="delete")
    assert snapshot(target) == expected
    # the same layer applied in overlay mode over the same lower gives the same merged view
    upper2, work2 = tmp_path / "upper2", tmp_path / "work2"
    upper2.mkdir()
    work2.mkdir()
    apply_layer(io.BytesIO(blob), str(upper2), whiteout_mode="overlay", lower_dirs=[str(lower)])
    opts = f"lowerdir={lower},upperdir={upper2},workdir={work2},redirect_dir=off,metacopy=off,index=off"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], check=True)
    try:
        assert snapshot(merged) == expected
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    again, res2 = diff_bytes(upper2, whiteout_mode="overlay")
    assert members(again) == got


def _edge_tree(root) -> None:
    """Entries that take every path of the writer: small, exactly-small, large, hardlinked (small and
    large), long and non-ASCII names, xattrs, big ids (as root), symlinks, fifos, empty files."""
    from berth.archive import diff as d
    (root / "a/b").mkdir(parents=True)
    (root / "a/b/c.txt").write_bytes(b"hello")
    (root / "a/empty").write_bytes(b"")
    (root / "a" / ("n" * 98)).write_bytes(b"98")       # "a/" + 98 = 100: the ustar limit
    (root / "a" / ("n" * 99)).write_bytes(b"99")       # 101: PAX path
    (root / "u").mkdir()
    (root / "u/ünï").write_bytes(b"u")
    (root / "big").mkdir()
    (root / "big/exact").write_bytes(os.urandom(d._SMALL))
    (root / "big/over").write_bytes(os.urandom(d._SMALL + 1))
    (root / "big/large").write_bytes(os.urandom(3 * d._SMALL + 7))
    (root / "hl").mkdir()
    (root / "hl/one").write_bytes(b"link" * 1000)
    os.link(root / "hl/one", root / "hl/two")
    os.link(root / "big/large", root / "hl/large2")
    (root / "x").mkdir()
    (root / "x/file").write_bytes(b"x")
    os.setxattr(root / "x/file", "user.k", b"v\x00")
    os.setxattr(root / "x", "user.dir", b"d")
    os.symlink("c.txt", root / "a/b/sym")
    os.symlink("t" * 200, root / "a/b/longsym")
    os.mkfifo(root / "fifo")
    if os.geteuid() == 0:
        (root / "own").mkdir()
        (root / "own/bigid").write_bytes(b"i")
        os.chown(root / "own/bigid", 3_000_000, 9_000_000)


def test_small_buffers_give_the_same_bytes(tmp_path, monkeypatch):
    """Entries that straddle or exceed the output buffer are written exactly as with big buffers."""
    from berth.archive import diff as d
    src = tmp_path / "src"
    src.mkdir()
    _edge_tree(src)
    want, res = diff_bytes(src, whiteout_mode="delete")
    for buf in (4096, 1536, 512):
        monkeypatch.setattr(d, "_BUF", buf)
        monkeypatch.setattr(d, "_NBUF", 2)
        got, res2 = diff_bytes(src, whiteout_mode="delete")
        assert got == want and res2.diff_id == res.diff_id
    dst = tmp_path / "dst"
    dst.mkdir()
    apply_layer(io.BytesIO(want), str(dst))
    assert snapshot(dst) == snapshot(src)
    with tarfile.open(fileobj=io.BytesIO(want)) as t:
        links = sorted((m.name, m.linkname) for m in t if m.islnk())
    assert links == [("hl/large2", "big/large"), ("hl/two", "hl/one")]


def test_negative_mtime_is_a_pax_record(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "old").write_bytes(b"o")
    os.utime(src / "old", (-100, -100))
    blob, _ = diff_bytes(src, whiteout_mode="delete")
    with tarfile.open(fileobj=io.BytesIO(blob)) as t:
        m = t.getmember("old")
    assert m.pax_headers.get("mtime") == "-100" and m.mtime == -100
    dst = tmp_path / "dst"
    dst.mkdir()
    apply_layer(io.BytesIO(blob), str(dst))
    assert os.lstat(dst / "old").st_mtime == -100


@pytest.mark.root
def test_diff_leaves_atimes_alone(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"data")
    os.utime(src / "f", (1_000_000_000, 1_600_000_000))  # atime older than mtime: relatime would update
    diff_bytes(src, whiteout_mode="delete")
    assert os.stat(src / "f").st_atime == 1_000_000_000


def test_a_failing_output_is_reported_and_nothing_hangs(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"f{i}").write_bytes(os.urandom(100_000))

    class Broken:
        def write(self, data) -> int:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_diff(str(src), Broken(), whiteout_mode="delete", compression=None)  # type: ignore[arg-type]


def test_a_file_that_shrinks_is_a_conflict(tmp_path, monkeypatch):
    from berth.archive import diff as d
    from berth.errors import Conflict
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x" * 5000)
    real_fstat = os.fstat

    def lying_fstat(fd):  # the size seen before reading is larger than what is there
        st = real_fstat(fd)
        return os.stat_result((*st[:6], st.st_size + 100, *st[7:10]))

    monkeypatch.setattr(d.os, "fstat", lying_fstat)
    with pytest.raises(Conflict, match="shrank"):
        diff_bytes(src, whiteout_mode="delete")


def test_entries_changed_since_the_listing_are_archived_as_they_are(tmp_path, monkeypatch):
    """The listing said "regular file" but the name is now a symlink, a fifo or a directory: the
    open either fails (symlink: O_NOFOLLOW) or the fd is not a regular file; nothing blocks or
    is followed, and the entry is archived as what it is now."""
    from berth.archive import diff as d
    src = tmp_path / "src"
    src.mkdir()
    os.symlink("/etc/passwd", src / "link")
    os.mkfifo(src / "fifo")
    (src / "dir").mkdir()
    (src / "dir/f").write_bytes(b"f")
    (src / "file").write_bytes(b"data")
    real_entries = d._entries
    monkeypatch.setattr(d, "_entries", lambda dfd: [(n, True) for n, _ in real_entries(dfd)])
    blob, _ = diff_bytes(src, whiteout_mode="delete")
    with tarfile.open(fileobj=io.BytesIO(blob)) as t:
        got = {m.name: (m.type, m.linkname, m.size) for m in t}
    assert got == {"dir": (tarfile.DIRTYPE, "", 0), "dir/f": (tarfile.REGTYPE, "", 1),
                   "fifo": (tarfile.FIFOTYPE, "", 0), "file": (tarfile.REGTYPE, "", 4),
                   "link": (tarfile.SYMTYPE, "/etc/passwd", 0)}


def test_without_o_noatime_permission_the_diff_still_reads(tmp_path, monkeypatch):
    """O_NOATIME needs ownership or CAP_FOWNER (EPERM otherwise, e.g. rootless): dropped, once."""
    from berth.archive import diff as d
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}").write_bytes(b"x" * i)
    (src / "big").write_bytes(b"b" * (d._SMALL + 5))
    want, _ = diff_bytes(src, whiteout_mode="delete")
    real_open = os.open
    refused = []

    def no_noatime(path, flags, *a, **kw):
        if flags & os.O_NOATIME:
            refused.append(path)
            raise PermissionError(1, "Operation not permitted")
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(d.os, "open", no_noatime)
    got, _ = diff_bytes(src, whiteout_mode="delete")
    assert got == want and len(refused) == 1


def test_listing_without_d_type_and_short_reads_give_the_same_bytes(tmp_path, monkeypatch):
    """Filesystems without d_type (every entry stat'ed by name) and reads that return less than
    asked produce exactly the same archive."""
    from berth.archive import diff as d
    src = tmp_path / "src"
    src.mkdir()
    _edge_tree(src)
    want, _ = diff_bytes(src, whiteout_mode="delete")
    real_entries, real_readv = d._entries, os.readv
    monkeypatch.setattr(d, "_entries", lambda dfd: [(n, False) for n, _ in real_entries(dfd)])
    assert diff_bytes(src, whiteout_mode="delete")[0] == want
    monkeypatch.setattr(d, "_entries", real_entries)

    def short_readv(fd, bufs):  # at most 1000 bytes per call
        view = bufs[0]
        return real_readv(fd, (view[:1000],))

    monkeypatch.setattr(d.os, "readv", short_readv)
    assert diff_bytes(src, whiteout_mode="delete")[0] == want


def test_a_slow_output_makes_the_walker_wait_for_buffers(tmp_path, monkeypatch):
    """With every buffer in flight the walker waits for the next one freed; bytes stay the same."""
    import time

    from berth.archive import diff as d
    src = tmp_path / "src"
    src.mkdir()
    _edge_tree(src)
    want, _ = diff_bytes(src, whiteout_mode="delete")
    monkeypatch.setattr(d, "_BUF", 4096)
    monkeypatch.setattr(d, "_NBUF", 2)
    made = []
    real_init = d._Sink.__init__

    def init(self, *a, **kw):
        real_init(self, *a, **kw)
        made.append(self)

    monkeypatch.setattr(d._Sink, "__init__", init)

    class Slow(io.BytesIO):
        def write(self, data) -> int:
            time.sleep(0.0005)
            return super().write(data)

    out = Slow()
    write_diff(str(src), out, whiteout_mode="delete", compression=None)
    assert out.getvalue() == want
    assert made[0]._made == 2 and len(made[0]._pool) + made[0]._freed.qsize() == 2
