"""Layer diff: a directory's changes as a deterministic tar (diffID and compressed digest in one pass).

``overlay`` mode reads only the upper dir, turning 0/0 char devices into ``.wh.<name>`` and
``trusted.overlay.opaque=y`` dirs into ``<dir>/.wh..wh..opq``; ``delete`` mode (vfs, btrfs)
compares the snapshot dir with its parent's dir. Entries are sorted by name per directory and
headers normalised (PAX only where ustar cannot hold a field, empty uname/gname, whole-second
mtimes clamped to ``source_date_epoch``, no atime/ctime), so the same changes give the same diffID.
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import stat
import sys
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
_BUF = 1 << 20            # output buffer size; the sink hashes/compresses/writes whole buffers
_NBUF = 16                # at most this many buffers (made only when the writer falls behind)
_SMALL = 256 << 10        # files up to this size are read whole, in one read, after their header
_ZEROS = bytes(512)
_REG_TAIL = tf.REG + bytes(100) + b"ustar\x0000" + bytes(64 + 16 + 167)  # type .. end of block
_REG_SUM = sum(_REG_TAIL) + 8 * 0x20  # the checksum field counts as spaces
_PADS = [bytes(n) for n in range(512)]
_FS_ENC = sys.getfilesystemencoding()
_FS_ERR = sys.getfilesystemencodeerrors()
_S_IFMT = 0o170000
_S_IFREG = stat.S_IFREG
_S_IFDIR = stat.S_IFDIR
_S_IFCHR = stat.S_IFCHR
_MAX8 = 0o7777777
_MAX12 = 0o77777777777


@dataclass
class DiffResult:
    """diff_id: sha256 of the tar; digest: sha256 of the bytes written to out (compressed)."""

    diff_id: str
    digest: str
    size: int
    compressed_size: int
    media_type: str


class _Sink:
    """Hashes the tar, compresses it, hashes and writes the result; in a worker thread.

    The walker fills fixed buffers from a small pool (no per-chunk allocation, so no page faults
    of fresh memory) and submits them; the worker hands each buffer back once ``out.write`` returned,
    so out must not keep a reference to the data it is given (file objects do not). The pool is
    a stack (the buffer reused next is the one freed last, still in cache) that grows, up to
    ``_NBUF``, only while the worker is behind: the walker then goes on instead of waiting for the
    worker to win the GIL back (which it rarely does quickly against a thread in syscalls).
    """

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
        self._pool: list[bytearray] = []      # free buffers, the warmest last
        self._made = 0
        self._max = _NBUF if threaded else 1
        self._waiting = False                  # the walker waits on _freed for a buffer
        self._freed: queue.SimpleQueue = queue.SimpleQueue()
        self._q: queue.SimpleQueue | None = None
        self._thread: threading.Thread | None = None
        if threaded:
            self._q = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._work, name="layer-writer", daemon=True)
            self._thread.start()

    def buffer(self) -> bytearray:
        """A free output buffer: a pooled one, a new one, or (all in flight) the next one freed."""
        if self._err is not None:
            raise self._err
        pool = self._pool
        if pool:
            return pool.pop()
        if self._made < self._max:
            self._made += 1
            return bytearray(_BUF)
        self._waiting = True
        while True:
            if pool:  # freed while we were deciding to wait
                self._waiting = False
                return pool.pop()
            try:
                return self._freed.get(timeout=0.05)
            except queue.Empty:
                if self._err is not None:
                    raise self._err from None

    def _give(self, buf: bytearray) -> None:
        """Return a buffer: to the waiting walker, else to the pool."""
        if self._waiting:
            self._waiting = False
            self._freed.put(buf)
        else:
            self._pool.append(buf)

    def _process(self, data) -> None:
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
            item = self._q.get()
            if item is None:
                return
            buf, n = item
            if self._err is None:
                try:
                    with memoryview(buf) as mv:
                        self._process(mv[:n])
                except BaseException as e:  # reported to the producer
                    self._err = e
            self._give(buf)

    def submit(self, buf: bytearray, n: int) -> None:
        """Hash, compress and write buf[:n]; buf goes back to the pool afterwards."""
        if self._err is not None:
            self._give(buf)
            raise self._err
        if self._q is None:
            try:
                with memoryview(buf) as mv:
                    self._process(mv[:n])
            finally:
                self._give(buf)
        else:
            self._q.put((buf, n))

    def close(self) -> DiffResult:
        self.stop()
        if self._err is not None:
            raise self._err
        self._process(b"")  # flush the compressor
        diff_id = "sha256:" + self._h.hexdigest()
        digest = diff_id if self._plain else "sha256:" + self._ch.hexdigest()
        return DiffResult(diff_id, digest, self.size, self.csize, self.media_type)

    def stop(self) -> None:
        if self._thread is not None and self._q is not None:
            self._q.put(None)
            self._thread.join()
            self._thread = None


class _TarWriter:
    """Formats entries into the current buffer of the sink (``buf``/``mv``, ``off`` bytes used)."""

    def __init__(self, sink: _Sink, source_date_epoch: int | None, overlay: bool = False) -> None:
        self.sink = sink
        self.overlay = overlay
        self.sde = source_date_epoch
        self.buf = sink.buffer()
        self.mv = memoryview(self.buf)
        self.off = 0
        self.links: dict[tuple[int, int], bytes] = {}
        self.ids: dict[tuple[int, int, int], tuple[bytes, int]] = {}  # (mode, uid, gid) -> ustar fields
        # O_NONBLOCK: a file swapped for a fifo since the listing must not block the open;
        # O_NOATIME (dropped on EPERM: not the owner, no CAP_FOWNER): archiving leaves atimes alone
        self.file_flags = _FILE_FLAGS | os.O_NONBLOCK | os.O_NOATIME

    def flush(self) -> None:
        """Submit the current buffer and take a fresh one."""
        self.mv.release()
        self.sink.submit(self.buf, self.off)
        self.buf = self.sink.buffer()
        self.mv = memoryview(self.buf)
        self.off = 0

    def put(self, data: bytes) -> None:
        n = len(data)
        if self.off + n > _BUF:
            if n > _BUF:  # a huge PAX header: in buffer-sized pieces
                for i in range(0, n, _BUF):
                    self.put(data[i:i + _BUF])
                return
            self.flush()
        self.mv[self.off:self.off + n] = data
        self.off += n

    def open_file(self, name: bytes, dfd: int) -> int:
        try:
            return os.open(name, self.file_flags, dir_fd=dfd)
        except PermissionError as e:
            return self.refused(name, dfd, e)

    def refused(self, name: bytes, dfd: int, err: PermissionError) -> int:
        """After EPERM: retry without O_NOATIME (and keep it off), or re-raise."""
        if not self.file_flags & os.O_NOATIME:
            raise err
        self.file_flags &= ~os.O_NOATIME
        return os.open(name, self.file_flags, dir_fd=dfd)

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
        self.put(h)

    def whiteout(self, name: bytes) -> None:
        self.header(name, tf.REG)

    def data(self, fd: int, size: int, what: bytes) -> None:
        """size bytes of fd, read straight into the output buffers, then the padding."""
        left = size
        readv = os.readv
        while left:
            if self.off == _BUF:
                self.flush()
            n = min(left, _BUF - self.off)
            got = readv(fd, (self.mv[self.off:self.off + n],))
            if not got:
                raise Conflict(f"file {what.decode(errors='replace')!r} shrank while it was being archived")
            self.off += got
            left -= got
        pad = -size % tf.BLOCK
        if pad:
            self.put(_ZEROS[:pad])

    def end(self) -> None:
        """The end-of-archive marker; submits the last buffer (the writer is done)."""
        self.put(bytes(2 * tf.BLOCK))
        self.mv.release()
        self.sink.submit(self.buf, self.off)

    def node(self, dfd: int, name: bytes, path: bytes, st: os.stat_result, fd: int = -1) -> None:
        """Emit one non-directory (regular file, symlink, device, fifo) or a hardlink to one emitted.

        fd: the regular file already open (the caller closes it).
        """
        m = st.st_mode
        if st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = self.links.get(key)
            if first is not None:
                self.header(path, tf.LNK, st, linkname=first)
                return
            self.links[key] = path
        if stat.S_ISREG(m):
            own = fd < 0
            if own:
                fd = self.open_file(name, dfd)
            try:
                xattrs = _file_xattrs(fd, path, self.overlay)
                self.header(path, tf.REG, st, size=st.st_size, xattrs=xattrs)
                self.data(fd, st.st_size, path)
            finally:
                if own:
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


def _file_xattrs(fd: int, path: bytes, overlay: bool) -> dict[str, bytes] | None:
    raw = _raw_xattrs(fd)
    if overlay and "trusted.overlay.metacopy" in raw:
        raise InvalidArgument(f"overlay diff: {path.decode(errors='replace')!r} is a metacopy; "
                              "mount overlay with metacopy=off")
    return {k: v for k, v in raw.items() if _keep(k)} or None


def _names(dfd: int) -> list[bytes]:
    """A directory's entry names as bytes, sorted (bytewise: the archive order)."""
    names = [n.encode(_FS_ENC, _FS_ERR) for n in os.listdir(dfd)]
    names.sort()
    return names


def _entries(dfd: int) -> list[tuple[bytes, bool]]:
    """(name, d_type says regular file) for a directory's entries, sorted by name as bytes."""
    out = [(e.name.encode(_FS_ENC, _FS_ERR), e.is_file(follow_symlinks=False)) for e in os.scandir(dfd)]
    out.sort()
    return out


def _read_rest(fd: int, mv: memoryview, o: int, end: int, path: bytes) -> None:
    """After a short first read: read on until end, or fail if the file shrank."""
    while o < end:
        got = os.readv(fd, (mv[o:end],))
        if not got:
            raise Conflict(f"file {path.decode(errors='replace')!r} shrank while it was being archived")
        o += got


def _id_fields(mode: int, uid: int, gid: int) -> tuple[bytes, int]:
    """The ustar mode/uid/gid fields and their byte sum (-1: ids too large for ustar)."""
    if uid > _MAX8 or gid > _MAX8:
        return b"", -1
    f = b"%07o\0%07o\0%07o\0" % (mode & 0o7777, uid, gid)
    return f, sum(f)


def _walk_tree(w: _TarWriter, dfd: int, rel: bytes, overlay: bool) -> None:
    """Emit every entry under dfd (rel is its archive path with a trailing slash, or b"").

    The common entry, a small singly linked regular file, is handled inline: openat (d_type from
    the listing said regular), fstat of that fd, flistxattr, one ustar header from cached id
    fields, readv straight into the output buffer, close. This loop is what a diff costs;
    everything else goes through :meth:`_TarWriter.node`.
    """
    lstat, fstat, close, listxattr, readv = os.stat, os.fstat, os.close, os.listxattr, os.readv
    openf = os.open
    sde = w.sde
    ids = w.ids
    pads = _PADS
    last_mtime, mfield, msum = -1, b"", 0
    for name, reg in _entries(dfd):
        path = rel + name
        fd = -1
        if reg:  # d_type says regular: open, then stat the fd (one path lookup, not two)
            try:
                fd = openf(name, w.file_flags, dir_fd=dfd)
            except PermissionError as e:
                fd = w.refused(name, dfd, e)
            except OSError as e:
                if e.errno != errno.ELOOP:  # ELOOP: replaced by a symlink since the listing
                    raise
            if fd >= 0:
                st = fstat(fd)
                mode = st.st_mode
                size = st.st_size
                if mode & _S_IFMT != _S_IFREG:  # replaced since the listing: not ours to read
                    close(fd)
                    fd = -1
                elif size <= _SMALL and st.st_nlink == 1:
                    try:
                        xattrs = _file_xattrs(fd, path, overlay) if listxattr(fd) else None
                        mtime = st[8]  # whole seconds (st_mtime_ns // 10**9)
                        if sde is not None and mtime > sde:
                            mtime = sde
                        key = (mode, st.st_uid, st.st_gid)
                        idf = ids.get(key)
                        if idf is None:
                            idf = ids[key] = _id_fields(*key)
                        if (xattrs or idf[1] < 0 or len(path) > 100 or mtime < 0 or mtime > _MAX12
                                or not path.isascii()):
                            hdr = tf.build_header(path, tf.REG, mode=mode, uid=st.st_uid, gid=st.st_gid,
                                                  size=size, mtime=mtime, xattrs=xattrs)
                        else:
                            if mtime != last_mtime:
                                last_mtime, mfield = mtime, b"%011o\0" % mtime
                                msum = sum(mfield)
                            sfield = b"%011o\0" % size
                            hdr = b"".join((path.ljust(100, b"\0"), idf[0], sfield, mfield, b"%06o\0 " % (
                                sum(path) + idf[1] + sum(sfield) + msum + _REG_SUM), _REG_TAIL))
                        hlen = len(hdr)
                        pad = -size % 512
                        off = w.off
                        o = off + hlen
                        end = o + size
                        if end + pad > _BUF:
                            w.flush()
                            if hlen + size + pad > _BUF:  # only with a huge PAX header
                                w.put(hdr)
                                w.data(fd, size, path)
                                continue
                            off, o, end = 0, hlen, hlen + size
                        mv = w.mv
                        mv[off:o] = hdr
                        if size:
                            got = readv(fd, (mv[o:end],))
                            if got != size:
                                _read_rest(fd, mv, o + got, end, path)
                        if pad:
                            mv[end:end + pad] = pads[pad]
                        w.off = end + pad
                    finally:
                        close(fd)
                    continue
        if fd < 0:
            st = lstat(name, dir_fd=dfd, follow_symlinks=False)
            if st.st_mode & _S_IFMT == _S_IFREG:
                fd = w.open_file(name, dfd)
        mode = st.st_mode
        fmt = mode & _S_IFMT
        if fd >= 0:
            try:
                if st.st_size > _SMALL or st.st_nlink != 1:
                    w.node(dfd, name, path, st, fd)
                else:  # a small file on a filesystem without d_type
                    xattrs = _file_xattrs(fd, path, overlay)
                    w.header(path, tf.REG, st, size=st.st_size, xattrs=xattrs)
                    w.data(fd, st.st_size, path)
            finally:
                close(fd)
        elif fmt == _S_IFDIR:
            sub = openf(name, _DIR_FLAGS, dir_fd=dfd)
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
                close(sub)
        elif overlay and fmt == _S_IFCHR and st.st_rdev == 0:
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
                x = os.read(a, min(left, _BUF))
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
