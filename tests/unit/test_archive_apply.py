"""Layer apply: entry types, metadata, xattrs, whiteouts in both modes, hardlinks, type changes,
duplicates, compression detection and the diffID."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess

import pytest

from berth.archive import Limits, apply_layer, open_decompressed
from berth.archive import tarformat as tf
from berth.errors import DataCorrupt, InvalidArgument

MT = 1_600_000_000


def member(name, typ=tf.REG, data=b"", **kw) -> bytes:
    if isinstance(name, str):
        name = name.encode()
    kw.setdefault("mtime", MT)
    kw.setdefault("mode", 0o755 if typ == tf.DIR else 0o644)
    if "linkname" in kw and isinstance(kw["linkname"], str):
        kw["linkname"] = kw["linkname"].encode()
    h = tf.build_header(name, typ, size=len(data), **kw)
    return h + data + bytes(-len(data) % 512)


def tar(*members: bytes) -> bytes:
    return b"".join(members) + bytes(1024)


def apply_bytes(data: bytes, root, **kw):
    return apply_layer(io.BytesIO(data), str(root), **kw)


def zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "rootfs"
    r.mkdir()
    return r


def test_regular_files_dirs_symlinks_and_modes(root):
    data = tar(
        member("etc/", tf.DIR, mode=0o755),
        member("etc/passwd", data=b"root:x:0:0\n", mode=0o644),
        member("bin/", tf.DIR, mode=0o755),
        member("bin/su", data=b"\x7fELF", mode=0o4755),
        member("bin/wall", data=b"x", mode=0o2711),
        member("tmp/", tf.DIR, mode=0o1777),
        member("etc/link", tf.SYM, linkname="/etc/passwd"),
        member("secret", data=b"s", mode=0o600),
    )
    res = apply_bytes(data, root)
    assert res.entries == 8
    assert (root / "etc/passwd").read_bytes() == b"root:x:0:0\n"
    assert stat.S_IMODE(os.lstat(root / "bin/su").st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(root / "bin/wall").st_mode) == 0o2711
    assert stat.S_IMODE(os.lstat(root / "tmp").st_mode) == 0o1777
    assert stat.S_IMODE(os.lstat(root / "secret").st_mode) == 0o600
    assert os.readlink(root / "etc/link") == "/etc/passwd"
    for p in ("etc", "etc/passwd", "bin/su", "tmp", "secret"):
        assert os.lstat(root / p).st_mtime == MT, p
    assert os.lstat(root / "etc/link").st_mtime == MT


def test_diff_id_is_sha256_of_uncompressed_tar_and_compression_is_detected(tmp_path):
    data = tar(member("a/", tf.DIR), member("a/f", data=b"hello" * 1000))
    want = "sha256:" + hashlib.sha256(data).hexdigest()
    for i, blob in enumerate((data, gzip.compress(data), zstd(data))):
        dst = tmp_path / f"r{i}"
        dst.mkdir()
        res = apply_bytes(blob, dst)
        assert res.diff_id == want
        assert res.size == len(data)
        assert (dst / "a/f").read_bytes() == b"hello" * 1000
    assert open_decompressed(io.BytesIO(gzip.compress(data))).read() == data


def test_expected_diff_id_mismatch(root):
    with pytest.raises(DataCorrupt):
        apply_bytes(tar(member("f", data=b"x")), root, expected_diff_id="sha256:" + "0" * 64)


def test_unsupported_compression_is_named(root):
    with pytest.raises(InvalidArgument, match="xz"):
        apply_bytes(b"\xfd7zXZ\x00" + bytes(100), root)


@pytest.mark.root
def test_ownership_devices_fifos(root):
    data = tar(
        member("home/", tf.DIR, mode=0o750, uid=1000, gid=1001),
        member("home/f", data=b"x", uid=1000, gid=1001, mode=0o640),
        member("home/l", tf.SYM, linkname="f", uid=1002, gid=1003),
        member("dev/", tf.DIR),
        member("dev/null", tf.CHR, devmajor=1, devminor=3, mode=0o666),
        member("dev/loop9", tf.BLK, devmajor=7, devminor=9, mode=0o660, gid=6),
        member("run/fifo", tf.FIFO, mode=0o620, uid=5),
        member("big-ids", data=b"", uid=3_000_000, gid=4_000_000),
    )
    apply_bytes(data, root)
    st = os.lstat(root / "home")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o750)
    st = os.lstat(root / "home/f")
    assert (st.st_uid, st.st_gid) == (1000, 1001)
    st = os.lstat(root / "home/l")
    assert (st.st_uid, st.st_gid) == (1002, 1003)
    st = os.lstat(root / "dev/null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3) and stat.S_IMODE(st.st_mode) == 0o666
    st = os.lstat(root / "dev/loop9")
    assert stat.S_ISBLK(st.st_mode) and st.st_rdev == os.makedev(7, 9) and st.st_gid == 6
    st = os.lstat(root / "run/fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o620 and st.st_uid == 5
    assert st.st_mtime == MT
    st = os.lstat(root / "big-ids")
    assert (st.st_uid, st.st_gid) == (3_000_000, 4_000_000)


@pytest.mark.root
def test_xattrs_policy(root):
    cap = bytes.fromhex("0100000200200000000000000000000000000000")  # cap_net_bind_service+ep
    data = tar(
        member("bin/", tf.DIR, xattrs={"user.dir": b"d"}),
        member("bin/ping", data=b"x", mode=0o755, uid=0,
               xattrs={"security.capability": cap, "user.mime": b"\x00\xffbin", "security.selinux": b"ctx",
                       "trusted.other": b"t"}),
    )
    apply_bytes(data, root)
    f = root / "bin/ping"
    assert os.getxattr(f, "security.capability") == cap
    assert os.getxattr(f, "user.mime") == b"\x00\xffbin"
    assert os.getxattr(root / "bin", "user.dir") == b"d"
    names = os.listxattr(f)
    assert "trusted.other" not in names
    assert "security.selinux" not in names or os.getxattr(f, "security.selinux") != b"ctx"


def test_trusted_overlay_xattr_is_refused(root):
    data = tar(member("d/", tf.DIR, xattrs={"trusted.overlay.opaque": b"y"}))
    with pytest.raises(InvalidArgument, match="'d/'.*trusted.overlay.opaque"):
        apply_bytes(data, root)


def test_dir_mtime_set_after_contents(root):
    data = tar(member("d/", tf.DIR, mtime=1000), member("d/a", data=b"1"),
               member("d/sub/", tf.DIR, mtime=2000), member("d/sub/b", data=b"2"))
    apply_bytes(data, root)
    assert os.lstat(root / "d").st_mtime == 1000
    assert os.lstat(root / "d/sub").st_mtime == 2000


def test_implicit_parents_and_root_entry(root):
    apply_bytes(tar(member("./", tf.DIR, mode=0o700), member("x/y/z", data=b"z")), root)
    assert (root / "x/y/z").read_bytes() == b"z"
    assert os.path.isdir(root / "x/y")
    assert stat.S_IMODE(os.lstat(root).st_mode) != 0o700  # the target root keeps its own mode


def test_hardlinks(root):
    apply_bytes(tar(member("a", data=b"data", mode=0o751), member("d/b", tf.LNK, linkname="a"),
                    member("c", tf.LNK, linkname="./d/../a")), root)
    a, b, c = (os.lstat(root / p) for p in ("a", "d/b", "c"))
    assert a.st_ino == b.st_ino == c.st_ino and a.st_nlink == 3


def test_hardlink_to_missing_target_is_refused(root):
    with pytest.raises(InvalidArgument, match="'h'.*does not exist"):
        apply_bytes(tar(member("h", tf.LNK, linkname="nope")), root)


def test_type_changes_replace_the_leaf(root):
    apply_bytes(tar(member("x", tf.SYM, linkname="y"), member("y/", tf.DIR), member("y/f", data=b"1")), root)
    apply_bytes(tar(member("x", data=b"now a file", mode=0o600), member("y", data=b"dir became file")), root)
    assert not os.path.islink(root / "x") and (root / "x").read_bytes() == b"now a file"
    assert (root / "y").read_bytes() == b"dir became file"
    apply_bytes(tar(member("x/", tf.DIR), member("x/inner", data=b"i")), root)
    assert (root / "x/inner").read_bytes() == b"i"


def test_duplicates_last_wins(root):
    apply_bytes(tar(member("f", data=b"first"), member("d/", tf.DIR, mode=0o700),
                    member("f", data=b"second!"), member("d/", tf.DIR, mode=0o711, mtime=5)), root)
    assert (root / "f").read_bytes() == b"second!"
    st = os.lstat(root / "d")
    assert stat.S_IMODE(st.st_mode) == 0o711 and st.st_mtime == 5


def test_modifying_a_hardlinked_file_does_not_change_its_other_links(root):
    (root / "a").write_bytes(b"old")
    os.link(root / "a", root / "b")
    apply_bytes(tar(member("a", data=b"new")), root)
    assert (root / "b").read_bytes() == b"old"


def _lower_tree(root):
    (root / "etc").mkdir()
    (root / "etc/keep").write_bytes(b"k")
    (root / "etc/gone").write_bytes(b"g")
    (root / "var/cache/sub").mkdir(parents=True)
    (root / "var/cache/old").write_bytes(b"o")
    (root / "var/cache/sub/deep").write_bytes(b"d")
    (root / "opt/tree").mkdir(parents=True)


def test_whiteouts_delete_mode(root):
    _lower_tree(root)
    data = tar(
        member("etc/.wh.gone"),
        member("etc/.wh.never-existed"),
        member("opt/.wh.tree"),
        member("var/cache/", tf.DIR),
        member("var/cache/new", data=b"n"),        # before the opaque marker: kept
        member("var/cache/.wh..wh..opq"),
        member("var/cache/sub/", tf.DIR),          # after the marker: a fresh dir
        member("var/cache/sub/fresh", data=b"f"),
    )
    apply_bytes(data, root, whiteout_mode="delete")
    assert sorted(os.listdir(root / "etc")) == ["keep"]
    assert os.listdir(root / "opt") == []
    assert sorted(os.listdir(root / "var/cache")) == ["new", "sub"]
    assert os.listdir(root / "var/cache/sub") == ["fresh"]


def test_whiteout_and_same_name_in_one_layer_delete_mode(root):
    _lower_tree(root)
    # the entry and its whiteout in one layer: the whiteout only hides lower content
    apply_bytes(tar(member("etc/gone", data=b"new"), member("etc/.wh.gone")), root)
    assert (root / "etc/gone").read_bytes() == b"new"
    apply_bytes(tar(member("var/.wh.cache"), member("var/cache/", tf.DIR), member("var/cache/x", data=b"x")),
                root)
    assert os.listdir(root / "var/cache") == ["x"]
    # the other order gives the same result
    (root / "var/cache/lower").write_bytes(b"l")
    apply_bytes(tar(member("var/cache/", tf.DIR), member("var/cache/y", data=b"y"), member("var/.wh.cache")),
                root)
    assert sorted(os.listdir(root / "var/cache")) == ["y"]


def test_malformed_whiteouts_are_refused(root):
    for bad in (".wh.", "d/.wh..", ".wh..."):
        with pytest.raises(InvalidArgument, match="whiteout"):
            apply_bytes(tar(member(bad)), root)
    with pytest.raises(InvalidArgument, match="whiteout"):
        apply_bytes(tar(member(".wh.x/y", data=b"1")), root)


def test_aufs_metadata_is_skipped(root):
    apply_bytes(tar(member(".wh..wh.plnk/", tf.DIR), member(".wh..wh.plnk/123.456", data=b"x"),
                    member("real", data=b"r")), root)
    assert os.listdir(root) == ["real"]


@pytest.mark.root
def test_whiteouts_overlay_mode(tmp_path):
    lower = tmp_path / "lower"
    lower.mkdir()
    _lower_tree(lower)
    (lower / "etc/shadow").write_bytes(b"s")
    os.chmod(lower / "etc", 0o751)
    os.utime(lower / "etc", (1234, 1234))
    upper = tmp_path / "upper"
    upper.mkdir()
    data = tar(
        member("etc/.wh.gone"),                         # etc/ not in the layer: implicit, lower metadata
        member("var/", tf.DIR),
        member("var/cache/", tf.DIR),
        member("var/cache/.wh..wh..opq"),
        member("var/cache/n", data=b"n"),
        member("opt/.wh.tree"),
        member("opt/tree/", tf.DIR),                  # whited out and re-created: opaque
        member("etc/shadow-", tf.LNK, linkname="etc/shadow"),  # target only in the lower: copied up
    )
    apply_bytes(data, upper, whiteout_mode="overlay", lower_dirs=[str(lower)])
    st = os.lstat(upper / "etc/gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    st = os.lstat(upper / "etc")
    assert stat.S_IMODE(st.st_mode) == 0o751 and st.st_mtime == 1234
    assert os.getxattr(upper / "var/cache", "trusted.overlay.opaque") == b"y"
    assert os.getxattr(upper / "opt/tree", "trusted.overlay.opaque") == b"y"
    with pytest.raises(OSError):
        os.getxattr(upper / "var", "trusted.overlay.opaque")
    assert (upper / "etc/shadow").read_bytes() == b"s"
    assert os.lstat(upper / "etc/shadow").st_ino == os.lstat(upper / "etc/shadow-").st_ino
    assert os.lstat(lower / "etc/shadow").st_nlink == 1
    # a file replacing a whiteout device
    apply_bytes(tar(member("etc/gone", data=b"back")), upper, whiteout_mode="overlay")
    assert (upper / "etc/gone").read_bytes() == b"back"


def test_gnu_and_posix_tars_with_long_names(tmp_path):
    src = tmp_path / "src"
    deep = src / ("d" * 120) / ("e" * 130)
    deep.mkdir(parents=True)
    (deep / ("f" * 200)).write_bytes(b"long")
    os.symlink("t" * 150, deep / "longlink")
    os.link(deep / ("f" * 200), src / "hard")
    for fmt in ("gnu", "posix", "ustar"):
        blob = tmp_path / f"{fmt}.tar"
        cmd = ["tar", f"--format={fmt}", "-cf", str(blob), "-C", str(src), "."]
        r = subprocess.run(cmd, capture_output=True)
        if r.returncode:
            assert fmt == "ustar"  # ustar cannot hold these names
            continue
        dst = tmp_path / f"dst-{fmt}"
        dst.mkdir()
        with open(blob, "rb") as f:
            res = apply_layer(f, str(dst))
        assert res.diff_id == "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
        rel = deep.relative_to(src)
        assert (dst / rel / ("f" * 200)).read_bytes() == b"long"
        assert os.readlink(dst / rel / "longlink") == "t" * 150
        assert os.lstat(dst / "hard").st_ino == os.lstat(dst / rel / ("f" * 200)).st_ino


def test_truncated_and_corrupt_archives(root):
    good = tar(member("f", data=b"x" * 2000))
    with pytest.raises(InvalidArgument, match="truncated"):
        apply_bytes(good[:1024], root)
    with pytest.raises(InvalidArgument, match="end-of-archive"):
        apply_bytes(good[:-1024], root)
    with pytest.raises(InvalidArgument, match="checksum"):
        apply_bytes(b"not a tar" * 100, root)
    with pytest.raises(InvalidArgument, match="trailing"):
        apply_bytes(good + b"garbage", root)
    with pytest.raises(InvalidArgument, match="gzip"):
        apply_bytes(gzip.compress(good)[:-20], root)
    with pytest.raises(InvalidArgument):
        apply_bytes(zstd(good)[:-40], root)


def test_limits_are_configurable(root):
    data = tar(*(member(f"f{i}", data=b"x") for i in range(20)))
    apply_bytes(data, root, limits=Limits(max_entries=20))
    with pytest.raises(InvalidArgument, match="entries"):
        apply_bytes(data, root, limits=Limits(max_entries=19))


def test_missing_target_is_not_found(tmp_path):
    from berth.errors import NotFound

    with pytest.raises(NotFound):
        apply_bytes(tar(member("f")), tmp_path / "nope")


def test_reader_thread_is_gone_after_errors(root):
    import threading

    before = {t.name for t in threading.enumerate()}
    for blob in (tar(member("../x")), b"garbage" * 1000, gzip.compress(b"x" * 100000)[:-10]):
        with pytest.raises(InvalidArgument):
            apply_bytes(blob, root)
    assert {t.name for t in threading.enumerate()} - before == set()


def test_name_cleaning_matches_the_lexical_rule():
    import itertools

    from berth.archive.apply import _clean
    from berth.archive.limits import Limits

    def reference(name: bytes):
        parts: list[bytes] = []
        for c in name.split(b"/"):
            if c in (b"", b"."):
                continue
            if c == b"..":
                if not parts:
                    return "escape"
                parts.pop()
                continue
            parts.append(c)
        return parts

    for k in range(1, 7):
        for t in itertools.product([b"a", b".", b"/"], repeat=k):
            name = b"".join(t)
            try:
                got = _clean(name, Limits())
            except InvalidArgument:
                got = "escape"
            assert got == reference(name), name
