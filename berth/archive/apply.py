"""Layer apply: a (maybe compressed) tar changeset onto a directory, safe against hostile tars.

Every path is resolved fd-relatively under the target root (openat2 RESOLVE_IN_ROOT for parent
directories, then ``*at`` calls on the leaf that never follow it). Symlinks are stored as data,
hardlink targets must resolve inside the root, names with ``..`` that leave the root, PAX
``trusted.overlay.*`` xattrs and malformed whiteouts are refused with an error naming the entry.
Whiteouts become the driver's form: ``overlay`` (0/0 char devices, ``trusted.overlay.opaque=y``)
or ``delete`` (remove from a target that already holds the parent's full tree).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from berth.archive import tarformat as tf
from berth.archive.compression import open_decompressed
from berth.archive.limits import Limits, ensure_recursion
from berth.archive.stream import TarStream
from berth.errors import BerthError, InvalidArgument, LimitExceeded, NotFound
from berth.sys import linux

WHITEOUT_PREFIX = b".wh."
WHITEOUT_META = b".wh..wh."
WHITEOUT_OPAQUE = b".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"

_IN_ROOT = linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_CACHE_MAX = 64
_MAX_META_RUN = 8  # PAX / GNU long-name headers before one entry
# OS errors that mean "the system failed", not "the layer is bad": re-raised as they are
_SYSTEM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM, errno.EROFS,
                            errno.EMFILE, errno.ENFILE})
_KIND = {tf.CHR: stat.S_IFCHR, tf.BLK: stat.S_IFBLK, tf.FIFO: stat.S_IFIFO}


@dataclass
class ApplyResult:
    """diff_id: sha256 of the uncompressed tar; size: its length; entries: members applied."""

    diff_id: str
    size: int
    entries: int


def apply_layer(src: BinaryIO, root: str, *, whiteout_mode: str = "delete", lower_dirs: Sequence[str] = (),
                limits: Limits | None = None, expected_diff_id: str | None = None) -> ApplyResult:
    """Apply the layer read from src (tar, tar+gzip or tar+zstd, detected by magic) onto root.

    Raises InvalidArgument / LimitExceeded naming the entry for hostile or malformed input; the
    caller then discards the partially written root. Nothing outside root is ever touched.
    """
    if whiteout_mode not in ("delete", "overlay"):
        raise InvalidArgument(f"unknown whiteout mode {whiteout_mode!r}")
    limits = limits or Limits()
    ensure_recursion(limits.max_depth)
    try:
        applier = _Applier(root, whiteout_mode, lower_dirs, limits)
    except (FileNotFoundError, NotADirectoryError) as err:
        raise NotFound(f"layer apply target {root!r} is not a directory") from err
    try:
        stream = TarStream(open_decompressed(src), limits.max_bytes)
    except BaseException:
        applier.close()
        raise
    count = 0
    try:
        for entry in _entries(stream, limits):
            applier.apply(entry, stream)
            count += 1
        applier.finish()
        diff_id = stream.digest()
    finally:
        applier.close()
        stream.close()
    if expected_diff_id is not None and diff_id != expected_diff_id:
        from berth.errors import DataCorrupt

        raise DataCorrupt(f"layer diff_id {diff_id} does not match the expected {expected_diff_id}")
    return ApplyResult(diff_id=diff_id, size=stream.consumed, entries=count)


def _entries(stream: TarStream, limits: Limits) -> Iterator[tf.Entry]:
    """Members of the tar, PAX / GNU long-name records applied; the consumer reads each member's data."""
    entries = meta_run = 0
    pax: dict[bytes, bytes] = {}
    longname: bytes | None = None
    longlink: bytes | None = None
    while True:
        block = stream.read(tf.BLOCK)
        if not block:
            raise InvalidArgument("layer: truncated archive (no end-of-archive marker)")
        if len(block) != tf.BLOCK:
            raise InvalidArgument("layer: truncated archive (partial header block)")
        if block == tf.ZERO_BLOCK:
            stream.drain_zeros()
            return
        e = tf.parse_header(block)
        budget = limits.max_bytes - stream.consumed
        if e.size > budget:
            raise LimitExceeded(f"layer entry {e.display()!r}: size {e.size} exceeds the remaining "
                                f"limit of {budget} bytes")
        t = e.type
        if t in (tf.PAX, tf.PAX_GLOBAL, tf.GNU_LONGNAME, tf.GNU_LONGLINK):
            meta_run += 1
            if meta_run > _MAX_META_RUN:
                raise InvalidArgument(f"layer: more than {_MAX_META_RUN} extended headers in a row")
            cap = limits.max_pax if t in (tf.PAX, tf.PAX_GLOBAL) else limits.max_path + 1
            if e.size > cap:
                raise LimitExceeded(f"layer entry {e.display()!r}: {t.decode()} header of {e.size} bytes "
                                    f"exceeds the limit of {cap}")
            data = stream.read_exact(e.size, f"the extended header of {e.display()!r}")
            stream.skip(-e.size % tf.BLOCK, e.display())
            if t == tf.PAX:
                pax.update(tf.parse_pax(data))
            elif t == tf.PAX_GLOBAL:
                g = tf.parse_pax(data)  # validated; global defaults are not honoured (as Docker)
                if any(k.startswith(b"GNU.sparse.") for k in g):
                    raise InvalidArgument("layer: sparse files are not supported")
            elif t == tf.GNU_LONGNAME:
                longname = data.split(b"\0", 1)[0]
            else:
                longlink = data.split(b"\0", 1)[0]
            continue
        meta_run = 0
        entries += 1
        if entries > limits.max_entries:
            raise LimitExceeded(f"layer: more than {limits.max_entries} entries")
        if longname is not None:
            e.name, longname = longname, None
        if longlink is not None:
            e.linkname, longlink = longlink, None
        if pax:
            tf.apply_pax(e, pax)
            pax = {}
            if e.size > budget:
                raise LimitExceeded(f"layer entry {e.display()!r}: size {e.size} exceeds the remaining "
                                    f"limit of {budget} bytes")
        if t not in tf.ENTRY_TYPES:
            what = "sparse files are" if t == tf.GNU_SPARSE else f"entry type {t!r} is"
            raise InvalidArgument(f"layer entry {e.display()!r}: {what} not supported")
        if t in (tf.REG, tf.AREG, tf.CONTIG):
            e.type = tf.REG
            size = e.size
        else:
            size = 0  # header-only types carry no data, whatever the size field says (as Go's tar)
            e.size = 0
        before = stream.consumed
        yield e
        left = size - (stream.consumed - before) + (-size % tf.BLOCK)
        if left:
            stream.skip(left, e.name.decode("utf-8", "backslashreplace"))


def _clean(name: bytes, limits: Limits, what: str | None = None) -> list[bytes]:
    """Path components of a member name, lexically cleaned; refuses escapes and limit breaches."""
    def who() -> str:
        return what or name.decode("utf-8", "backslashreplace")

    if (b"." not in name or (b"/." not in name and name[:1] != b".")) and b"//" not in name and \
            name[:1] != b"/" and len(name) <= limits.max_path and b"\0" not in name:
        # fast path: a plain relative name (no "", ".", ".." components)
        parts = name.split(b"/")
        if not parts[-1]:
            parts.pop()
        if len(parts) <= limits.max_depth and max(map(len, parts), default=0) <= limits.max_name:
            return parts
    if len(name) > limits.max_path:
        raise LimitExceeded(f"layer entry {who()!r}: path of {len(name)} bytes exceeds max_path "
                            f"{limits.max_path}")
    if b"\0" in name:
        raise InvalidArgument(f"layer entry {who()!r}: NUL byte in path")
    parts: list[bytes] = []
    max_name = limits.max_name
    for c in name.split(b"/"):
        if c == b"" or c == b".":
            continue
        if c == b"..":
            if not parts:
                raise InvalidArgument(f"layer entry {who()!r}: path escapes the root")
            parts.pop()
            continue
        if len(c) > max_name:
            raise LimitExceeded(f"layer entry {who()!r}: name component of {len(c)} bytes exceeds "
                                f"max_name {max_name}")
        parts.append(c)
    if len(parts) > limits.max_depth:
        raise LimitExceeded(f"layer entry {who()!r}: depth {len(parts)} exceeds max_depth {limits.max_depth}")
    return parts


def _filter_xattrs(e: tf.Entry) -> dict[str, bytes]:
    out = {}
    for k, v in e.xattrs.items():
        if k.startswith("trusted.overlay."):
            raise InvalidArgument(f"layer entry {e.display()!r}: xattr {k} is reserved for the "
                                  "storage driver")
        if k == "security.capability" or k in ("system.posix_acl_access", "system.posix_acl_default") or (
                k.startswith("user.") and not k.startswith("user.overlay.")):
            out[k] = v
    return out


def _is_whiteout_dev(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _proc_fd(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


class _Applier:
    def __init__(self, root: str, mode: str, lower_dirs: Sequence[str], limits: Limits) -> None:
        self.overlay = mode == "overlay"
        self.lower_dirs = list(lower_dirs)
        self.limits = limits
        self.root_fd = os.open(root, _DIR_FLAGS | os.O_NOFOLLOW)
        self.euid, self.egid = os.geteuid(), os.getegid()
        self.umask = _read_umask()
        self.cache: dict[bytes, int] = {}      # parent path -> open dir fd
        self.setgid: dict[int, bool] = {}      # dir fd -> has S_ISGID
        self.graveyard: list[int] = []         # fds dropped from the cache, closed later
        self.created: set[bytes] = set()       # paths this layer created
        self.whiteouts: set[bytes] = set()     # overlay: paths this layer whited out
        self.deferred: dict[bytes, tuple] = {}  # dir path -> (ino, mode, uid, gid, mtime_ns, xattrs)
        self.opaque_dirs: set[bytes] = set()

    # --- fd management ---------------------------------------------------------------------------
    def close(self) -> None:
        for fd in list(self.cache.values()) + self.graveyard:
            os.close(fd)
        self.cache.clear()
        self.graveyard.clear()
        os.close(self.root_fd)

    def _invalidate(self) -> None:
        """Something was removed: cached resolutions may be stale."""
        self.graveyard.extend(self.cache.values())
        self.cache.clear()
        self.setgid.clear()

    def _dir_fd(self, parts: list[bytes], create: bool) -> int | None:
        """An fd of the directory parts (resolved in root), created (as 0755 dirs) when missing."""
        if not parts:
            return self.root_fd
        key = b"/".join(parts)
        fd = self.cache.get(key)
        if fd is not None:
            return fd
        try:
            fd = linux.openat2(self.root_fd, key, _DIR_FLAGS, 0, _IN_ROOT)
        except FileNotFoundError:
            if not create:
                return None
            fd = self._mkdirs(parts)
        except (NotADirectoryError, OSError) as err:
            if err.errno in (errno.ENOTDIR, errno.ELOOP):
                raise InvalidArgument(f"parent {key.decode(errors='replace')!r} is not a directory") from err
            raise
        if len(self.cache) >= _CACHE_MAX:
            self._invalidate()
        self.cache[key] = fd
        return fd

    def _mkdirs(self, parts: list[bytes]) -> int:
        parent = self.root_fd
        opened: list[int] = []
        try:
            for i in range(1, len(parts) + 1):
                sub = b"/".join(parts[:i])
                try:
                    fd = linux.openat2(self.root_fd, sub, _DIR_FLAGS, 0, _IN_ROOT)
                except FileNotFoundError:
                    name = parts[i - 1]
                    try:
                        os.mkdir(name, 0o755, dir_fd=parent)
                    except FileExistsError:
                        raise InvalidArgument(f"parent {sub.decode(errors='replace')!r} is a symlink that "
                                              "does not resolve to a directory inside the root") from None
                    fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent)
                    if self.umask & 0o755:
                        os.chmod(fd, 0o755)
                    self._implicit_dir(parts[:i], fd)
                except OSError as err:
                    if err.errno in (errno.ENOTDIR, errno.ELOOP):
                        raise InvalidArgument(f"parent {sub.decode(errors='replace')!r} is not a directory") \
                            from err
                    raise
                opened.append(fd)
                parent = fd
            return opened.pop()
        finally:
            for fd in opened:
                os.close(fd)

    def _implicit_dir(self, parts: list[bytes], fd: int) -> None:
        """A directory the tar did not list: in overlay mode it takes the lower dir's metadata."""
        path = b"/".join(parts)
        self.created.add(path)
        if not self.overlay:
            return
        for lower in self.lower_dirs:
            try:
                lfd = os.open(lower, _DIR_FLAGS)
            except OSError:
                continue
            try:
                try:
                    dfd = linux.openat2(lfd, path, _DIR_FLAGS | os.O_NOFOLLOW, 0, _IN_ROOT)
                except OSError:
                    continue
                try:
                    st = os.fstat(dfd)
                finally:
                    os.close(dfd)
            finally:
                os.close(lfd)
            self.deferred[path] = (os.fstat(fd).st_ino, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                                   st.st_mtime_ns, {})
            return

    def _parent_setgid(self, pfd: int) -> bool:
        v = self.setgid.get(pfd)
        if v is None:
            v = self.setgid[pfd] = bool(os.fstat(pfd).st_mode & stat.S_ISGID)
        return v

    def _remove(self, pfd: int, leaf: bytes, path: bytes) -> None:
        """Remove whatever is at leaf (a directory recursively), never following it."""
        try:
            st = os.stat(leaf, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(leaf, dir_fd=pfd)
            prefix = path + b"/"
            if self.deferred:
                for k in [k for k in self.deferred if k == path or k.startswith(prefix)]:
                    del self.deferred[k]
        else:
            os.unlink(leaf, dir_fd=pfd)
        self._invalidate()

    # --- entries ---------------------------------------------------------------------------------
    def apply(self, e: tf.Entry, stream: TarStream) -> None:
        if self.graveyard:
            for fd in self.graveyard:
                os.close(fd)
            self.graveyard.clear()
        try:
            self._apply(e, stream)
        except BerthError as err:
            what = e.display()
            if err.message.startswith("layer"):
                raise
            raise type(err)(f"layer entry {what!r}: {err.message}") from err
        except OSError as err:
            if err.errno in _SYSTEM_ERRNOS:
                raise
            raise InvalidArgument(f"layer entry {e.display()!r}: {err.strerror or err}") from err

    def _apply(self, e: tf.Entry, stream: TarStream) -> None:
        parts = _clean(e.name, self.limits)
        if not parts:
            if e.type != tf.DIR:
                raise InvalidArgument("the root can only be a directory")
            return  # the root entry ("./"): the target root keeps its own metadata
        leaf = parts[-1]
        if WHITEOUT_PREFIX in e.name:
            for c in parts[:-1]:
                if c.startswith(WHITEOUT_META):
                    return  # AUFS metadata (.wh..wh.plnk/...): skipped, as Docker does
                if c.startswith(WHITEOUT_PREFIX):
                    raise InvalidArgument("a whiteout name cannot be a directory")
        if leaf.startswith(WHITEOUT_PREFIX):
            if leaf == WHITEOUT_OPAQUE:
                self._opaque(parts[:-1])
            elif leaf.startswith(WHITEOUT_META):
                return
            else:
                target = leaf[len(WHITEOUT_PREFIX):]
                if target in (b"", b".", b"..") or b"/" in target:
                    raise InvalidArgument("invalid whiteout name")
                self._whiteout(parts[:-1], target)
            return
        path = b"/".join(parts)
        pfd = self._dir_fd(parts[:-1], True)
        assert pfd is not None
        t = e.type
        if t == tf.REG:
            self._file(e, pfd, leaf, path, stream)
        elif t == tf.DIR:
            self._dir(e, pfd, leaf, path)
        elif t == tf.SYM:
            self._symlink(e, pfd, leaf, path)
        elif t == tf.LNK:
            self._hardlink(e, pfd, leaf, path)
        else:
            self._node(e, pfd, leaf, path)
        self.created.add(path)

    def _chown(self, fd_or_path, uid: int, gid: int, pfd: int, **kw) -> None:
        if uid == self.euid and gid == self.egid and not self._parent_setgid(pfd):
            return
        try:
            os.chown(fd_or_path, uid, gid, **kw)
        except PermissionError:
            if self.euid == 0:
                raise  # root was refused: a real error; unprivileged: best effort, as tar

    def _file(self, e: tf.Entry, pfd: int, leaf: bytes, path: bytes, stream: TarStream) -> None:
        mode = e.mode & 0o7777
        fast = not (mode & ~0o777) and not (mode & self.umask)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(leaf, flags, mode if fast else 0o600, dir_fd=pfd)
        except FileExistsError:
            self._remove(pfd, leaf, path)
            fd = os.open(leaf, flags, mode if fast else 0o600, dir_fd=pfd)
        try:
            if e.size:
                stream.copy_to_fd(fd, e.size, e.name)
            if e.uid != self.euid or e.gid != self.egid or self._parent_setgid(pfd):
                self._chown(fd, e.uid, e.gid, pfd)
            if not fast:
                os.fchmod(fd, mode)
            if e.xattrs:
                for k, v in _filter_xattrs(e).items():
                    os.setxattr(fd, k, v)
            os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
        finally:
            os.close(fd)

    def _dir(self, e: tf.Entry, pfd: int, leaf: bytes, path: bytes) -> None:
        xattrs = _filter_xattrs(e)
        try:
            os.mkdir(leaf, 0o700, dir_fd=pfd)
        except FileExistsError:
            st = os.stat(leaf, dir_fd=pfd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                self._remove(pfd, leaf, path)
                os.mkdir(leaf, 0o700, dir_fd=pfd)
        if self.overlay and path in self.whiteouts:
            xattrs[OPAQUE_XATTR] = b"y"  # whited out and re-created in one layer: hide the lower dir
            self.opaque_dirs.add(path)
        elif path in self.opaque_dirs:
            xattrs[OPAQUE_XATTR] = b"y"
        ino = os.stat(leaf, dir_fd=pfd, follow_symlinks=False).st_ino
        self.deferred[path] = (ino, e.mode & 0o7777, e.uid, e.gid, e.mtime_ns, xattrs)

    def _symlink(self, e: tf.Entry, pfd: int, leaf: bytes, path: bytes) -> None:
        if not e.linkname or b"\0" in e.linkname:
            raise InvalidArgument("invalid symlink target")
        if len(e.linkname) > self.limits.max_path:
            raise LimitExceeded(f"symlink target of {len(e.linkname)} bytes exceeds max_path")
        try:
            os.symlink(e.linkname, leaf, dir_fd=pfd)
        except FileExistsError:
            self._remove(pfd, leaf, path)
            os.symlink(e.linkname, leaf, dir_fd=pfd)
        self._chown(leaf, e.uid, e.gid, pfd, dir_fd=pfd, follow_symlinks=False)
        xattrs = _filter_xattrs(e)
        if xattrs:
            p = _proc_fd(pfd).encode() + b"/" + leaf
            for k, v in xattrs.items():
                os.setxattr(p, k, v, follow_symlinks=False)
        os.utime(leaf, ns=(e.mtime_ns, e.mtime_ns), dir_fd=pfd, follow_symlinks=False)

    def _node(self, e: tf.Entry, pfd: int, leaf: bytes, path: bytes) -> None:
        kind = _KIND[e.type]
        dev = os.makedev(e.devmajor, e.devminor) if kind != stat.S_IFIFO else 0
        try:
            os.mknod(leaf, kind | 0o600, dev, dir_fd=pfd)
        except FileExistsError:
            self._remove(pfd, leaf, path)
            os.mknod(leaf, kind | 0o600, dev, dir_fd=pfd)
        self._fix_by_path_fd(pfd, leaf, kind, e.mode & 0o7777, e.uid, e.gid, e.mtime_ns, _filter_xattrs(e))

    def _fix_by_path_fd(self, pfd: int, leaf: bytes, kind: int, mode: int, uid: int, gid: int, mtime_ns: int,
                        xattrs: dict[str, bytes]) -> None:
        """Metadata of a node that must not be opened (device, fifo): through an O_PATH fd of it."""
        fd = os.open(leaf, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            if stat.S_IFMT(os.fstat(fd).st_mode) != kind:
                raise InvalidArgument("node changed type while being created")
            p = _proc_fd(fd)
            self._chown(p, uid, gid, pfd)
            os.chmod(p, mode)
            for k, v in xattrs.items():
                os.setxattr(p, k, v)
            os.utime(p, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(fd)

    def _hardlink(self, e: tf.Entry, pfd: int, leaf: bytes, path: bytes) -> None:
        tparts = _clean(e.linkname, self.limits, e.linkname.decode(errors="replace"))
        if not tparts:
            raise InvalidArgument("hardlink to the root")
        tpath = b"/".join(tparts)
        if tpath == path:
            return
        tfd = self._dir_fd(tparts[:-1], False)
        tleaf = tparts[-1]
        tst = None
        if tfd is not None:
            try:
                tst = os.stat(tleaf, dir_fd=tfd, follow_symlinks=False)
            except FileNotFoundError:
                tst = None
        if tst is not None and self.overlay and _is_whiteout_dev(tst) and tpath in self.whiteouts:
            tst = None
        if tst is None:
            if not (self.overlay and self.lower_dirs and self._copy_up(tparts)):
                raise InvalidArgument(f"hardlink target {e.linkname.decode(errors='replace')!r} "
                                      "does not exist inside the root")
            tfd = self._dir_fd(tparts[:-1], False)
            assert tfd is not None
            tst = os.stat(tleaf, dir_fd=tfd, follow_symlinks=False)
        if stat.S_ISDIR(tst.st_mode):
            raise InvalidArgument("hardlink to a directory")
        # the parent fd may have been dropped from the cache by _copy_up: re-resolve it
        pfd = self._dir_fd(path.split(b"/")[:-1], True)  # type: ignore[assignment]
        try:
            os.link(tleaf, leaf, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        except FileExistsError:
            st = os.stat(leaf, dir_fd=pfd, follow_symlinks=False)
            if (st.st_dev, st.st_ino) == (tst.st_dev, tst.st_ino):
                return
            self._remove(pfd, leaf, path)
            tfd = self._dir_fd(tparts[:-1], False)
            pfd = self._dir_fd(path.split(b"/")[:-1], True)  # type: ignore[assignment]
            os.link(tleaf, leaf, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)

    def _copy_up(self, tparts: list[bytes]) -> bool:
        """Overlay mode: copy a hardlink target that only a lower layer holds into the upper dir."""
        tpath = b"/".join(tparts)
        if tpath in self.whiteouts:
            return False
        for anc in range(len(tparts)):
            if b"/".join(tparts[:anc]) in self.opaque_dirs:
                return False
        for lower in self.lower_dirs:
            lfd = os.open(lower, _DIR_FLAGS)
            try:
                try:
                    dfd = linux.openat2(lfd, b"/".join(tparts[:-1]) or b".", _DIR_FLAGS, 0, _IN_ROOT)
                except OSError:
                    continue
                try:
                    try:
                        st = os.stat(tparts[-1], dir_fd=dfd, follow_symlinks=False)
                    except FileNotFoundError:
                        if _has_opaque(dfd):
                            return False
                        continue
                    if _is_whiteout_dev(st) or stat.S_ISDIR(st.st_mode):
                        return False
                    upfd = self._dir_fd(tparts[:-1], True)
                    assert upfd is not None
                    _copy_node(dfd, tparts[-1], st, upfd)
                    self.created.add(tpath)
                    return True
                finally:
                    os.close(dfd)
            finally:
                os.close(lfd)
        return False

    def _whiteout(self, dir_parts: list[bytes], target: bytes) -> None:
        path = b"/".join(dir_parts + [target])
        if self.overlay:
            if path in self.created:
                # the same name is in this layer too: it stays; a directory hides the lower one
                pfd = self._dir_fd(dir_parts, True)
                try:
                    st = os.stat(target, dir_fd=pfd, follow_symlinks=False)
                except FileNotFoundError:
                    return
                if stat.S_ISDIR(st.st_mode):
                    self.opaque_dirs.add(path)
                    d = self.deferred.get(path)
                    if d is not None:
                        d[5][OPAQUE_XATTR] = b"y"
                return
            pfd = self._dir_fd(dir_parts, True)
            assert pfd is not None
            try:
                os.mknod(target, stat.S_IFCHR | 0o600, 0, dir_fd=pfd)
            except FileExistsError:
                self._remove(pfd, target, path)
                pfd = self._dir_fd(dir_parts, True)
                os.mknod(target, stat.S_IFCHR | 0o600, 0, dir_fd=pfd)
            self.whiteouts.add(path)
            return
        pfd = self._dir_fd(dir_parts, False)
        if pfd is None:
            return
        if path in self.created:
            # whiteouts only apply to lower layers (OCI image spec): the entry stays, and a
            # directory loses what the lower layers had in it (as overlay mode makes it opaque)
            try:
                sub = os.open(target, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=pfd)
            except OSError:
                return
            try:
                self._prune(sub, path)
            finally:
                os.close(sub)
            return
        self._remove(pfd, target, path)

    def _opaque(self, dir_parts: list[bytes]) -> None:
        path = b"/".join(dir_parts)
        if self.overlay:
            self.opaque_dirs.add(path)
            d = self.deferred.get(path)
            if d is not None:
                d[5][OPAQUE_XATTR] = b"y"
            else:
                pfd = self._dir_fd(dir_parts, True)
                os.setxattr(pfd, OPAQUE_XATTR, b"y")
            return
        pfd = self._dir_fd(dir_parts, False)
        if pfd is not None:
            self._prune(pfd, path)

    def _prune(self, dfd: int, path: bytes) -> None:
        """Delete mode opaque dir: remove everything below that this layer did not create."""
        for name in sorted(os.listdir(dfd)):
            bname = os.fsencode(name)
            child = path + b"/" + bname if path else bname
            if child not in self.created:
                self._remove(dfd, bname, child)
                continue
            st = os.stat(bname, dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                sub = os.open(bname, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dfd)
                try:
                    self._prune(sub, child)
                finally:
                    os.close(sub)

    # --- end -------------------------------------------------------------------------------------
    def finish(self) -> None:
        """Directory metadata, set last so that creating their contents does not change mtimes."""
        for path, (ino, mode, uid, gid, mtime_ns, xattrs) in self.deferred.items():
            try:
                fd = linux.openat2(self.root_fd, path, _DIR_FLAGS | os.O_NOFOLLOW, 0, _IN_ROOT)
            except OSError as err:
                if err.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                    continue
                raise
            try:
                st = os.fstat(fd)
                if st.st_ino != ino:
                    continue
                if (uid, gid) != (st.st_uid, st.st_gid):
                    try:
                        os.chown(fd, uid, gid)
                    except PermissionError:
                        if self.euid == 0:
                            raise
                os.chmod(fd, mode)
                for k, v in xattrs.items():
                    os.setxattr(fd, k, v)
                os.utime(fd, ns=(mtime_ns, mtime_ns))
            except OSError as err:
                if err.errno in _SYSTEM_ERRNOS:
                    raise
                raise InvalidArgument(f"layer entry {path.decode(errors='replace')!r}: "
                                      f"{err.strerror}") from err
            finally:
                os.close(fd)


def _has_opaque(dfd: int) -> bool:
    try:
        return os.getxattr(dfd, OPAQUE_XATTR) == b"y"
    except OSError:
        return False


def _copy_node(sfd: int, name: bytes, st: os.stat_result, dfd: int) -> None:
    """Copy one non-directory node (data, owner, mode, xattrs, mtime) from dir sfd to dir dfd."""
    times = (st.st_atime_ns, st.st_mtime_ns)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(name, dir_fd=sfd), name, dir_fd=dfd)
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dfd, follow_symlinks=False)
        os.utime(name, ns=times, dir_fd=dfd, follow_symlinks=False)
        return
    if stat.S_ISREG(st.st_mode):
        src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
        try:
            dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                          dir_fd=dfd)
            try:
                left = st.st_size
                while left > 0:
                    n = os.copy_file_range(src, dst, min(left, 1 << 30))
                    if n == 0:
                        break
                    left -= n
                os.fchown(dst, st.st_uid, st.st_gid)
                os.fchmod(dst, stat.S_IMODE(st.st_mode))
                for k in os.listxattr(src):
                    if not k.startswith("trusted.overlay."):
                        os.setxattr(dst, k, os.getxattr(src, k))
                os.utime(dst, ns=times)
            finally:
                os.close(dst)
        finally:
            os.close(src)
        return
    os.mknod(name, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev, dir_fd=dfd)
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    try:
        p = _proc_fd(fd)
        os.chown(p, st.st_uid, st.st_gid)
        os.chmod(p, stat.S_IMODE(st.st_mode))
        os.utime(p, ns=times)
    finally:
        os.close(fd)


def _read_umask() -> int:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o777  # unknown: always chmod explicitly
