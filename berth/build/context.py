"""The build context (a directory, or a tar stream extracted safely) and the selection of COPY/ADD
sources in any source tree, fd-relatively: paths resolve inside the tree (RESOLVE_IN_ROOT), the
last component is never followed, so a context symlink to a host path is copied as a link.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from typing import BinaryIO

from berth.build.dockerignore import IgnoreMatcher
from berth.errors import InvalidArgument, NotFound
from berth.sys import linux

MAX_CONTEXT_BYTES = 16 << 30
_GLOB = re.compile(r"[*?\[]")


@dataclass
class Source:
    """One file, dir or link to copy: where it is in its tree and where it goes below the target."""

    src: str          # path inside the source tree, "" for the root
    dest: str         # relative path below the destination ("" = the destination itself)
    st: os.stat_result


class SourceTree:
    """A directory tree read only through a root fd (the context, a stage's or an image's rootfs)."""

    def __init__(self, root_fd: int, ignore: IgnoreMatcher | None = None, *, context: bool = False) -> None:
        self.root_fd = root_fd
        self.ignore = ignore
        self.context = context

    # -- resolution --------------------------------------------------------------------------
    def _lstat(self, rel: str) -> os.stat_result:
        parent, leaf = posixpath.split(rel)
        pfd = linux.open_in_root(self.root_fd, parent or "/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return os.stat(leaf, dir_fd=pfd, follow_symlinks=False) if leaf else os.fstat(pfd)
        finally:
            os.close(pfd)

    def _listdir(self, rel: str) -> list[str]:
        fd = linux.open_in_root(self.root_fd, rel or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                | os.O_CLOEXEC)
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)

    def _skip(self, rel: str) -> bool:
        return bool(self.ignore and rel and self.ignore.excluded(rel))

    def select(self, pattern: str) -> list[Source]:
        """The sources one COPY/ADD argument names: a file, a directory's contents, or glob matches."""
        clean = clean_source(pattern, context=self.context)
        if not _GLOB.search(clean):
            try:
                st = self._lstat(clean)
            except FileNotFoundError:
                raise NotFound(f"failed to compute cache key: \"{pattern}\" not found") from None
            except (NotADirectoryError, OSError) as e:
                raise NotFound(f"failed to compute cache key: \"{pattern}\": {e.strerror}") from None
            if self._skip(clean):
                raise NotFound(f"failed to compute cache key: \"{pattern}\" excluded by .dockerignore")
            return self._expand(clean, st, top=True)
        matches = self._glob(clean)
        if not matches:
            raise NotFound(f"failed to compute cache key: no source files were specified by \"{pattern}\"")
        out: list[Source] = []
        for rel, st in matches:
            out.extend(self._expand(rel, st, top=True, glob=True))
        return out

    def _glob(self, pattern: str) -> list[tuple[str, os.stat_result]]:
        segs = [s for s in pattern.split("/") if s]
        found: list[str] = [""]
        for seg in segs:
            nxt = []
            rx = re.compile(_glob_regex(seg), re.DOTALL) if _GLOB.search(seg) else None
            for base in found:
                if rx is None:
                    nxt.append(posixpath.join(base, seg) if base else seg)
                    continue
                try:
                    names = self._listdir(base)
                except OSError:
                    continue
                nxt.extend(posixpath.join(base, n) if base else n for n in names if rx.match(n))
            found = nxt
        out = []
        for rel in found:
            if self._skip(rel):
                continue
            try:
                out.append((rel, self._lstat(rel)))
            except OSError:
                continue
        return out

    def _expand(self, rel: str, st: os.stat_result, *, top: bool, glob: bool = False) -> list[Source]:
        """A file → itself under its base name; a directory → its contents (as Docker copies)."""
        if not stat.S_ISDIR(st.st_mode):
            return [Source(rel, posixpath.basename(rel), st)]
        out: list[Source] = [Source(rel, "", st)]
        self._walk(rel, "", out)
        return out

    def _walk(self, rel: str, dest: str, out: list[Source]) -> None:
        for name in self._listdir(rel):
            child = posixpath.join(rel, name) if rel else name
            cdest = posixpath.join(dest, name) if dest else name
            excluded = self._skip(child)
            try:
                st = self._lstat(child)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if excluded and not (self.ignore and self.ignore.has_exceptions):
                    continue
                before = len(out)
                if not excluded:
                    out.append(Source(child, cdest, st))
                self._walk(child, cdest, out)
                if excluded and len(out) > before:
                    out.insert(before, Source(child, cdest, st))
            elif not excluded:
                out.append(Source(child, cdest, st))

    # -- reading -----------------------------------------------------------------------------
    def open_file(self, rel: str) -> int:
        return linux.open_in_root(self.root_fd, rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)

    def readlink(self, rel: str) -> str:
        parent, leaf = posixpath.split(rel)
        pfd = linux.open_in_root(self.root_fd, parent or "/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return os.readlink(leaf, dir_fd=pfd)
        finally:
            os.close(pfd)

    def read_small(self, rel: str, limit: int = 4 << 20) -> bytes:
        fd = self.open_file(rel)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise InvalidArgument(f"{rel} is not a regular file")
            return os.read(fd, limit)
        finally:
            os.close(fd)

    def file_sha256(self, rel: str) -> str:
        h = hashlib.sha256()
        fd = self.open_file(rel)
        try:
            while True:
                b = os.read(fd, 1 << 20)
                if not b:
                    break
                h.update(b)
        finally:
            os.close(fd)
        return h.hexdigest()

    def content_hash(self, sources: list[Source], *, ownership: bool = True) -> str:
        """sha256 over each source's destination path, type, mode, owner and content (not mtime)."""
        h = hashlib.sha256()
        for s in sources:
            st = s.st
            typ = stat.S_IFMT(st.st_mode)
            h.update(f"{s.dest}\0{typ:o}\0{stat.S_IMODE(st.st_mode):o}\0".encode())
            if ownership:
                h.update(f"{st.st_uid}:{st.st_gid}\0".encode())
            if stat.S_ISREG(st.st_mode):
                h.update(self.file_sha256(s.src).encode())
            elif stat.S_ISLNK(st.st_mode):
                h.update(self.readlink(s.src).encode())
            h.update(b"\n")
        return h.hexdigest()


def clean_source(pattern: str, *, context: bool = True) -> str:
    """Normalise a source path; refuse one that leaves the build context."""
    if "\0" in pattern:
        raise InvalidArgument("invalid source path")
    p = posixpath.normpath(pattern) if pattern else "."
    if context and (p == ".." or p.startswith("../")):
        raise InvalidArgument(f"forbidden path outside the build context: {pattern}")
    p = p.lstrip("/")
    if context and (p == ".." or p.startswith("../")):
        raise InvalidArgument(f"forbidden path outside the build context: {pattern}")
    p = posixpath.normpath("/" + p).lstrip("/")
    return "" if p == "." else p


def _glob_regex(seg: str) -> str:
    out = ["^"]
    i = 0
    while i < len(seg):
        ch = seg[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            j = seg.find("]", i + 1)
            if j == -1:
                out.append(re.escape(ch))
            else:
                body = seg[i + 1:j]
                if body[:1] in ("^", "!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        elif ch == "\\" and i + 1 < len(seg):
            i += 1
            out.append(re.escape(seg[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out) + "$"


class _TarTail(io.RawIOBase):
    """The uncompressed context tar, completed at EOF: the docker CLI's ``-f`` outside the context
    (``ReplaceFileTarWrapper``) closes its pipe before the tar writer pads the last file and writes
    the end-of-archive blocks; moby's reader accepts that, so berth completes the stream. (An HTTP
    body cut short is already an error before this: only a properly ended body reaches EOF here.)"""

    def __init__(self, src: BinaryIO) -> None:
        super().__init__()
        self._src = src
        self._n = 0
        self._tail: bytes | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        if self._tail is None:
            data = self._src.read(len(b))
            if data:
                self._n += len(data)
                b[:len(data)] = data
                return len(data)
            self._tail = bytes(-self._n % 512 + 1024)
        n = min(len(b), len(self._tail))
        b[:n] = self._tail[:n]
        self._tail = self._tail[n:]
        return n


class BuildContext:
    """The context directory (owned or borrowed) with its .dockerignore."""

    def __init__(self, root: str, *, owned: bool = False) -> None:
        self.root = root
        self.owned = owned
        self.fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.ignore = IgnoreMatcher([])
        tree = SourceTree(self.fd)
        try:
            text = tree.read_small(".dockerignore", 1 << 20).decode("utf-8", "replace")
            self.ignore = IgnoreMatcher.from_text(text)
        except OSError:
            pass
        self.tree = SourceTree(self.fd, self.ignore, context=True)

    @classmethod
    def from_dir(cls, path: str) -> BuildContext:
        if not os.path.isdir(path):
            raise NotFound(f"unable to prepare context: path {path!r} not found")
        return cls(os.path.abspath(path))

    @classmethod
    def from_tar(cls, src: BinaryIO, tmp_dir: str | None = None) -> BuildContext:
        """Extract a (possibly compressed) tar context safely into a private temporary dir."""
        from berth.archive import Limits, apply_layer
        from berth.archive.compression import open_decompressed

        d = tempfile.mkdtemp(prefix="berth-build-ctx-", dir=tmp_dir)
        try:
            os.chmod(d, 0o700)
            root = os.path.join(d, "ctx")
            os.mkdir(root, 0o755)
            tar = _TarTail(open_decompressed(src))
            apply_layer(tar, root, whiteout_mode="delete", limits=Limits(max_bytes=MAX_CONTEXT_BYTES))
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            raise
        ctx = cls(root, owned=True)
        ctx._tmp = d
        return ctx

    def read_dockerfile(self, name: str) -> bytes:
        rel = clean_source(name)
        try:
            return SourceTree(self.fd).read_small(rel, 4 << 20)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"Cannot locate specified Dockerfile: {name}") from None
        except OSError as e:
            raise InvalidArgument(f"Cannot read Dockerfile {name}: {e.strerror}") from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.owned:
            shutil.rmtree(getattr(self, "_tmp", self.root), ignore_errors=True)
