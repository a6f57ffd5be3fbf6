"""Copy-up: fill a new, empty volume with the image's content at the mount destination.

The image path is resolved inside the rootfs with ``openat2(RESOLVE_IN_ROOT)``, so a symlink in
the image (``/data -> /etc`` or ``-> ../../..``) resolves within the rootfs and never reaches host
files. The tree is then walked fd-relatively with ``O_NOFOLLOW``: symlinks are copied as links,
hardlinks stay linked, devices and fifos are recreated; ownership, mode, xattrs and times are
preserved. On failure the volume is emptied again.
"""

from __future__ import annotations

import errno
import os
import stat

from berth.sys import linux
from berth.volumes.fsutil import clear_dir

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SKIP_XATTR_PREFIXES = ("trusted.overlay.", "system.nfs4")
_XATTR_UNSUPPORTED = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM)


def copy_up(rootfs: str | int, path: str, volume_dir: str) -> bool:
    """Copy the directory at ``path`` inside ``rootfs`` (a path or an open directory fd) into
    ``volume_dir`` if that is empty; the volume's root takes the source's owner and mode.

    Returns True when content was copied; False when the volume is not empty or the image has
    no directory at path. OSErrors propagate after the partial copy has been removed.
    """
    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if isinstance(rootfs, str) else -1
    try:
        try:
            src = linux.open_in_root(rootfs if root_fd < 0 else root_fd, path,  # type: ignore[arg-type]
                                     os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                return False
            raise
        try:
            dst = os.open(volume_dir, _DIR_FLAGS)
            try:
                if os.listdir(dst):
                    return False
                try:
                    _copy_dir(src, dst, dst, "", {})
                    st = os.fstat(src)
                    os.chown(dst, st.st_uid, st.st_gid)
                    os.chmod(dst, stat.S_IMODE(st.st_mode))
                except BaseException:
                    clear_dir(dst, where=volume_dir)
                    raise
                return True
            finally:
                os.close(dst)
        finally:
            os.close(src)
    finally:
        if root_fd >= 0:
            os.close(root_fd)


def copy_tree(src_dir: str, dst_dir: str) -> None:
    """Copy the contents of src_dir into the existing dst_dir (no symlink followed)."""
    s = os.open(src_dir, _DIR_FLAGS)
    try:
        d = os.open(dst_dir, _DIR_FLAGS)
        try:
            _copy_dir(s, d, d, "", {})
        finally:
            os.close(d)
    finally:
        os.close(s)


def _copy_dir(sfd: int, dfd: int, droot: int, rel: str, links: dict[tuple[int, int], str]) -> None:
    for name in sorted(os.listdir(sfd)):
        st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
        mode = st.st_mode
        relname = f"{rel}/{name}" if rel else name
        if not stat.S_ISDIR(mode) and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            if key in links:
                os.link(links[key], name, src_dir_fd=droot, dst_dir_fd=dfd, follow_symlinks=False)
                continue
            links[key] = relname
        if stat.S_ISDIR(mode):
            os.mkdir(name, 0o700, dir_fd=dfd)
            cs = os.open(name, _DIR_FLAGS, dir_fd=sfd)
            try:
                cd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
                try:
                    _copy_dir(cs, cd, droot, relname, links)
                    _meta_fd(cs, cd, st)
                finally:
                    os.close(cd)
            finally:
                os.close(cs)
        elif stat.S_ISREG(mode):
            fs = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=sfd)
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o600, dir_fd=dfd)
                try:
                    _copy_data(fs, fd, st.st_size)
                    _meta_fd(fs, fd, st)
                finally:
                    os.close(fd)
            finally:
                os.close(fs)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=sfd), name, dir_fd=dfd)
            _meta_link(sfd, dfd, name, st)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(name, stat.S_IFMT(mode) | 0o600, st.st_rdev, dir_fd=dfd)
            _meta_node(sfd, dfd, name, st)
        # sockets are not copied (they cannot be recreated meaningfully)


def _copy_data(src: int, dst: int, size: int) -> None:
    done = 0
    try:
        while done < size:
            n = os.copy_file_range(src, dst, min(size - done, 1 << 30))
            if n == 0:
                return
            done += n
        return
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    os.lseek(src, done, os.SEEK_SET)
    os.lseek(dst, done, os.SEEK_SET)
    while chunk := os.read(src, 1 << 20):
        os.write(dst, chunk)


def _copy_xattrs(src: int | str, dst: int | str, follow: bool = True) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=follow)
    except OSError as e:
        if e.errno in _XATTR_UNSUPPORTED:
            return
        raise
    for key in names:
        if key.startswith(_SKIP_XATTR_PREFIXES):
            continue
        try:
            os.setxattr(dst, key, os.getxattr(src, key, follow_symlinks=follow), follow_symlinks=follow)
        except OSError as e:
            if e.errno not in _XATTR_UNSUPPORTED:
                raise


def _meta_fd(sfd: int, dfd: int, st: os.stat_result) -> None:
    _chown(lambda: os.chown(dfd, st.st_uid, st.st_gid))
    _copy_xattrs(sfd, dfd)
    os.chmod(dfd, stat.S_IMODE(st.st_mode))
    os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _meta_link(sfd: int, dfd: int, name: str, st: os.stat_result) -> None:
    _chown(lambda: os.chown(name, st.st_uid, st.st_gid, dir_fd=dfd, follow_symlinks=False))
    _copy_xattrs(f"/proc/self/fd/{sfd}/{name}", f"/proc/self/fd/{dfd}/{name}", follow=False)
    os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dfd, follow_symlinks=False)


def _meta_node(sfd: int, dfd: int, name: str, st: os.stat_result) -> None:
    # the node was just created by us in the volume; it is not a symlink
    _chown(lambda: os.chown(name, st.st_uid, st.st_gid, dir_fd=dfd, follow_symlinks=False))
    _copy_xattrs(f"/proc/self/fd/{sfd}/{name}", f"/proc/self/fd/{dfd}/{name}", follow=False)
    os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=dfd)
    os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dfd, follow_symlinks=False)


def _chown(fn) -> None:
    try:
        fn()
    except PermissionError:
        if os.geteuid() == 0:
            raise  # unprivileged callers keep their own ownership, as cp -a does
