"""fd-relative file-tree helpers for volume directories: remove, empty, measure.

Removal never crosses into another mount (compared by the mount id of each opened directory),
so a bind or tmpfs still mounted below a volume is refused rather than emptied.
"""

from __future__ import annotations

import os
import stat

from berth.errors import Conflict

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def mount_id(fd: int) -> int:
    """The mount id of the file open at fd (from /proc/self/fdinfo)."""
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    raise OSError(f"no mnt_id for fd {fd}")


def mounts_below(path: str) -> list[str]:
    """Mount points at or below path in this mount namespace (from /proc/self/mountinfo)."""
    real = os.path.realpath(path).rstrip("/")
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == real or mp.startswith(real + "/"):
                out.append(mp)
    return out


def clear_dir(dir_fd: int, *, where: str = "") -> None:
    """Remove everything inside the directory open at dir_fd, staying on its mount."""
    mnt = mount_id(dir_fd)
    for name in os.listdir(dir_fd):
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=dir_fd)
            continue
        cfd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        try:
            if mount_id(cfd) != mnt:
                raise Conflict(f"{os.path.join(where, name)}: a mount is still in place there")
            if st.st_mode & 0o700 != 0o700:
                os.chmod(cfd, 0o700)
            clear_dir(cfd, where=os.path.join(where, name))
        finally:
            os.close(cfd)
        os.rmdir(name, dir_fd=dir_fd)


def remove_tree(path: str) -> None:
    """Remove the directory tree at path (missing is fine) without crossing mounts."""
    parent, name = os.path.split(os.path.abspath(path))
    try:
        pfd = os.open(parent, _DIR_FLAGS)
    except FileNotFoundError:
        return
    try:
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        except FileNotFoundError:
            return
        try:
            if mount_id(fd) != mount_id(pfd):
                raise Conflict(f"{path}: is a mount point")
            clear_dir(fd, where=path)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=pfd)
    finally:
        os.close(pfd)


def is_empty(path: str) -> bool:
    """True if the directory at path has no entries."""
    with os.scandir(path) as it:
        return next(it, None) is None


def tree_size(path: str) -> int:
    """Apparent size in bytes of the non-directory entries under path (hardlinks counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    try:
        root_dev = os.lstat(path).st_dev
    except FileNotFoundError:
        return 0
    stack = [path]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if st.st_dev == root_dev:
                        stack.append(e.path)
                    continue
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1:
                    if key in seen:
                        continue
                    seen.add(key)
                total += st.st_size
    return total
