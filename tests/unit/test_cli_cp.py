"""berth cp client side: docker's destination rules, the local tar stream, safe local extraction."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from berth.cli.cptar import CopyError, extract, map_name, plan, split_target, tar_stream
from berth.client.streams import EscapeScanner, parse_detach_keys
from berth.errors import BerthError


def test_split_target():
    assert split_target("c1:/tmp/x") == ("c1", "/tmp/x")
    assert split_target("c1:") == ("c1", "")
    assert split_target("./a:b") == (None, "./a:b")
    assert split_target("/abs:x") == (None, "/abs:x")
    assert split_target("-") == (None, "-")
    assert split_target("plain") == (None, "plain")


@pytest.mark.parametrize("src, src_dir, dst, exists, dst_dir, want", [
    ("/etc/hosts", False, "/tmp", True, True, ("/tmp", "hosts")),          # into an existing dir
    ("/etc/hosts", False, "/tmp/", True, True, ("/tmp/", "hosts")),
    ("/etc/hosts", False, "/tmp/f", True, False, ("/tmp", "f")),           # overwrite a file
    ("/etc/hosts", False, "/tmp/new", False, False, ("/tmp", "new")),      # new name
    ("/etc", True, "/tmp", True, True, ("/tmp", "etc")),                    # dir into dir
    ("/etc/.", True, "/tmp", True, True, ("/tmp", None)),                   # contents into dir
    ("/etc/", True, "/tmp", True, True, ("/tmp", "etc")),
    ("/etc", True, "/tmp/new", False, False, ("/tmp", "new")),              # dir under a new name
    ("/etc/.", True, "/tmp/new/", False, False, ("/tmp", "new")),
    ("rel/f", False, "out", False, False, (".", "out")),
])
def test_plan(src, src_dir, dst, exists, dst_dir, want):
    assert plan(src, src_dir, dst, exists, dst_dir) == want


def test_plan_errors():
    with pytest.raises(CopyError, match="cannot copy directory"):
        plan("/etc", True, "/tmp/file", True, False)
    with pytest.raises(CopyError, match="no such directory"):
        plan("/etc/hosts", False, "/tmp/missing/", False, False)
    with pytest.raises(CopyError, match="must be a directory"):
        plan("/etc/hosts", False, "/tmp/file/", True, False)


def test_map_name():
    assert map_name("srcd", "new") == ["new"]
    assert map_name("srcd/a/b", "new") == ["new", "a", "b"]
    assert map_name("./srcd/a", None) == ["a"]
    assert map_name("srcd", None) is None
    for bad in ("../x", "srcd/../../x", "a/b/.."):
        with pytest.raises(CopyError):
            map_name(bad, "t")


def _tar(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mode = 0o644 if kind != "dir" else 0o755
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, data
                tf.addfile(ti)
            elif kind == "hard":
                ti.type, ti.linkname = tarfile.LNKTYPE, data
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_tar_stream_roundtrip(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "b.bin").write_bytes(os.urandom(70000))
    os.symlink("a.txt", src / "link")
    os.chmod(src / "a.txt", 0o640)
    data = b"".join(tar_stream(str(src), "renamed"))
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        names = tf.getnames()
        assert names[0] == "renamed"
        assert set(names) == {"renamed", "renamed/a.txt", "renamed/link", "renamed/sub", "renamed/sub/b.bin"}
        assert tf.getmember("renamed/link").linkname == "a.txt"
        assert tf.getmember("renamed/a.txt").mode == 0o640
    out = tmp_path / "out"
    out.mkdir()
    extract([data[i:i + 1000] for i in range(0, len(data), 1000)], str(out), "copy")
    assert (out / "copy" / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()
    assert os.readlink(out / "copy" / "link") == "a.txt"
    assert os.stat(out / "copy" / "a.txt").st_mode & 0o777 == 0o640
    contents = b"".join(tar_stream(str(src) + "/.", None))
    with tarfile.open(fileobj=io.BytesIO(contents)) as tf:
        assert set(tf.getnames()) == {"a.txt", "link", "sub", "sub/b.bin"}


def test_extract_contents_and_overwrite(tmp_path):
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "f").write_text("old")
    os.symlink("/etc/passwd", dest / "g")  # an existing link is replaced, never written through
    extract([_tar([("top", "dir", b""), ("top/f", "file", b"new"), ("top/g", "file", b"G")])], str(dest),
            None)
    assert (dest / "f").read_text() == "new"
    assert not os.path.islink(dest / "g") and (dest / "g").read_text() == "G"


def test_extract_refuses_escapes(tmp_path):
    dest = tmp_path / "d"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    with pytest.raises(CopyError):
        extract([_tar([("top", "dir", b""), ("top/../../evil", "file", b"x")])], str(dest), "t")
    assert not (tmp_path / "evil").exists()
    # a symlink in the archive is data: writing "through" it is refused
    with pytest.raises(CopyError, match="not a directory"):
        extract([_tar([("top", "dir", b""), ("top/l", "sym", str(outside)), ("top/l/pwn", "file", b"x")])],
                str(dest), "t")
    assert not (outside / "pwn").exists() and os.path.islink(dest / "t" / "l")
    # a hardlink must point inside the destination
    with pytest.raises(CopyError):
        extract([_tar([("top", "dir", b""), ("top/h", "hard", "../../etc/passwd")])], str(dest), "t2")
    assert not (dest / "t2" / "h").exists()
    # an absolute member name lands under the destination
    extract([_tar([("/abs", "dir", b""), ("/abs/x", "file", b"y")])], str(dest), "t3")
    assert (dest / "t3" / "x").read_text() == "y"
    with pytest.raises(CopyError, match="invalid tar"):
        extract([b"not a tar at all" * 64], str(dest), "t4")


def test_extract_hardlink_inside(tmp_path):
    extract([_tar([("top", "dir", b""), ("top/a", "file", b"A"), ("top/b", "hard", "top/a")])],
            str(tmp_path), "x")
    assert os.stat(tmp_path / "x" / "a").st_ino == os.stat(tmp_path / "x" / "b").st_ino


def test_detach_keys_and_escape_scanner():
    assert parse_detach_keys(None) == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x,ctrl-@,ctrl-[") == b"\x01x\x00\x1b"
    with pytest.raises(BerthError):
        parse_detach_keys("ctrl-1")
    s = EscapeScanner(b"\x10\x11")
    assert s.feed(b"ab\x10") == b"ab" and not s.detached
    assert s.feed(b"c") == b"\x10c"
    assert s.feed(b"\x10\x10") == b"\x10"
    assert s.feed(b"\x11rest") == b"" and s.detached
