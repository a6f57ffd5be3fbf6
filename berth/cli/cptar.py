"""`berth cp` on the client side: docker's destination rules, a streaming tar of a local path, and
a safe local extraction of a container's tar (no path may escape the destination: ``..``
entries are refused, symlinks are data and are never followed, hardlinks must point inside)."""

from __future__ import annotations

import os
import stat
import tarfile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

GO_DIR = 1 << 31  # Go os.FileMode bits in the path-stat header
GO_SYMLINK = 1 << 27


class CopyError(Exception):
    """A cp failure the CLI prints as ``Error: <message>`` (exit 1)."""


def split_target(arg: str) -> tuple[str | None, str]:
    """``ctr:/path`` → ("ctr", "/path"); a local path (``./a:b``, ``/x:y``, ``-``) → (None, arg)."""
    if arg.startswith((".", "/")) or ":" not in arg:
        return None, arg
    ctr, _, path = arg.partition(":")
    return ctr, path


def wants_contents(src: str) -> bool:
    """``dir/.`` copies the directory's contents, not the directory."""
    return src == "." or src.endswith("/.")


def plan(src: str, src_is_dir: bool, dst: str, dst_exists: bool, dst_is_dir: bool) -> tuple[str, str | None]:
    """docker's cp destination rules (both directions) → (directory to extract into, name for the
    archive's top entry, or None to put a directory's contents there)."""
    trailing = dst.endswith("/") or dst.endswith("/.")
    if dst_exists and dst_is_dir:
        if src_is_dir and wants_contents(src):
            return dst, None
        return dst, _base(src)
    if dst_exists:
        if src_is_dir:
            raise CopyError("cannot copy directory")
        if trailing:
            raise CopyError(f"destination \"{dst}\" must be a directory")
        return _parent(dst), _base(dst)
    if trailing and not src_is_dir:
        raise CopyError("no such directory")
    return _parent(dst.rstrip("/") or "/"), _base(dst)


def _base(p: str) -> str:
    p = p.rstrip("/")
    if p.endswith("/.") or p == ".":
        p = p[:-1].rstrip("/")
    return os.path.basename(p) or "/"


def _parent(p: str) -> str:
    p = p.rstrip("/")
    return os.path.dirname(p) or ("/" if p.startswith("/") else ".")


# -- local path → tar stream ----------------------------------------------------------------------
def tar_stream(src: str, top: str | None, follow: bool = False) -> Iterator[bytes]:
    """A tar of local path src, its top entry named ``top`` (None: a directory's contents only).
    Symlinks below the top are stored as links; with ``follow`` a top-level symlink is followed."""
    src = src.rstrip("/") or "/"
    if src.endswith("/."):
        src = src[:-2] or "/"
    st = os.stat(src) if follow else os.lstat(src)
    if top is not None:
        yield from _entry(src, top, st)
    if stat.S_ISDIR(st.st_mode):
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames.sort()
            rel = os.path.relpath(dirpath, src)
            for name in sorted(dirnames) + sorted(filenames):
                path = os.path.join(dirpath, name)
                arc = name if rel == "." else f"{rel}/{name}"
                if top is not None:
                    arc = f"{top}/{arc}"
                yield from _entry(path, arc, os.lstat(path))
            dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    yield b"\0" * 1024


def _entry(path: str, arcname: str, st: os.stat_result) -> Iterator[bytes]:
    ti = tarfile.TarInfo(arcname)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.mtime = int(st.st_mtime)
    if stat.S_ISDIR(st.st_mode):
        ti.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(path)
    elif stat.S_ISREG(st.st_mode):
        ti.size = st.st_size
    elif stat.S_ISFIFO(st.st_mode):
        ti.type = tarfile.FIFOTYPE
    else:
        return  # sockets and devices are not copied
    yield ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    if ti.type == tarfile.REGTYPE and ti.size:
        left = ti.size
        with open(path, "rb") as fh:
            while left > 0:
                chunk = fh.read(min(left, 1 << 20))
                if not chunk:
                    raise CopyError(f"{path}: file shrank while being copied")
                left -= len(chunk)
                yield chunk
        if ti.size % 512:
            yield b"\0" * (512 - ti.size % 512)


# -- tar stream → local directory -----------------------------------------------------------------
class _ChunkReader:
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = b""
        self.total = 0

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                chunk = next(self._it)
            except StopIteration:
                break
            self.total += len(chunk)
            self._buf += chunk
        if n < 0:
            data, self._buf = self._buf, b""
        else:
            data, self._buf = self._buf[:n], self._buf[n:]
        return data


def map_name(name: str, top: str | None) -> list[str] | None:
    """An archive member name → path components under the destination with its top component
    replaced by ``top`` (None: dropped). None for the top entry itself when it is dropped.
    ``..`` anywhere is refused."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise CopyError(f"invalid archive entry {name!r}: path escapes the destination")
    if not parts:
        return None if top is None else [top]
    rest = parts[1:]
    if top is None:
        return rest or None
    return [top, *rest]


def _open_dir(root_fd: int, parts: list[str], create: bool) -> int:
    """Walk parts from root_fd without following symlinks; create missing dirs if asked."""
    fd = os.dup(root_fd)
    try:
        for p in parts:
            try:
                nfd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(p, 0o755, dir_fd=fd)
                nfd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as e:
                raise CopyError(f"refusing to extract through {'/'.join(parts)}: {p} is not a directory "
                                f"({e.strerror})") from None
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _remove_existing(dfd: int, name: str, want_dir: bool) -> bool:
    """Clear the way for a new entry; returns True if a directory is already there (kept)."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        if want_dir:
            return True
        raise CopyError(f"cannot overwrite directory {name!r} with non-directory")
    os.unlink(name, dir_fd=dfd)
    return False


def extract(chunks: Iterable[bytes], dest: str, top: str | None) -> int:
    """Extract a tar stream into directory dest (which must exist), renaming the top entry to
    ``top`` (None: its contents go straight into dest). Ownership is not restored (the files belong
    to the user running cp, as with docker). → bytes of tar read."""
    reader = _ChunkReader(chunks)
    try:
        root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise CopyError(f"{dest}: {e.strerror}") from None
    dir_times: list[tuple[list[str], int, float]] = []
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tf:  # type: ignore[call-overload]
            for m in tf:
                parts = map_name(m.name, top)
                if parts is None:
                    continue
                dfd = _open_dir(root_fd, parts[:-1], create=True)
                try:
                    _extract_one(tf, m, dfd, parts[-1], root_fd, top)
                finally:
                    os.close(dfd)
                if m.isdir():
                    dir_times.append((parts, m.mode, m.mtime))
        for parts, mode, mtime in reversed(dir_times):  # deepest first, after their contents
            dfd = _open_dir(root_fd, parts, create=False)
            try:
                os.fchmod(dfd, mode & 0o7777)
                os.utime(dfd, (mtime, mtime))
            finally:
                os.close(dfd)
    except tarfile.TarError as e:
        raise CopyError(f"invalid tar stream: {e}") from None
    finally:
        os.close(root_fd)
    return reader.total


def _extract_one(tf: tarfile.TarFile, m: tarfile.TarInfo, dfd: int, name: str, root_fd: int,
                 top: str | None) -> None:
    if m.isdir():
        if not _remove_existing(dfd, name, True):
            os.mkdir(name, 0o700, dir_fd=dfd)
        return
    _remove_existing(dfd, name, False)
    if m.isreg():
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=dfd)
        try:
            src = tf.extractfile(m)
            assert src is not None
            while chunk := src.read(1 << 20):
                os.write(fd, chunk)
            os.fchmod(fd, m.mode & 0o7777)
            os.utime(fd, (m.mtime, m.mtime))
        finally:
            os.close(fd)
    elif m.issym():
        os.symlink(m.linkname, name, dir_fd=dfd)
        os.utime(name, (m.mtime, m.mtime), dir_fd=dfd, follow_symlinks=False)
    elif m.islnk():
        target = map_name(m.linkname, top)
        if not target:
            raise CopyError(f"invalid hardlink {m.name!r} -> {m.linkname!r}")
        tfd = _open_dir(root_fd, target[:-1], create=False)
        try:
            os.link(target[-1], name, src_dir_fd=tfd, dst_dir_fd=dfd, follow_symlinks=False)
        finally:
            os.close(tfd)
    elif m.isfifo():
        os.mkfifo(name, m.mode & 0o7777, dir_fd=dfd)
    elif (m.ischr() or m.isblk()) and os.geteuid() == 0:
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
        os.mknod(name, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor), dir_fd=dfd)
