"""Filesystem work of COPY/ADD/WORKDIR inside a snapshot, without mounting anything on the host.

A snapshot's mounts become a *detached* mount (``fsopen``/``fsmount`` for overlay; the directory
itself for a bind): an fd that is the root of the merged tree, never attached to any mount
namespace, released when the fd is closed (also if the process dies). Every destination path is
resolved under that fd with ``openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)``, so symlinks
in the image and ``/proc/self/fd/N`` paths cannot reach host files.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
from collections.abc import Iterator

from berth.build.context import Source, SourceTree
from berth.errors import InvalidArgument
from berth.mount import MOUNT_FLAGS, PROPAGATION_FLAGS, Mount
from berth.sys import linux

_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_CHUNK = 1 << 20


def _detached_overlay(m: Mount) -> int:
    fd = linux.fsopen("overlay", 1)
    try:
        ro = False
        for opt in m.options:
            if opt == "ro":
                ro = True
                continue
            if opt in MOUNT_FLAGS or opt in PROPAGATION_FLAGS:
                continue
            key, _, value = opt.partition("=")
            if key == "lowerdir":
                for lower in value.split(":"):
                    linux.fsconfig(fd, linux.FSCONFIG_SET_STRING, "lowerdir+", lower)
            elif value:
                linux.fsconfig(fd, linux.FSCONFIG_SET_STRING, key, value)
            else:
                linux.fsconfig(fd, linux.FSCONFIG_SET_FLAG, key)
        if ro:
            linux.fsconfig(fd, linux.FSCONFIG_SET_FLAG, "ro")
        linux.fsconfig(fd, linux.FSCONFIG_CMD_CREATE)
        return linux.fsmount(fd, linux.FSMOUNT_CLOEXEC, 0x2 | 0x4)  # nosuid, nodev
    finally:
        os.close(fd)


@contextlib.contextmanager
def snapshot_root(mounts: list[Mount]) -> Iterator[int]:
    """An O_PATH fd of the merged root the mounts describe (detached; closed on exit)."""
    if len(mounts) != 1:
        raise InvalidArgument(f"cannot open a snapshot with {len(mounts)} mounts")
    m = mounts[0]
    if m.type == "bind":
        fd = os.open(m.source, _DIR)
    elif m.type == "overlay":
        fd = _detached_overlay(m)
    else:
        raise InvalidArgument(f"cannot open a snapshot mounted as {m.type}")
    try:
        yield fd
    finally:
        os.close(fd)


def mkdirs(root_fd: int, path: str, uid: int = 0, gid: int = 0, mode: int = 0o755,
           created: list[str] | None = None) -> int:
    """Create path (absolute inside the root) and missing parents; return an O_PATH fd of it.

    created, if given, collects the directories made."""
    parts = [p for p in posixpath.normpath("/" + path).split("/") if p]
    cur = ""
    for part in parts:
        parent = cur or "/"
        cur = cur + "/" + part
        try:
            fd = linux.open_in_root(root_fd, cur, _DIR)
            os.close(fd)
            continue
        except FileNotFoundError:
            pass
        except NotADirectoryError:
            raise InvalidArgument(f"cannot create directory {cur}: a parent is not a directory") from None
        pfd = linux.open_in_root(root_fd, parent, _DIR)
        try:
            try:
                os.mkdir(part, mode, dir_fd=pfd)
                os.chown(part, uid, gid, dir_fd=pfd, follow_symlinks=False)
                os.chmod(part, mode, dir_fd=pfd)
                if created is not None:
                    created.append(cur)
            except FileExistsError:
                st = os.stat(part, dir_fd=pfd, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise InvalidArgument(f"cannot create directory {cur}: not a directory") from None
                # a dangling symlink: create its target inside the root
                target = os.readlink(part, dir_fd=pfd)
                base = target if target.startswith("/") else posixpath.join(parent, target)
                os.close(mkdirs(root_fd, base, uid, gid, mode, created))
        finally:
            os.close(pfd)
    return linux.open_in_root(root_fd, "/" + "/".join(parts), _DIR)


def _remove_leaf(pfd: int, leaf: str) -> None:
    try:
        st = os.stat(leaf, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"cannot overwrite directory {leaf!r} with a non-directory")
    os.unlink(leaf, dir_fd=pfd)


def copy_sources(root_fd: int, tree: SourceTree, sources: list[Source], dest: str, *, dest_is_dir: bool,
                 chown: tuple[int, int] | None, chmod: int | None) -> int:
    """Copy sources into dest (absolute inside the root); returns the number of entries written."""
    n = 0
    if dest_is_dir:
        os.close(mkdirs(root_fd, dest, *(chown or (0, 0))))
    else:
        os.close(mkdirs(root_fd, posixpath.dirname(dest) or "/", *(chown or (0, 0))))
    for s in sources:
        st = s.st
        uid, gid = chown if chown is not None else (st.st_uid, st.st_gid)
        target = posixpath.join(dest, s.dest) if dest_is_dir else dest
        if not s.dest and stat.S_ISDIR(st.st_mode):
            continue  # the directory argument itself: its contents go into dest
        if stat.S_ISDIR(st.st_mode):
            mode = chmod if chmod is not None else stat.S_IMODE(st.st_mode)
            fd = mkdirs(root_fd, target, uid, gid, mode)
            try:
                os.chown(f"/proc/self/fd/{fd}", uid, gid)
                os.chmod(f"/proc/self/fd/{fd}", mode)
                os.utime(f"/proc/self/fd/{fd}", ns=(st.st_mtime_ns, st.st_mtime_ns))
            finally:
                os.close(fd)
            n += 1
            continue
        parent, leaf = posixpath.split(target)
        pfd = mkdirs(root_fd, parent or "/", *(chown or (0, 0)))
        try:
            pdir = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        finally:
            os.close(pfd)
        try:
            try:
                existing = os.stat(leaf, dir_fd=pdir, follow_symlinks=False)
            except FileNotFoundError:
                existing = None
            if existing is not None and stat.S_ISDIR(existing.st_mode) and not stat.S_ISDIR(st.st_mode):
                if dest_is_dir or not target.endswith("/"):
                    raise InvalidArgument(f"cannot overwrite directory {target} with non-directory")
            _remove_leaf(pdir, leaf)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(tree.readlink(s.src), leaf, dir_fd=pdir)
                os.chown(leaf, uid, gid, dir_fd=pdir, follow_symlinks=False)
                os.utime(leaf, ns=(st.st_mtime_ns, st.st_mtime_ns), dir_fd=pdir, follow_symlinks=False)
            elif stat.S_ISREG(st.st_mode):
                mode = chmod if chmod is not None else stat.S_IMODE(st.st_mode)
                src = tree.open_file(s.src)
                try:
                    out = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                  0o600, dir_fd=pdir)
                    try:
                        _copy_fd(src, out)
                        os.fchown(out, uid, gid)
                        os.fchmod(out, mode)
                        os.utime(out, ns=(st.st_mtime_ns, st.st_mtime_ns))
                    finally:
                        os.close(out)
                finally:
                    os.close(src)
            else:
                raise InvalidArgument(f"cannot copy {s.src}: unsupported file type")
            n += 1
        finally:
            os.close(pdir)
    return n


def _copy_fd(src: int, dst: int) -> None:
    while True:
        try:
            n = os.copy_file_range(src, dst, 1 << 30)
        except OSError:
            n = -1
        if n == 0:
            return
        if n < 0:
            break
    while True:
        b = os.read(src, _CHUNK)
        if not b:
            return
        os.write(dst, b)


def write_file(root_fd: int, path: str, data: bytes, *, uid: int = 0, gid: int = 0, mode: int = 0o644,
               mtime: float | None = None) -> None:
    """Write a file (here-document, downloaded URL) at path inside the root."""
    parent, leaf = posixpath.split(posixpath.normpath("/" + path))
    pfd = mkdirs(root_fd, parent, uid, gid)
    try:
        pdir = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    finally:
        os.close(pfd)
    try:
        _remove_leaf(pdir, leaf)
        fd = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=pdir)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            if mtime is not None:
                os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)
    finally:
        os.close(pdir)


def read_in_root(root_fd: int, path: str, limit: int = 1 << 20) -> str:
    """A small regular file inside the root as text ("" if missing or not a regular file)."""
    try:
        fd = linux.open_in_root(root_fd, path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return os.read(fd, limit).decode("utf-8", "replace")
    finally:
        os.close(fd)


def resolve_chown(root_fd: int, spec: str) -> tuple[int, int]:
    """``--chown=user[:group]`` (names or ids) against the image's /etc/passwd and /etc/group."""
    user, _, group = spec.partition(":")
    uid = gid = None
    if user.isdigit():
        uid = int(user)
    else:
        for line in read_in_root(root_fd, "/etc/passwd").splitlines():
            f = line.split(":")
            if len(f) >= 4 and f[0] == user and f[2].isdigit() and f[3].isdigit():
                uid, gid = int(f[2]), int(f[3])
                break
        if uid is None:
            raise InvalidArgument(f"unable to convert uid/gid chown string to host mapping: "
                                  f"can't find uid for user {user}: no such user: {user}")
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            gid = None
            for line in read_in_root(root_fd, "/etc/group").splitlines():
                f = line.split(":")
                if len(f) >= 3 and f[0] == group and f[2].isdigit():
                    gid = int(f[2])
                    break
            if gid is None:
                raise InvalidArgument(f"unable to convert uid/gid chown string to host mapping: "
                                      f"can't find gid for group {group}: no such group: {group}")
    elif gid is None:
        gid = uid
    return uid, gid  # type: ignore[return-value]


def is_dir(root_fd: int, path: str) -> bool:
    """Whether path (symlinks resolved inside the root) is an existing directory."""
    try:
        fd = linux.open_in_root(root_fd, path, _DIR)
    except OSError:
        return False
    os.close(fd)
    return True
