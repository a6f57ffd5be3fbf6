"""Hostile layers (security-reliability.md B5 items 1-8) against apply_layer.

Every test extracts into ``rootfs/`` next to a sentinel ``victim/`` dir which must stay byte-
and mode-identical, and nothing else may appear next to the root. Bombs are streamed from
generators against tight Limits, so the test data stays small.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
from collections.abc import Iterator

import pytest

from berth.archive import Limits, apply_layer
from berth.archive import tarformat as tf
from berth.errors import DataCorrupt, InvalidArgument, LimitExceeded

pytestmark = pytest.mark.root


def member(name, typ=tf.REG, data=b"", **kw) -> bytes:
    if isinstance(name, str):
        name = name.encode()
    if isinstance(kw.get("linkname"), str):
        kw["linkname"] = kw["linkname"].encode()
    kw.setdefault("mtime", 1_600_000_000)
    kw.setdefault("mode", 0o755 if typ == tf.DIR else 0o644)
    return tf.build_header(name, typ, size=len(data), **kw) + data + bytes(-len(data) % 512)


def raw_member(name: bytes, typ: bytes = tf.REG, size: int = 0, linkname: bytes = b"") -> bytes:
    """A bare ustar header, whatever the name (no PAX help)."""
    return tf.raw_header(name[:100], typ, 0o644, 0, 0, size, 0, linkname[:100], 0, 0)


def pax_member(records: dict[bytes, bytes], name: bytes, typ: bytes = tf.REG, data: bytes = b"") -> bytes:
    body = b"".join(tf.pax_record(k, v) for k, v in records.items())
    return (raw_member(b"PaxHeaders.0/x", tf.PAX, len(body)) + body + bytes(-len(body) % 512)
            + raw_member(name, typ, len(data)) + data + bytes(-len(data) % 512))


def gnu_long(kind: bytes, value: bytes) -> bytes:
    body = value + b"\0"
    return raw_member(b"././@LongLink", kind, len(body)) + body + bytes(-len(body) % 512)


def tar(*members: bytes) -> bytes:
    return b"".join(members) + bytes(1024)


class GenReader(io.RawIOBase):
    """A file object over a generator of byte chunks (bombs never exist in memory whole)."""

    def __init__(self, gen: Iterator[bytes]) -> None:
        self.gen = gen
        self.buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self.buf:
            try:
                self.buf = next(self.gen)
            except StopIteration:
                return 0
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n


def stream(gen: Iterator[bytes]) -> io.BufferedReader:
    return io.BufferedReader(GenReader(gen), 1 << 20)


def fingerprint(path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [""] + dirnames + filenames:
            p = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(p)
            data = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    data = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(p)
            out[os.path.relpath(p, path)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
                                              st.st_ino, data)
    return out


@pytest.fixture
def arena(tmp_path):
    """(rootfs, victim): victim/ holds hello and sub/; it and tmp_path's listing must not change."""
    root = tmp_path / "rootfs"
    root.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "hello").write_bytes(b"secret\n")
    os.chmod(victim / "hello", 0o640)
    (victim / "sub").mkdir()
    os.chmod(victim, 0o750)
    before = fingerprint(victim)
    yield root, victim
    assert fingerprint(victim) == before, "the victim dir changed"
    assert sorted(os.listdir(tmp_path)) == ["rootfs", "victim"], "something was written next to the root"


def apply_bytes(data: bytes, root, **kw):
    return apply_layer(io.BytesIO(data), str(root), **kw)


def try_apply(data: bytes, root, **kw) -> BaseException | None:
    try:
        apply_bytes(data, root, **kw)
    except InvalidArgument as e:
        return e
    return None


# --- B5.1 traversal names ---------------------------------------------------------------------
@pytest.mark.parametrize("name", [b"../victim/x", b"/../victim/x", b"a/../../victim/x",
                                  b"../../../../victim/x"])
def test_b5_1_traversal_names_are_refused(arena, name):
    root, _ = arena
    with pytest.raises(InvalidArgument, match=r"escapes the root") as ei:
        apply_bytes(tar(raw_member(name, size=0)), root)
    assert name.decode() in str(ei.value)


def test_b5_1_traversal_in_pax_path_and_gnu_longname(arena):
    root, _ = arena
    with pytest.raises(InvalidArgument, match="escapes the root"):
        apply_bytes(tar(pax_member({b"path": b"x/../../victim/pax"}, b"innocent")), root)
    with pytest.raises(InvalidArgument, match="escapes the root"):
        apply_bytes(tar(gnu_long(tf.GNU_LONGNAME, b"../victim/gnu"), raw_member(b"innocent")), root)
    with pytest.raises(InvalidArgument, match="escapes the root"):
        apply_bytes(tar(pax_member({b"linkpath": b"../victim/hello"}, b"h", tf.LNK)), root)


def test_b5_1_absolute_names_land_inside_the_root(arena):
    root, _ = arena
    apply_bytes(tar(member("/etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n"),
                    member("//abs//dir/", tf.DIR)), root)
    assert (root / "etc/passwd").read_bytes().startswith(b"root:x")
    assert (root / "abs/dir").is_dir()


# --- B5.2 symlinked parents ---------------------------------------------------------------------
FOLLOWERS = {
    "file": member("l/f", data=b"pwned"),
    "dir": member("l/d/", tf.DIR, mode=0o777),
    "hardlink": member("l/h", tf.LNK, linkname="plain"),
    "whiteout": member("l/.wh.hello"),
    "opaque": member("l/sub/.wh..wh..opq"),
    "symlink": member("l/s", tf.SYM, linkname="/"),
    "chmod-dir": member("l/", tf.DIR, mode=0o777, uid=1234, mtime=5),
}


@pytest.mark.parametrize("target", ["../victim", "/", "/etc", "../../..", "VICTIM_ABS"])
@pytest.mark.parametrize("follower", sorted(FOLLOWERS))
@pytest.mark.parametrize("mode", ["delete", "overlay"])
def test_b5_2_entries_under_a_symlink_stay_inside(arena, target, follower, mode):
    root, victim = arena
    if target == "VICTIM_ABS":
        target = str(victim)
    layer = tar(member("plain", data=b"p"), member("l", tf.SYM, linkname=target), FOLLOWERS[follower])
    try_apply(layer, root, whiteout_mode=mode)
    if follower != "chmod-dir":
        assert os.readlink(root / "l") == target


def test_b5_2_nested_symlink_to_victim_then_deep_file(arena):
    root, _ = arena
    err = try_apply(tar(member("dir/", tf.DIR), member("dir/l", tf.SYM, linkname="../../victim"),
                        member("dir/l/new/file", data=b"pwned")), root)
    assert err is not None and "dir/l/new/file" in str(err)


# --- B5.3 hardlinks -----------------------------------------------------------------------------
@pytest.mark.parametrize("link", ["../victim/hello", "/../victim/hello", "a/../../victim/hello"])
def test_b5_3_hardlink_outside_is_refused(arena, link):
    root, _ = arena
    with pytest.raises(InvalidArgument, match="escapes the root"):
        apply_bytes(tar(member("h", tf.LNK, linkname=link)), root)


def test_b5_3_hardlink_through_a_symlink_is_refused(arena):
    root, _ = arena
    with pytest.raises(InvalidArgument, match="'h'.*does not exist inside the root"):
        apply_bytes(tar(member("loophole", tf.SYM, linkname="../victim"),
                        member("h", tf.LNK, linkname="loophole/hello")), root)


def test_b5_3_hardlink_to_a_symlink_links_the_symlink_itself(arena):
    root, victim = arena
    apply_bytes(tar(member("s", tf.SYM, linkname="../victim/hello"), member("h", tf.LNK, linkname="s"),
                    member("h2", tf.LNK, linkname="s"), member("h2", data=b"overwrite", mode=0o777)), root)
    assert os.path.islink(root / "h") and os.readlink(root / "h") == "../victim/hello"
    assert os.lstat(root / "h").st_ino == os.lstat(root / "s").st_ino
    assert (root / "h2").read_bytes() == b"overwrite" and not os.path.islink(root / "h2")


def test_b5_3_hardlink_to_a_lower_layer_file(arena, tmp_path):
    root, victim = arena
    lower = tmp_path / "rootfs" / "_lower"  # lives under rootfs so that tmp_path's listing stays clean
    lower.mkdir()
    (lower / "lib").mkdir()
    (lower / "lib/libc.so").write_bytes(b"libc")
    os.symlink("../../victim", lower / "esc")
    upper = root / "upper"
    upper.mkdir()
    apply_bytes(tar(member("lib/libc.so.6", tf.LNK, linkname="lib/libc.so")), upper, whiteout_mode="overlay",
                lower_dirs=[str(lower)])
    assert (upper / "lib/libc.so.6").read_bytes() == b"libc"
    assert os.lstat(lower / "lib/libc.so").st_nlink == 1
    with pytest.raises(InvalidArgument, match="does not exist inside the root"):
        apply_bytes(tar(member("h", tf.LNK, linkname="esc/hello")), upper, whiteout_mode="overlay",
                    lower_dirs=[str(lower)])


# --- B5.4 type changes ---------------------------------------------------------------------------
@pytest.mark.parametrize("same_layer", [True, False])
def test_b5_4_symlink_replaced_by_file_never_followed(arena, same_layer):
    root, victim = arena
    first = [member("x", tf.SYM, linkname="../victim/hello"), member("y", tf.SYM, linkname="../victim"),
             member("z", tf.SYM, linkname="../victim/hello")]
    second = [member("x", data=b"replaced", mode=0o4777, uid=1234, gid=1234, mtime=5),
              member("y/", tf.DIR, mode=0o777, uid=1234, mtime=5),
              member("z", tf.FIFO, mode=0o777, uid=1234, mtime=5)]
    if same_layer:
        apply_bytes(tar(*first, *second), root)
    else:
        apply_bytes(tar(*first), root)
        apply_bytes(tar(*second), root)
    st = os.lstat(root / "x")
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o4777 and st.st_uid == 1234
    assert (root / "x").read_bytes() == b"replaced"
    st = os.lstat(root / "y")
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o777 and st.st_mtime == 5
    assert stat.S_ISFIFO(os.lstat(root / "z").st_mode)


# --- B5.5 whiteouts ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [".wh.", ".wh..", ".wh...", "d/.wh..", "d/.wh..."])
@pytest.mark.parametrize("mode", ["delete", "overlay"])
def test_b5_5_bad_whiteout_names_are_refused(arena, name, mode):
    root, _ = arena
    with pytest.raises(InvalidArgument, match="invalid whiteout"):
        apply_bytes(tar(member(name)), root, whiteout_mode=mode)


def test_b5_5_opaque_marker_becomes_the_overlay_xattr(arena):
    root, _ = arena
    apply_bytes(tar(member("d/", tf.DIR), member("d/.wh..wh..opq")), root, whiteout_mode="overlay")
    assert os.getxattr(root / "d", "trusted.overlay.opaque") == b"y"
    assert os.listdir(root / "d") == []


@pytest.mark.parametrize("mode", ["delete", "overlay"])
def test_b5_5_whiteout_under_a_symlinked_parent(arena, mode):
    root, _ = arena
    try_apply(tar(member("l", tf.SYM, linkname="../victim"), member("l/.wh.hello"),
                  member("l/.wh..wh..opq")), root, whiteout_mode=mode)
    try_apply(tar(member("m", tf.SYM, linkname=str(arena[1])), member("m/.wh.hello")), root,
              whiteout_mode=mode)


@pytest.mark.parametrize("mode", ["delete", "overlay"])
def test_b5_5_whiteout_plus_same_name_in_one_layer(arena, mode):
    root, _ = arena
    (root / "keep").write_bytes(b"lower")
    apply_bytes(tar(member(".wh.keep"), member("keep", data=b"upper")), root, whiteout_mode=mode)
    assert (root / "keep").read_bytes() == b"upper"
    apply_bytes(tar(member("k2", data=b"upper"), member(".wh.k2")), root, whiteout_mode=mode)
    assert (root / "k2").read_bytes() == b"upper"


def test_b5_5_overlay_and_security_xattrs_from_the_tar(arena):
    root, _ = arena
    with pytest.raises(InvalidArgument, match="trusted.overlay.redirect"):
        apply_bytes(tar(member("d/", tf.DIR, xattrs={"trusted.overlay.redirect": b"/victim"})), root)
    apply_bytes(tar(member("f", data=b"x", xattrs={"security.evil": b"1", "trusted.evil": b"2",
                                                    "user.overlay.opaque": b"y", "user.ok": b"3"})), root)
    assert os.listxattr(root / "f") == ["user.ok"] or set(os.listxattr(root / "f")) - {"security.selinux"} \
        == {"user.ok"}


# --- B5.6 devices and setuid files ---------------------------------------------------------------
def test_b5_6_device_nodes_and_setuid_files_are_created_not_opened(arena):
    root, _ = arena
    apply_bytes(tar(member("dev/mem", tf.CHR, devmajor=1, devminor=1, mode=0o640),
                    member("dev/sda", tf.BLK, devmajor=8, devminor=0, mode=0o660),
                    member("dev/fifo", tf.FIFO, mode=0o600),
                    member("bin/suid", data=b"#!", mode=0o6755, uid=0, gid=0)), root)
    st = os.lstat(root / "dev/mem")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 1) and stat.S_IMODE(st.st_mode) == 0o640
    st = os.lstat(root / "dev/sda")
    assert stat.S_ISBLK(st.st_mode) and st.st_rdev == os.makedev(8, 0)
    assert stat.S_IMODE(os.lstat(root / "bin/suid").st_mode) == 0o6755
    # (opening them from a container is the device cgroup's job: see the runtime's e2e tests)


# --- B5.7 bombs ---------------------------------------------------------------------------------
def test_b5_7_gzip_bomb_stops_at_max_bytes(arena):
    root, _ = arena
    chunk = gzip.compress(member("blk", data=bytes(1 << 20)), compresslevel=9)  # ~1 KB -> 1 MB
    assert len(chunk) < 4096

    def gen():  # 10k gzip members: ~10 MB compressed, ~10 GB uncompressed; never built whole
        for _ in range(10_000):
            yield chunk

    with pytest.raises(LimitExceeded, match="exceeds"):
        apply_layer(stream(gen()), str(root), limits=Limits(max_bytes=10 << 20))

    zeros = gzip.compress(bytes(1 << 20), compresslevel=9)

    def padding():  # a valid tar followed by ~10 GB of zero "padding"
        yield gzip.compress(tar(member("f", data=b"x")))
        for _ in range(10_000):
            yield zeros

    with pytest.raises(LimitExceeded, match="uncompressed size exceeds"):
        apply_layer(stream(padding()), str(root), limits=Limits(max_bytes=10 << 20))


def test_b5_7_entry_count_bomb(arena):
    root, _ = arena

    def gen():
        for i in range(100_000):
            yield raw_member(b"d/", tf.DIR) if i % 2 else raw_member(b"d/f%d" % (i % 50))
        yield bytes(1024)

    with pytest.raises(LimitExceeded, match="more than 10000 entries"):
        apply_layer(stream(gen()), str(root), limits=Limits(max_entries=10_000))


@pytest.mark.parametrize("how", ["octal", "base256", "pax"])
def test_b5_7_huge_declared_size_is_refused_before_writing(arena, how):
    root, _ = arena
    big = 10 << 30
    if how == "octal":
        hdr = raw_member(b"sparse", size=0o77777777777)  # the largest octal size: 8 GiB - 1
    elif how == "base256":
        hdr = bytearray(raw_member(b"sparse"))
        hdr[124:136] = b"\x80" + big.to_bytes(11, "big")
        hdr[148:156] = b"        "
        hdr[148:156] = b"%06o\0 " % sum(hdr)
        hdr = bytes(hdr)
    else:
        hdr = pax_member({b"size": str(big).encode()}, b"sparse")  # no data follows
    with pytest.raises(LimitExceeded, match="'sparse'.*size"):
        apply_layer(io.BytesIO(hdr + bytes(4096)), str(root), limits=Limits(max_bytes=1 << 30))
    assert os.listdir(root) == []


def test_b5_7_sparse_entries_are_refused(arena):
    root, _ = arena
    with pytest.raises(InvalidArgument, match="sparse"):
        apply_bytes(tar(raw_member(b"s", tf.GNU_SPARSE)), root)
    with pytest.raises(InvalidArgument, match="sparse"):
        apply_bytes(tar(pax_member({b"GNU.sparse.major": b"1", b"GNU.sparse.minor": b"0"}, b"s")), root)


def test_b5_7_deep_nesting(arena):
    root, _ = arena
    with pytest.raises(LimitExceeded, match="depth 10001 exceeds max_depth 1024"):
        apply_bytes(tar(pax_member({b"path": b"a/" * 10_000 + b"f"}, b"f")), root,
                    limits=Limits(max_path=30_000, max_depth=1024))

    def gen():  # a/, a/a/, a/a/a/, ... 10k deep, one entry at a time
        for depth in range(1, 10_001):
            yield pax_member({b"path": b"a/" * depth}, b"a/", tf.DIR)

    try:
        with pytest.raises(LimitExceeded, match="depth 1025"):
            apply_layer(stream(gen()), str(root), limits=Limits(max_depth=1024))
        assert os.path.isdir(root / ("a/" * 1024))
    finally:
        subprocess.run(["rm", "-rf", str(root / "a")], check=True)


def test_b5_7_long_paths(arena):
    root, _ = arena
    long = b"x" * 200 + b"/" + b"y" * 4800
    with pytest.raises(LimitExceeded, match="max_path"):
        apply_bytes(tar(pax_member({b"path": long}, b"p")), root)
    with pytest.raises(LimitExceeded, match="LongLink|L header"):
        apply_bytes(tar(gnu_long(tf.GNU_LONGNAME, long), raw_member(b"p")), root)
    with pytest.raises(LimitExceeded, match="max_name"):
        apply_bytes(tar(pax_member({b"path": b"n" * 300}, b"p")), root)
    with pytest.raises(LimitExceeded, match="exceeds the limit"):
        apply_bytes(tar(pax_member({b"comment": b"c" * (2 << 20)}, b"p")), root)
    with pytest.raises(LimitExceeded, match="symlink target"):
        apply_bytes(tar(pax_member({b"linkpath": b"t" * 5000}, b"s", tf.SYM)), root)


# --- B5.8 integrity ------------------------------------------------------------------------------
def test_b5_8_truncated_and_garbage_streams(arena):
    root, _ = arena
    good = tar(member("f", data=os.urandom(5000)))
    gz = gzip.compress(good)
    cases = {
        "truncated gzip": gz[:-30],
        "gzip with trailing garbage": gz + b"garbage!",
        "truncated tar": good[:700],
        "tar without end marker": good[:-1024],
        "tar with trailing garbage": good + b"\x01" * 100,
        "bad checksum": good[:148] + b"0000000\0" + good[156:],
    }
    for what, blob in cases.items():
        r = root / what.replace(" ", "-")
        r.mkdir()
        with pytest.raises(InvalidArgument):
            apply_bytes(blob, r)


def test_b5_8_diff_id_mismatch_and_duplicates(arena):
    root, _ = arena
    data = tar(member("dup", data=b"one"), member("dup", data=b"two"), member("dup", tf.SYM, linkname="x"),
               member("dup", data=b"three"))
    res = apply_bytes(data, root)
    assert (root / "dup").read_bytes() == b"three" and res.entries == 4
    with pytest.raises(DataCorrupt, match="diff_id"):
        apply_bytes(data, root, expected_diff_id="sha256:" + "1" * 64)


def test_b5_7_extended_header_chains_are_bounded(arena):
    root, _ = arena

    def gen():  # PAX headers that never reach an entry
        for _ in range(100_000):
            yield pax_member({b"comment": b"x"}, b"f")[:1024]

    with pytest.raises(InvalidArgument, match="extended headers in a row"):
        apply_layer(stream(gen()), str(root))


def test_b5_3_hardlink_to_a_directory_is_refused(arena):
    root, _ = arena
    with pytest.raises(InvalidArgument, match="'h'.*directory"):
        apply_bytes(tar(member("d/", tf.DIR), member("h", tf.LNK, linkname="d")), root)


def test_b5_1_nul_bytes_in_names_are_refused(arena):
    root, _ = arena
    with pytest.raises(InvalidArgument, match="NUL"):
        apply_bytes(tar(pax_member({b"path": b"a\0../../victim/x"}, b"p")), root)
    with pytest.raises(InvalidArgument, match="symlink target"):
        apply_bytes(tar(pax_member({b"linkpath": b"x\0y"}, b"s", tf.SYM)), root)
