"""Layer diff: a directory's changes as a deterministic tar (diffID and compressed digest in one pass).

``overlay`` mode reads only the upper dir, turning 0/0 char devices into ``.wh.<name>`` and
``trusted.overlay.opaque=y`` dirs into ``<dir>/.wh..wh..opq``; ``delete`` mode (vfs, btrfs)
compares the snapshot dir with its parent's dir. Entries are sorted by name per directory and
headers normalised (PAX only where ustar cannot hold a field, empty uname/gname, whole-second
mtimes clamped to ``source_date_epoch``, no atime/ctime), so the same changes give the same diffID.
"""

from __future__ import annotations

import hashlib
import os
import queue
import stat
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from berth.archive import tarformat as tf
from berth.archive.compression import Compressor
from berth.archive.limits import ensure_recursion
from berth.errors import Conflict, InvalidArgument

OPAQUE_XATTR = "trusted.overlay.opaque"
_UNSUPPORTED_OVERLAY = ("trusted.overlay.redirect", "trusted.overlay.metacopy")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_FLUSH = 1 << 20
_SMALL = 256 << 10
_ZEROS = bytes(512)


@dataclass
class DiffResult:
    """diff_id: sha256 of the tar; digest: sha256 of the bytes written to out (compressed)."""

    diff_id: str
    digest: str
    size: int
    compressed_size: int
    media_type: str


class _Sink:
    """Hashes the tar, compresses it, hashes and writes the result; in a worker thread."""

    def __init__(self, out: BinaryIO, compression: str | None, threaded: bool = True) -> None:
        self._out = out
        self._comp = Compressor(compression)
        self.media_type = self._comp.media_type
        self._plain = compression is None
        self._h = hashlib.sha256()
        self._ch = hashlib.sha256()
        self.size = 0
        self.csize = 0
        self._err: BaseException | None = None
        self._q: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        if threaded:
            self._q = queue.Queue(maxsize=8)
            self._thread = threading.Thread(target=self._work, name="layer-writer", daemon=True)
            self._thread.start()

    def _process(self, data: bytes) -> None:
        if data:
            self._h.update(data)
            self.size += len(data)
            c = self._comp.compress(data)
        else:
            c = self._comp.flush()
        if c:
            if not self._plain:
                self._ch.update(c)
            self.csize += len(c)
            self._out.write(c)

    def _work(self) -> None:
        assert self._q is not None
        while True:
            data = self._q.get()
            if data is None:
                return
            if self._err is None:
                try:
                    self._process(data)
                except BaseException as e:  # reported to the producer
                    self._err = e

    def write(self, data: bytes) -> None:
        if self._err is not None:
            raise self._err
        if self._q is None:
            self._process(data)
        else:
            self._q.put(data)

    def close(self) -> DiffResult:
        self.write(b"")  # flush the compressor
        self.stop()
        if self._err is not None:
            raise self._err
        diff_id = "sha256:" + self._h.hexdigest()
        digest = diff_id if self._plain else "sha256:" + self._ch.hexdigest()
        return DiffResult(diff_id, digest, self.size, self.csize, self.media_type)

    def stop(self) -> None:
        if self._thread is not None and self._q is not None:
            self._q.put(None)
            self._thread.join()
            self._thread = None


class _TarWriter:
    def __init__(self, sink: _Sink, source_date_epoch: int | None, overlay: bool = False) -> None:
        self.sink = sink
        self.overlay = overlay
        self.sde = source_date_epoch
        self.parts: list[bytes] = []   # pending output, joined once per flush
        self.pending = 0
        self.links: dict[tuple[int, int], bytes] = {}

    def _flush(self) -> None:
        if self.parts:
            self.sink.write(b"".join(self.parts))
            self.parts = []
            self.pending = 0

    def _add(self, data: bytes) -> None:
        self.parts.append(data)
        self.pending += len(data)
        if self.pending >= _FLUSH:
            self._flush()

    def _mtime(self, st: os.stat_result) -> int:
        m = st.st_mtime_ns // 1_000_000_000
        return min(m, self.sde) if self.sde is not None else m

    def header(self, name: bytes, typ: bytes, st: os.stat_result | None = None, *, size: int = 0,
               linkname: bytes = b"", xattrs: dict[str, bytes] | None = None) -> None:
        if st is None:
            h = tf.build_header(name, typ, mode=0o644)
        else:
            dev = st.st_rdev if typ in (tf.CHR, tf.BLK) else 0
            h = tf.build_header(name, typ, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                                size=size, mtime=self._mtime(st), linkname=linkname,
                                devmajor=os.major(dev), devminor=os.minor(dev), xattrs=xattrs)
        self._add(h)

    def whiteout(self, name: bytes) -> None:
        self.header(name, tf.REG)

    def data(self, fd: int, size: int, what: bytes) -> None:
        left = size
        if size <= _SMALL:
            while left:
                chunk = os.read(fd, left)
                if not chunk:
                    break
                self.parts.append(chunk)
                self.pending += len(chunk)
                left -= len(chunk)
        else:
            self._flush()
            while left:
                chunk = os.read(fd, min(left, _FLUSH))
                if not chunk:
                    break
                self.sink.write(chunk)
                left -= len(chunk)
        if left:
            raise Conflict(f"file {what.decode(errors='replace')!r} shrank while it was being archived")
        pad = -size % tf.BLOCK
        if pad:
            self.parts.append(bytes(pad))
            self.pending += pad
        if self.pending >= _FLUSH:
            self._flush()

    def end(self) -> None:
        self.parts.append(bytes(2 * tf.BLOCK))
        self._flush()

    def small_file(self, dfd: int, name: bytes, path: bytes, st: os.stat_result) -> None:
        """The fast path of node() for a small, singly linked regular file."""
        fd = os.open(name, _FILE_FLAGS, dir_fd=dfd)
        try:
            if os.listxattr(fd):
                raw = _raw_xattrs(fd)
                if self.overlay and "trusted.overlay.metacopy" in raw:
                    raise InvalidArgument(f"overlay diff: {path.decode(errors='replace')!r} is a metacopy; "
                                          "mount overlay with metacopy=off")
                xattrs = {k: v for k, v in raw.items() if _keep(k)}
            else:
                xattrs = None
            size = st.st_size
            data = os.read(fd, size) if size else b""
            while len(data) < size:
                more = os.read(fd, size - len(data))
                if not more:
                    raise Conflict(f"file {path.decode(errors='replace')!r} shrank while being archived")
                data += more
        finally:
            os.close(fd)
        mtime = st.st_mtime_ns // 1_000_000_000
        if self.sde is not None and mtime > self.sde:
            mtime = self.sde
        uid, gid = st.st_uid, st.st_gid
        if xattrs or len(path) > 100 or uid > 0o7777777 or gid > 0o7777777 or not path.isascii():
            hdr = tf.build_header(path, tf.REG, mode=st.st_mode & 0o7777, uid=uid, gid=gid, size=size,
                                  mtime=mtime, xattrs=xattrs)
        else:
            hdr = tf.raw_header(path, tf.REG, st.st_mode & 0o7777, uid, gid, size, mtime, b"", 0, 0)
        pad = -size % tf.BLOCK
        self.parts += (hdr, data, _ZEROS[:pad]) if pad else (hdr, data)
        self.pending += 512 + size + pad
        if self.pending >= _FLUSH:
            self._flush()

    def node(self, dfd: int, name: bytes, path: bytes, st: os.stat_result) -> None:
        """Emit one non-directory (regular file, symlink, device, fifo) or a hardlink to one emitted."""
        m = st.st_mode
        if st.st_nlink == 1 and st.st_size <= _SMALL and stat.S_ISREG(m):
            self.small_file(dfd, name, path, st)
            return
        if st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = self.links.get(key)
            if first is not None:
                self.header(path, tf.LNK, st, linkname=first)
                return
            self.links[key] = path
        if stat.S_ISREG(m):
            fd = os.open(name, _FILE_FLAGS, dir_fd=dfd)
            try:
                raw = _raw_xattrs(fd)
                if self.overlay and "trusted.overlay.metacopy" in raw:
                    raise InvalidArgument(f"overlay diff: {path.decode(errors='replace')!r} is a metacopy; "
                                          "mount overlay with metacopy=off")
                xattrs = {k: v for k, v in raw.items() if _keep(k)} if raw else None
                self.header(path, tf.REG, st, size=st.st_size, xattrs=xattrs)
                self.data(fd, st.st_size, path)
            finally:
                os.close(fd)
        elif stat.S_ISLNK(m):
            self.header(path, tf.SYM, st, linkname=os.readlink(name, dir_fd=dfd))
        elif stat.S_ISCHR(m):
            self.header(path, tf.CHR, st)
        elif stat.S_ISBLK(m):
            self.header(path, tf.BLK, st)
        elif stat.S_ISFIFO(m):
            self.header(path, tf.FIFO, st)
        # sockets are not archived (as tar and Docker)


def _raw_xattrs(fd_or_path) -> dict[str, bytes]:
    try:
        names = os.listxattr(fd_or_path, follow_symlinks=False) if not isinstance(fd_or_path, int) \
            else os.listxattr(fd_or_path)
    except OSError:
        return {}
    out = {}
    for k in names:
        try:
            out[k] = os.getxattr(fd_or_path, k) if isinstance(fd_or_path, int) \
                else os.getxattr(fd_or_path, k, follow_symlinks=False)
        except OSError:
            continue
    return out


def _keep(k: str) -> bool:
    """The xattrs a layer carries (the same set apply_layer keeps)."""
    return k == "security.capability" or k in ("system.posix_acl_access", "system.posix_acl_default") or (
        k.startswith("user.") and not k.startswith("user.overlay."))


def _xattrs(fd: int) -> dict[str, bytes]:
    return {k: v for k, v in _raw_xattrs(fd).items() if _keep(k)}


def _names(dfd: int) -> list[bytes]:
    return sorted(os.fsencode(n) for n in os.listdir(dfd))


def _walk_tree(w: _TarWriter, dfd: int, rel: bytes, overlay: bool) -> None:
    lstat = os.stat
    small_file = w.small_file
    for name in _names(dfd):
        path = rel + name
        st = lstat(name, dir_fd=dfd, follow_symlinks=False)
        if st.st_nlink == 1 and st.st_size <= _SMALL and stat.S_ISREG(st.st_mode):
            small_file(dfd, name, path, st)
        elif stat.S_ISDIR(st.st_mode):
            sub = os.open(name, _DIR_FLAGS, dir_fd=dfd)
            try:
                raw = _raw_xattrs(sub)
                if overlay:
                    for k in _UNSUPPORTED_OVERLAY:
                        if k in raw:
                            raise InvalidArgument(f"overlay diff: {path.decode(errors='replace')!r} has {k}; "
                                                  "mount overlay with redirect_dir=off,metacopy=off")
                w.header(path + b"/", tf.DIR, st, xattrs={k: v for k, v in raw.items() if _keep(k)})
                if overlay and raw.get(OPAQUE_XATTR) == b"y":
                    w.whiteout(path + b"/.wh..wh..opq")
                _walk_tree(w, sub, path + b"/", overlay)
            finally:
                os.close(sub)
        elif overlay and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            w.whiteout(rel + b".wh." + name)
        else:
            w.node(dfd, name, path, st)


def _same_content(ufd: int, lfd: int, name: bytes, size: int) -> bool:
    a = os.open(name, _FILE_FLAGS, dir_fd=ufd)
    try:
        b = os.open(name, _FILE_FLAGS, dir_fd=lfd)
        try:
            left = size
            while left > 0:
                x = os.read(a, min(left, _FLUSH))
                if not x or x != os.read(b, len(x)):
                    return False
                left -= len(x)
            return True
        finally:
            os.close(b)
    finally:
        os.close(a)


def _path_xattrs(dfd: int, name: bytes) -> dict[str, bytes]:
    raw = _raw_xattrs(f"/proc/self/fd/{dfd}/".encode() + name)
    return {k: v for k, v in raw.items() if _keep(k)}


def _meta_differs(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_mode != b.st_mode or a.st_uid != b.st_uid or a.st_gid != b.st_gid
            or a.st_mtime_ns != b.st_mtime_ns)


def _node_changed(ufd: int, lfd: int, name: bytes, u: os.stat_result, lo: os.stat_result) -> bool:
    if _meta_differs(u, lo):
        return True
    m = u.st_mode
    if stat.S_ISREG(m):
        if u.st_size != lo.st_size or _path_xattrs(ufd, name) != _path_xattrs(lfd, name):
            return True
        # whole-second mtimes (as restored from tar) cannot tell edits apart: compare bytes
        if u.st_mtime_ns % 1_000_000_000 == 0 and (u.st_dev, u.st_ino) != (lo.st_dev, lo.st_ino):
            return not _same_content(ufd, lfd, name, u.st_size)
        return False
    if stat.S_ISLNK(m):
        return os.readlink(name, dir_fd=ufd) != os.readlink(name, dir_fd=lfd)
    if stat.S_ISCHR(m) or stat.S_ISBLK(m):
        return u.st_rdev != lo.st_rdev
    return False


def _walk_delete(w: _TarWriter, ufd: int, lfd: int, rel: bytes) -> None:
    unames = _names(ufd)
    lnames = _names(lfd)
    uset = set(unames)
    lset = set(lnames)
    for name in sorted(uset | lset):
        path = rel + name
        if name not in uset:
            w.whiteout(rel + b".wh." + name)
            continue
        u = os.stat(name, dir_fd=ufd, follow_symlinks=False)
        lo = os.stat(name, dir_fd=lfd, follow_symlinks=False) if name in lset else None
        same_type = lo is not None and stat.S_IFMT(lo.st_mode) == stat.S_IFMT(u.st_mode)
        if stat.S_ISDIR(u.st_mode):
            sub = os.open(name, _DIR_FLAGS, dir_fd=ufd)
            try:
                ux = _xattrs(sub)
                if same_type:
                    lsub = os.open(name, _DIR_FLAGS, dir_fd=lfd)
                    try:
                        assert lo is not None
                        if _meta_differs(u, lo) or ux != _xattrs(lsub):
                            w.header(path + b"/", tf.DIR, u, xattrs=ux)
                        _walk_delete(w, sub, lsub, path + b"/")
                    finally:
                        os.close(lsub)
                else:
                    w.header(path + b"/", tf.DIR, u, xattrs=ux)
                    _walk_tree(w, sub, path + b"/", False)
            finally:
                os.close(sub)
        elif not same_type or _node_changed(ufd, lfd, name, u, lo):  # type: ignore[arg-type]
            w.node(ufd, name, path, u)


def write_diff(upper: str, out: BinaryIO, *, whiteout_mode: str, lower_dirs: Sequence[str] = (),
               compression: str | None = "gzip", source_date_epoch: int | None = None) -> DiffResult:
    """Write the changes in upper as an OCI layer to out; returns diffID, digest and sizes.

    overlay mode walks only upper; delete mode compares upper with lower_dirs[0] (the parent's full
    tree), or treats everything as new when there is no parent.
    """
    if whiteout_mode not in ("overlay", "delete"):
        raise InvalidArgument(f"unknown whiteout mode {whiteout_mode!r}")
    ensure_recursion(4096)
    sink = _Sink(out, compression)
    try:
        w = _TarWriter(sink, source_date_epoch, whiteout_mode == "overlay")
        ufd = os.open(upper, _DIR_FLAGS)
        try:
            if whiteout_mode == "overlay" or not lower_dirs:
                _walk_tree(w, ufd, b"", whiteout_mode == "overlay")
            else:
                lfd = os.open(lower_dirs[0], _DIR_FLAGS)
                try:
                    _walk_delete(w, ufd, lfd, b"")
                finally:
                    os.close(lfd)
        finally:
            os.close(ufd)
        w.end()
        return sink.close()
    finally:
        sink.stop()


def write_tree(root: str, out: BinaryIO, *, source_date_epoch: int | None = None) -> int:
    """Write the whole tree under root as a flat, deterministic, uncompressed tar; returns its size."""
    ensure_recursion(4096)
    sink = _Sink(out, None)
    try:
        w = _TarWriter(sink, source_date_epoch)
        fd = os.open(root, _DIR_FLAGS)
        try:
            _walk_tree(w, fd, b"", False)
        finally:
            os.close(fd)
        w.end()
        return sink.close().size
    finally:
        sink.stop()
