"""/dev inside the container: the default device nodes, `linux.devices`, and runc's symlinks."""

from __future__ import annotations

import os

from berth.runtime import rootfs

# (path, major, minor) of the runtime-spec default devices (char, mode 0666)
DEFAULT_DEVICES = (
    ("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7),
    ("/dev/random", 1, 8), ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0),
)
SYMLINKS = (
    ("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"),
)
_TYPES = {"c": 0o020000, "u": 0o020000, "b": 0o060000, "p": 0o010000}


def create_device(rootfd: int, path: str, kind: str, major: int, minor: int, mode: int = 0o666,
                  uid: int = 0, gid: int = 0, *, bind: bool = False) -> None:
    """mknod (or, in a user namespace, bind-mount the host node) at path under the root."""
    parent, _, name = path.rpartition("/")
    pfd = rootfs.mkdir_all(rootfd, parent)
    try:
        if bind:
            fd = rootfs.open_file(rootfd, path)
            try:
                rootfs._mount(path, fd, None, rootfs.linux.MS_BIND, None, path)
            finally:
                os.close(fd)
            return
        try:
            os.unlink(name, dir_fd=pfd)
        except FileNotFoundError:
            pass
        os.mknod(name, _TYPES[kind] | (mode & 0o7777), os.makedev(major, minor) if kind != "p" else 0,
                 dir_fd=pfd)
        os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
    finally:
        os.close(pfd)


def setup_dev(rootfd: int, devices: list[dict], *, bind: bool, terminal: bool = False) -> None:
    """Default devices, spec devices, the fd/std* symlinks, /dev/ptmx -> pts/ptmx, /dev/core."""
    old = os.umask(0)
    try:
        spec_paths = {d["path"] for d in devices}
        for path, major, minor in DEFAULT_DEVICES:
            if path not in spec_paths:
                create_device(rootfd, path, "c", major, minor, bind=bind)
        for d in devices:
            create_device(rootfd, d["path"], d["type"], d.get("major", 0), d.get("minor", 0),
                          d.get("fileMode", 0o666), d.get("uid", 0), d.get("gid", 0), bind=bind)
        dfd = rootfs.mkdir_all(rootfd, "/dev")
        try:
            links = list(SYMLINKS)
            if os.path.exists("/proc/kcore"):
                links.append(("/proc/kcore", "/dev/core"))
            for target, link in links:
                try:
                    os.symlink(target, link[5:], dir_fd=dfd)
                except FileExistsError:
                    pass
            try:
                os.unlink("ptmx", dir_fd=dfd)
            except FileNotFoundError:
                pass
            except IsADirectoryError:
                os.rmdir("ptmx", dir_fd=dfd)
            os.symlink("pts/ptmx", "ptmx", dir_fd=dfd)
            if terminal:
                try:
                    os.close(os.open("console", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                                     | os.O_NOFOLLOW, 0o600, dir_fd=dfd))
                except FileExistsError:
                    pass
        finally:
            os.close(dfd)
    finally:
        os.umask(old)
