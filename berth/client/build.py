"""The client side of ``POST /build``: the context tar (``.dockerignore`` applied, as the docker CLI
makes it: owner 0:0, symlinks as links, hard links once) streamed chunked to the engine.

Stdlib only at import time; ``berth.build.dockerignore`` (pure) is imported when a context is made.
"""

from __future__ import annotations

import os
import stat

from berth.errors import InvalidArgument, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any, BinaryIO

    from berth.client.transport import Response, Transport

BLOCK = 512
CHUNK = 1 << 20
_ARCHIVE_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd")


def read_ignore(context_dir: str) -> list[str]:
    try:
        with open(os.path.join(context_dir, ".dockerignore"), encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def dockerfile_in_context(context_dir: str, dockerfile: str | None) -> tuple[str | None, str | None]:
    """(name in the context, host path to add) for ``-f``: relative to the cwd as docker does; a file
    outside the context is added as ``.dockerfile.<random>``. Default: ``Dockerfile`` (or ``dockerfile``)."""
    ctx = os.path.realpath(context_dir)
    if not dockerfile:
        for name in ("Dockerfile", "dockerfile"):
            if os.path.lexists(os.path.join(ctx, name)):
                return name, None
        raise NotFound(f"unable to prepare context: unable to evaluate symlinks in Dockerfile path: "
                       f"lstat {os.path.join(ctx, 'Dockerfile')}: no such file or directory")
    path = os.path.realpath(dockerfile)
    if not os.path.isfile(path):
        raise NotFound(f"unable to prepare context: unable to evaluate symlinks in Dockerfile path: "
                       f"lstat {os.path.abspath(dockerfile)}: no such file or directory")
    rel = os.path.relpath(path, ctx)
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return None, path
    return rel.replace(os.sep, "/"), None


def random_dockerfile_name() -> str:
    return ".dockerfile." + os.urandom(10).hex()


class _Entry:
    __slots__ = ("name", "path", "st")

    def __init__(self, name: str, path: str, st: os.stat_result) -> None:
        self.name, self.path, self.st = name, path, st


def walk_context(context_dir: str, keep: Iterable[str] = ()) -> Iterator[_Entry]:
    """The context's entries in tar order, ``.dockerignore`` applied; names in ``keep`` (the
    Dockerfile, ``.dockerignore``) are sent even when excluded (the engine re-applies the file)."""
    from berth.build.dockerignore import IgnoreMatcher

    root = os.path.abspath(context_dir)
    matcher = IgnoreMatcher(read_ignore(root))
    keep = set(keep)
    exceptions = matcher.has_exceptions

    def excluded(rel: str) -> bool:
        return rel not in keep and bool(matcher.patterns) and matcher.excluded(rel)

    pending: list[_Entry] = []   # excluded directories not sent yet (sent before an included child)

    def flush() -> list[_Entry]:
        out = list(pending)
        pending.clear()
        return out

    def walk(rel: str) -> Iterator[_Entry]:
        path = os.path.join(root, rel) if rel else root
        try:
            names = sorted(os.listdir(path))
        except OSError as e:
            raise InvalidArgument(f"error checking context: {e.strerror}: {path}") from None
        for name in names:
            crel = f"{rel}/{name}" if rel else name
            cpath = os.path.join(root, crel)
            try:
                st = os.lstat(cpath)
            except FileNotFoundError:
                continue
            skip = excluded(crel)
            if stat.S_ISDIR(st.st_mode):
                if skip and not (exceptions or any(k.startswith(crel + "/") for k in keep)):
                    continue
                e = _Entry(crel, cpath, st)
                if skip:
                    pending.append(e)
                    yield from walk(crel)
                    if pending and pending[-1] is e:
                        pending.pop()
                else:
                    yield from flush()
                    yield e
                    yield from walk(crel)
                continue
            if skip or stat.S_ISSOCK(st.st_mode):
                continue
            yield from flush()
            yield _Entry(crel, cpath, st)

    yield from walk("")


def _header(name: str, st: os.stat_result, *, typ: bytes, size: int = 0, link: str = "") -> bytes:
    import tarfile

    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.mtime = int(st.st_mtime)
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.type = typ
    ti.size = size
    ti.linkname = link
    if typ in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _file_data(path: str, size: int) -> Iterator[bytes]:
    """Exactly size bytes of the file (zero-padded if it shrank), then padding to a block."""
    left = size
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise InvalidArgument(f"error checking context: can't open {path!r}: {e.strerror}") from None
    try:
        while left > 0:
            data = os.read(fd, min(CHUNK, left))
            if not data:
                break
            left -= len(data)
            yield data
    finally:
        os.close(fd)
    if left:
        yield bytes(left)
    if size % BLOCK:
        yield bytes(BLOCK - size % BLOCK)


def context_tar(context_dir: str, *, keep: Iterable[str] = (),
                extra: dict[str, bytes] | None = None) -> Iterator[bytes]:
    """The context directory as a tar stream (chunks of at most ~1 MiB); ``extra`` adds files, which
    are also appended to the ``.dockerignore`` sent (as the docker CLI does with ``-f`` from outside
    the context), so ``COPY .`` does not pick them up."""
    import tarfile
    import time

    if not os.path.isdir(context_dir):
        raise NotFound(f'unable to prepare context: path "{context_dir}" not found')
    extra = dict(extra or {})
    ignore_add = "".join(f"\n{name}\n" for name in extra).encode()
    links: dict[tuple[int, int], str] = {}
    buf = bytearray()
    for e in walk_context(context_dir, keep):
        st, mode = e.st, e.st.st_mode
        if e.name == ".dockerignore" and ignore_add and stat.S_ISREG(mode):
            with open(e.path, "rb") as f:
                extra[".dockerignore"] = f.read() + ignore_add
            continue
        if stat.S_ISDIR(mode):
            buf += _header(e.name + "/", st, typ=tarfile.DIRTYPE)
        elif stat.S_ISLNK(mode):
            buf += _header(e.name, st, typ=tarfile.SYMTYPE, link=os.readlink(e.path))
        elif stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                buf += _header(e.name, st, typ=tarfile.LNKTYPE, link=links[key])
            else:
                if st.st_nlink > 1:
                    links[key] = e.name
                buf += _header(e.name, st, typ=tarfile.REGTYPE, size=st.st_size)
                for data in _file_data(e.path, st.st_size):
                    buf += data
                    if len(buf) >= CHUNK:
                        yield bytes(buf)
                        buf.clear()
        elif stat.S_ISFIFO(mode):
            buf += _header(e.name, st, typ=tarfile.FIFOTYPE)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            buf += _header(e.name, st, typ=tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE)
        if len(buf) >= CHUNK:
            yield bytes(buf)
            buf.clear()
    if ignore_add and ".dockerignore" not in extra:
        extra[".dockerignore"] = ignore_add
    now = time.time()
    for name, data in extra.items():
        fake = os.stat_result((0o100600, 0, 0, 1, 0, 0, len(data), int(now), int(now), int(now)))
        buf += _header(name, fake, typ=tarfile.REGTYPE, size=len(data)) + data
        if len(data) % BLOCK:
            buf += bytes(BLOCK - len(data) % BLOCK)
    buf += bytes(2 * BLOCK)
    yield bytes(buf)


def single_file_tar(name: str, data: bytes) -> bytes:
    """A context of one file (``berth build - < Dockerfile``)."""
    import tarfile
    import time

    now = int(time.time())
    fake = os.stat_result((0o100644, 0, 0, 1, 0, 0, len(data), now, now, now))
    pad = bytes(-len(data) % BLOCK)
    return _header(name, fake, typ=tarfile.REGTYPE, size=len(data)) + data + pad + bytes(2 * BLOCK)


def is_archive(head: bytes) -> bool:
    """Whether stdin's first bytes are a (compressed) tar rather than a Dockerfile."""
    if any(head.startswith(m) for m in _ARCHIVE_MAGIC):
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


def stdin_chunks(first: bytes, src: BinaryIO) -> Iterator[bytes]:
    if first:
        yield first
    while chunk := src.read(CHUNK):
        yield chunk


def post_build(t: Transport, body: Iterable[bytes], params: dict[str, Any],
               headers: dict[str, str] | None = None) -> Response:
    """POST /build with a chunked tar body. If the engine answers early (an error) and closes while
    the body is still going out, its answer is read rather than the broken pipe reported."""
    from berth.client.transport import error_from

    hs = {"Host": "berth", "User-Agent": "berth-client", "Content-Type": "application/x-tar",
          "Transfer-Encoding": "chunked", "X-Registry-Config": "e30="}
    hs.update(headers or {})
    target = t.url("/build", params)
    head = f"POST {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs.items()) + "\r\n"
    sock = t._connect(None)
    try:
        try:
            sock.sendall(head.encode("latin-1"))
            for c in body:
                if c:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(c), c))
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the engine replied early: read what it said
        resp = t._read_head(sock, "POST")
    except BaseException:
        sock.close()
        raise
    if resp.status >= 400:
        raise error_from(resp)
    return resp
