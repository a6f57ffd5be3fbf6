"""The container's root filesystem, set up by init inside its new mount namespace.

Every mount target is resolved under the rootfs with openat2(RESOLVE_IN_ROOT) and mounted onto
`/proc/self/fd/N` of the resulting O_PATH fd, so a symlink in the rootfs (`/proc -> /host/x`)
can never make a mount land outside it. procfs and sysfs targets must not be symlinks at all.
"""

from __future__ import annotations

import os
import stat

from berth.errors import InvalidArgument
from berth.runtime import mountopts as mo_
from berth.sys import linux

O_PATH = os.O_PATH | os.O_CLOEXEC
_ST_KEEP = 1 | 2 | 4 | 8 | 1024 | 2048  # statvfs flags that equal their MS_* value
_ST_RELATIME = 4096


def fdpath(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def _resolve(rootfd: int, path: str, flags: int = O_PATH, *, no_symlinks: bool = False) -> int:
    resolve = linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS
    if no_symlinks:
        resolve |= linux.RESOLVE_NO_SYMLINKS
    return linux.openat2(rootfd, path.lstrip("/") or ".", flags, 0, resolve)


def mkdir_all(rootfd: int, path: str, mode: int = 0o755, _depth: int = 0) -> int:
    """Create path (and parents) under the root; return an O_PATH fd on the directory.

    A dangling symlink on the way is followed *inside* the root: its target is created there.
    """
    if _depth > 40:
        raise OSError(40, f"mkdir {path}: too many levels of symbolic links")
    parts = [p for p in path.split("/") if p and p != "."]
    cur = os.dup(rootfd)
    try:
        for i, name in enumerate(parts):
            sub = "/".join(parts[: i + 1])
            try:
                nfd = _resolve(rootfd, sub, O_PATH | os.O_DIRECTORY)
            except FileNotFoundError:
                try:
                    os.mkdir(name, mode, dir_fd=cur)
                except FileExistsError:
                    try:
                        target = os.readlink(name, dir_fd=cur)
                    except OSError:
                        target = None
                    if target is not None:
                        base = "/".join(parts[:i])
                        dest = target if target.startswith("/") else base + "/" + target
                        os.close(mkdir_all(rootfd, dest, mode, _depth + 1))
                except OSError as e:
                    raise OSError(e.errno, f"mkdir {path}: {e.strerror}") from None
                nfd = _resolve(rootfd, sub, O_PATH | os.O_DIRECTORY)
            os.close(cur)
            cur = nfd
    except BaseException:
        os.close(cur)
        raise
    return cur


def open_file(rootfd: int, path: str, *, create: bool = True) -> int:
    """O_PATH fd on a non-directory at path under the root, creating an empty file if missing."""
    try:
        return _resolve(rootfd, path)
    except FileNotFoundError:
        if not create:
            raise
    parent, _, name = path.rstrip("/").rpartition("/")
    pfd = mkdir_all(rootfd, parent)
    try:
        try:
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                             0o644, dir_fd=pfd))
        except FileExistsError:
            pass
    finally:
        os.close(pfd)
    return _resolve(rootfd, path)


def _locked_flags(path: str) -> int:
    """Flags of the mount at path that a bind remount must keep (they may be locked in a userns)."""
    f = os.statvfs(path).f_flag
    return (f & _ST_KEEP) | (mo_.MS_RELATIME if f & _ST_RELATIME else 0)


def _mount(src: str | None, fd: int, fstype: str | None, flags: int, data: str | None, dest: str) -> None:
    try:
        linux.mount(src, fdpath(fd), fstype, flags, data)
    except OSError as e:
        raise OSError(e.errno, f"mount {fstype or src or ''} on {dest}: {os.strerror(e.errno)}") from None


def _mount_setattr(fd: int, attr_set: int, attr_clr: int, dest: str) -> None:
    import ctypes
    import struct

    buf = ctypes.create_string_buffer(struct.pack("QQQQ", attr_set, attr_clr, 0, 0), 32)
    ret = linux.libc().syscall(linux.SYS_MOUNT_SETATTR, fd, b"", linux.AT_EMPTY_PATH | linux.AT_RECURSIVE,
                               buf, ctypes.c_size_t(32))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount_setattr on {dest}: {os.strerror(err)}")


class RootfsSetup:
    """Mounts for one container, performed before pivot_root (rootfs is a host path)."""

    def __init__(self, spec: dict, bundle: str, *, userns: bool, cgroupns: bool) -> None:
        self.spec = spec
        self.bundle = bundle
        self.rootfs = spec["root"]["path"]
        self.userns = userns
        self.cgroupns = cgroupns
        self.rootfd = -1

    # -- top level ------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Propagation, self-bind of the rootfs, every spec mount, /dev set-up."""
        linux_cfg = self.spec.get("linux") or {}
        prop = mo_.PROPAGATION.get(linux_cfg.get("rootfsPropagation") or "", mo_.MS_SLAVE | mo_.MS_REC)
        linux.mount(None, "/", None, prop)
        if prop & mo_.MS_SHARED:
            _parent_mount_private(self.rootfs)  # pivot_root refuses a shared parent
        linux.mount(self.rootfs, self.rootfs, "bind", mo_.MS_BIND | mo_.MS_REC)
        self.rootfd = os.open(self.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        mounts = self.spec.get("mounts") or []
        for m in mounts:
            self.mount_one(m)
        if not any(m.get("destination", "").rstrip("/") == "/dev" and
                   (m.get("type") == "bind" or "bind" in (m.get("options") or [])
                    or "rbind" in (m.get("options") or [])) for m in mounts):
            from berth.runtime import devices

            terminal = bool((self.spec.get("process") or {}).get("terminal"))
            devices.setup_dev(self.rootfd, linux_cfg.get("devices") or [], bind=self.userns,
                              terminal=terminal)
        cwd = (self.spec.get("process") or {}).get("cwd") or "/"
        try:
            os.close(mkdir_all(self.rootfd, cwd))
        except OSError:
            pass  # the user may not be able to create it; chdir reports the error later

    def mount_one(self, m: dict) -> None:
        dest = m["destination"]
        fstype = m.get("type") or ""
        opts = mo_.parse_options(m.get("options") or [])
        if fstype == "bind":
            opts.flags |= mo_.MS_BIND
        source = m.get("source") or fstype or "none"
        if opts.flags & mo_.MS_BIND:
            self._bind(source, dest, opts)
        elif fstype == "cgroup":
            self._cgroup(dest, opts)
        else:
            nosym = fstype in ("proc", "sysfs")
            try:
                fd = mkdir_all(self.rootfd, dest) if not nosym else self._nosym_dir(dest)
            except OSError as e:
                raise OSError(e.errno, f"mount destination {dest}: {e.strerror}") from None
            try:
                flags = opts.flags & ~(mo_.MS_REMOUNT)
                if fstype == "mqueue" and self.userns:
                    fstype = "mqueue"
                _mount(source, fd, fstype, flags, ",".join(opts.data) or None, dest)
            finally:
                os.close(fd)
            self._after(dest, opts)

    def _nosym_dir(self, dest: str) -> int:
        try:
            return _resolve(self.rootfd, dest, O_PATH | os.O_DIRECTORY, no_symlinks=True)
        except FileNotFoundError:
            parent = dest.rstrip("/").rpartition("/")[0]
            os.close(mkdir_all(self.rootfd, parent))
            try:
                return _resolve(self.rootfd, dest, O_PATH | os.O_DIRECTORY, no_symlinks=True)
            except FileNotFoundError:
                return mkdir_all(self.rootfd, dest)
        except OSError as e:
            if e.errno in (40, 20):  # ELOOP, ENOTDIR: a symlink (or not a directory)
                raise InvalidArgument(f"mount destination {dest} in the rootfs is a symlink or not a "
                                      "directory; refusing to mount procfs/sysfs there") from None
            raise

    def _bind(self, source: str, dest: str, opts: mo_.MountOptions) -> None:
        if not os.path.isabs(source):
            source = os.path.join(self.bundle, source)
        try:
            st = os.stat(source)
        except OSError as e:
            raise OSError(e.errno, f"bind mount source {source}: {e.strerror}") from None
        fd = mkdir_all(self.rootfd, dest) if stat.S_ISDIR(st.st_mode) else open_file(self.rootfd, dest)
        try:
            _mount(source, fd, None, mo_.MS_BIND | (opts.flags & mo_.MS_REC), None, dest)
        finally:
            os.close(fd)
        extra = opts.flags & ~(mo_.MS_BIND | mo_.MS_REC | mo_.MS_REMOUNT)
        if extra or opts.clear:
            fd = _resolve(self.rootfd, dest)
            try:
                p = fdpath(fd)
                keep = _locked_flags(p) if self.userns else 0
                flags = (keep | extra) & ~opts.clear
                _mount(None, fd, None, mo_.MS_BIND | mo_.MS_REMOUNT | flags, None, dest)
            finally:
                os.close(fd)
        self._after(dest, opts)

    def _after(self, dest: str, opts: mo_.MountOptions) -> None:
        if not opts.propagation and not (opts.attr_set or opts.attr_clr):
            return
        fd = _resolve(self.rootfd, dest)
        try:
            for p in opts.propagation:
                _mount(None, fd, None, p, None, dest)
            if opts.attr_set or opts.attr_clr:
                _mount_setattr(fd, opts.attr_set, opts.attr_clr, dest)
        finally:
            os.close(fd)

    # -- cgroup filesystem --------------------------------------------------------------------
    def _cgroup(self, dest: str, opts: mo_.MountOptions) -> None:
        flags = opts.flags & (mo_.MS_NOSUID | mo_.MS_NODEV | mo_.MS_NOEXEC | mo_.MS_RDONLY)
        hier = _cgroup_hierarchies()
        if hier is None:  # pure v2
            fd = mkdir_all(self.rootfd, dest)
            try:
                if self.cgroupns:
                    _mount("cgroup2", fd, "cgroup2", flags, None, dest)
                else:
                    _mount("/sys/fs/cgroup" + _own_cgroup("")[0], fd, None, mo_.MS_BIND | mo_.MS_REC,
                           None, dest)
                    self._remount_ro(dest, flags)
            finally:
                os.close(fd)
            return
        fd = mkdir_all(self.rootfd, dest)
        try:
            _mount("tmpfs", fd, "tmpfs", flags & ~mo_.MS_RDONLY, "mode=755", dest)
        finally:
            os.close(fd)
        own = _own_cgroup(None)
        for ctrls, (mountpoint, fstype) in hier.items():
            sub = dest.rstrip("/") + "/" + os.path.basename(mountpoint)
            path = own.get(ctrls)
            if path is None:
                continue
            fd = mkdir_all(self.rootfd, sub)
            try:
                if self.cgroupns:
                    if fstype == "cgroup2":
                        _mount("cgroup2", fd, "cgroup2", flags, None, sub)
                    else:
                        data = ",".join(c if not c.startswith("name=") else c for c in ctrls.split(","))
                        if ctrls.startswith("name="):
                            data = "none," + data
                        _mount("cgroup", fd, "cgroup", flags, data, sub)
                else:
                    _mount(mountpoint + path, fd, None, mo_.MS_BIND, None, sub)
            finally:
                os.close(fd)
            if not self.cgroupns:
                self._remount_ro(sub, flags)
        if flags & mo_.MS_RDONLY:
            fd = _resolve(self.rootfd, dest)
            try:
                _mount(None, fd, None, mo_.MS_REMOUNT | flags, "mode=755", dest)
            finally:
                os.close(fd)

    def _remount_ro(self, dest: str, flags: int) -> None:
        fd = _resolve(self.rootfd, dest)
        try:
            keep = _locked_flags(fdpath(fd))
            _mount(None, fd, None, mo_.MS_BIND | mo_.MS_REMOUNT | keep | flags, None, dest)
        finally:
            os.close(fd)


def _parent_mount_private(path: str) -> None:
    """Make the mount that contains path private if it is shared (as runc's rootfsParentMountPrivate)."""
    best, shared = "", False
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" - ")[0].split()
            mp = fields[4]
            if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
                best, shared = mp, any(o.startswith("shared:") for o in fields[6:])
    if best and shared:
        linux.mount(None, best, None, mo_.MS_PRIVATE)


def _cgroup_hierarchies() -> dict[str, tuple[str, str]] | None:
    """{controllers as in /proc/self/cgroup: (host mount point, fstype)} on v1/hybrid, None on pure v2."""
    out: dict[str, tuple[str, str]] = {}
    v2 = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields = pre.split()
            fstype, _src, superopts = (post.split() + ["", "", ""])[:3]
            mp = fields[4]
            if fstype == "cgroup":
                known = [o for o in superopts.split(",") if o not in ("rw", "ro") and
                         not o.startswith(("release_agent", "clone_children", "noprefix", "xattr",
                                           "cpuset_v2_mode", "favordynmods"))]
                out.setdefault(",".join(sorted(known)), (mp, fstype))
            elif fstype == "cgroup2":
                v2 = mp
    if not out:
        return None
    # hybrid: the controller-less cgroup2 tree (/sys/fs/cgroup/unified) is not exposed, as runc
    del v2
    return out


def _own_cgroup(_unused: str | None):
    """{sorted controllers: path} of this process from /proc/self/cgroup."""
    res: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            res[",".join(sorted(ctrls.split(","))) if ctrls else ""] = path
    if _unused is not None:
        return res.get(_unused, "/"), res
    return res


# -- after pivot_root ---------------------------------------------------------------------------
def pivot(rootfs: str, *, no_pivot: bool = False) -> None:
    """Make rootfs the root: pivot_root(".", ".") then detach the old root (or MS_MOVE + chroot)."""
    if no_pivot:
        os.chdir(rootfs)
        linux.mount(rootfs, "/", None, linux.MS_MOVE)
        os.chroot(".")
        os.chdir("/")
        return
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new)
        linux.pivot_root(".", ".")
        os.fchdir(old)
        linux.mount(None, ".", None, linux.MS_SLAVE | linux.MS_REC)
        linux.umount(".", linux.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old)
        os.close(new)


def open_devnull() -> int:
    """O_PATH fd of this root's /dev/null, checked to be char device 1:3 and not a symlink (used for
    masks; a bind source must be in our mount namespace, so after pivot_root the container's)."""
    fd = os.open("/dev/null", O_PATH | os.O_NOFOLLOW)
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
        os.close(fd)
        raise InvalidArgument("/dev/null in the container is not the null device; refusing to mask with it")
    return fd


def mask_paths(paths: list[str], devnull_fd: int) -> None:
    """/dev/null over files, an empty read-only tmpfs over directories; missing paths are skipped."""
    for p in paths:
        try:
            fd = os.open(p, O_PATH | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError):
            continue
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                _mount("tmpfs", fd, "tmpfs", linux.MS_RDONLY, None, p)
            elif not stat.S_ISLNK(st.st_mode):
                _mount(fdpath(devnull_fd), fd, None, linux.MS_BIND, None, p)
        finally:
            os.close(fd)


def readonly_paths(paths: list[str]) -> None:
    """Bind each existing path onto itself and remount it read-only (keeping its other flags)."""
    for p in paths:
        try:
            fd = os.open(p, O_PATH | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError):
            continue
        try:
            _mount(fdpath(fd), fd, None, linux.MS_BIND | linux.MS_REC, None, p)
        finally:
            os.close(fd)
        fd = os.open(p, O_PATH | os.O_NOFOLLOW)
        try:
            keep = _locked_flags(fdpath(fd))
            _mount(None, fd, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | keep, None, p)
        finally:
            os.close(fd)


def readonly_root() -> None:
    keep = _locked_flags("/")
    linux.mount(None, "/", None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | keep)
