"""The Engine's container operations beyond the lifecycle: changes (diff), export, archive
(`cp` both ways), stats, update, prune.

Filesystem work on a container happens on its rootfs resolved fd-relatively (RESOLVE_IN_ROOT),
with a running container frozen for the duration (the cp symlink-exchange race,
CVE-2018-15664); archives are decompressed in-process, never by a helper binary.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Iterator

from berth.containers.state import Status
from berth.errors import BerthError, Conflict, InvalidArgument, NotFound
from berth.sys import linux

# Go's os.FileMode bits as docker's path-stat header uses them
_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27
_GO_DEVICE = 1 << 26
_GO_PIPE = 1 << 25
_GO_SOCKET = 1 << 24
_GO_SETUID = 1 << 23
_GO_SETGID = 1 << 22
_GO_CHARDEV = 1 << 21
_GO_STICKY = 1 << 20


def go_mode(st: os.stat_result) -> int:
    m = st.st_mode & 0o777
    if stat.S_ISDIR(st.st_mode):
        m |= _GO_DIR
    elif stat.S_ISLNK(st.st_mode):
        m |= _GO_SYMLINK
    elif stat.S_ISBLK(st.st_mode):
        m |= _GO_DEVICE
    elif stat.S_ISCHR(st.st_mode):
        m |= _GO_DEVICE | _GO_CHARDEV
    elif stat.S_ISFIFO(st.st_mode):
        m |= _GO_PIPE
    elif stat.S_ISSOCK(st.st_mode):
        m |= _GO_SOCKET
    if st.st_mode & stat.S_ISUID:
        m |= _GO_SETUID
    if st.st_mode & stat.S_ISGID:
        m |= _GO_SETGID
    if st.st_mode & stat.S_ISVTX:
        m |= _GO_STICKY
    return m


class ContainerOps:
    """Mixed into Engine."""

    # -- a view of the container's filesystem ---------------------------------------------
    @contextlib.contextmanager
    def _container_root(self, c) -> Iterator[str]:
        """The container's merged rootfs: the live mount when running (frozen meanwhile), else a
        temporary mount of its snapshot."""
        from berth.mount import is_mountpoint, mount_all, unmount_all

        live = self._rootfs(c)
        if c.state.status in (Status.RUNNING, Status.PAUSED) and is_mountpoint(live):
            froze = False
            if c.state.status == Status.RUNNING:
                try:
                    self._freeze(c, True)
                    froze = True
                except Exception:  # noqa: BLE001 - no freezer: go on without
                    froze = False
            try:
                yield live
            finally:
                if froze:
                    self._freeze(c, False)
            return
        tmp = tempfile.mkdtemp(prefix="view-", dir=self._tmp_root())
        try:
            mount_all(self.snapshotter.mounts(c.snapshot_key), tmp)
            try:
                yield tmp
            finally:
                unmount_all(tmp)
        finally:
            os.rmdir(tmp)

    # -- changes ------------------------------------------------------------------------------
    def container_changes(self, id: str) -> list[dict]:
        """`docker diff`: [{"Path", "Kind"}] with Kind 0 modified, 1 added, 2 deleted."""
        c = self.containers.get(id)
        sn = self.snapshotter
        upper = sn.upper_dir(c.snapshot_key)
        lowers = sn.lower_dirs(c.snapshot_key)
        out: list[dict] = []
        if sn.whiteout_mode == "overlay":
            self._walk_overlay(upper, lowers, "", out)
        else:
            self._walk_compare(upper, lowers[0] if lowers else None, "", out)
        out.sort(key=lambda d: d["Path"])
        return out

    def _walk_overlay(self, upper: str, lowers: list[str], rel: str, out: list[dict]) -> None:
        try:
            names = sorted(os.listdir(os.path.join(upper, rel) if rel else upper))
        except OSError:
            return
        for name in names:
            r = f"{rel}/{name}" if rel else name
            st = os.lstat(os.path.join(upper, r))
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out.append({"Path": "/" + r, "Kind": 2})
                continue
            in_lower = any(os.path.lexists(os.path.join(lo, r)) for lo in lowers)
            out.append({"Path": "/" + r, "Kind": 0 if in_lower else 1})
            if stat.S_ISDIR(st.st_mode):
                if in_lower:
                    self._walk_overlay(upper, lowers, r, out)
                else:
                    self._all_added(os.path.join(upper, r), "/" + r, out)

    def _all_added(self, path: str, rel: str, out: list[dict]) -> None:
        for root, dirs, files in os.walk(path):
            base = rel + root[len(path) :]
            for n in sorted(dirs + files):
                out.append({"Path": f"{base}/{n}", "Kind": 1})

    def _walk_compare(self, upper: str, lower: str | None, rel: str, out: list[dict]) -> None:
        up = os.path.join(upper, rel) if rel else upper
        lo = (os.path.join(lower, rel) if rel else lower) if lower else None
        names_u = set(os.listdir(up)) if os.path.isdir(up) else set()
        names_l = set(os.listdir(lo)) if lo and os.path.isdir(lo) and not os.path.islink(lo) else set()
        for name in sorted(names_u | names_l):
            r = f"{rel}/{name}" if rel else name
            if name not in names_u:
                out.append({"Path": "/" + r, "Kind": 2})
                continue
            su = os.lstat(os.path.join(upper, r))
            if name not in names_l:
                out.append({"Path": "/" + r, "Kind": 1})
                if stat.S_ISDIR(su.st_mode):
                    self._all_added(os.path.join(upper, r), "/" + r, out)
                continue
            sl = os.lstat(os.path.join(lower, r))
            changed = (
                su.st_mode != sl.st_mode
                or su.st_uid != sl.st_uid
                or su.st_gid != sl.st_gid
                or (
                    not stat.S_ISDIR(su.st_mode)
                    and (su.st_size != sl.st_size or su.st_mtime_ns != sl.st_mtime_ns)
                )
            )
            if stat.S_ISDIR(su.st_mode) and stat.S_ISDIR(sl.st_mode):
                before = len(out)
                self._walk_compare(upper, lower, r, out)
                if changed or len(out) > before:
                    out.insert(before, {"Path": "/" + r, "Kind": 0})
            elif changed:
                out.append({"Path": "/" + r, "Kind": 0})

    # -- export ---------------------------------------------------------------------------
    async def export_container(self, id: str) -> AsyncIterator[bytes]:
        from berth.archive import write_tree

        c = self.containers.get(id)
        spool = tempfile.TemporaryFile(dir=self._tmp_root())

        def work() -> None:
            with self._container_root(c) as root:
                write_tree(root, spool)

        try:
            await asyncio.to_thread(work)
            spool.seek(0)
            while True:
                chunk = await asyncio.to_thread(spool.read, 1 << 20)
                if not chunk:
                    break
                yield chunk
        finally:
            spool.close()
        self.bus.emit("container", "export", c.id, {"name": c.name, "image": c.image_name})

    # -- archive (docker cp) --------------------------------------------------------------
    def _resolve(self, root: str, path: str, *, follow: bool = True) -> tuple[int, os.stat_result, str]:
        """Open path inside root (symlinks resolved inside it); returns (O_PATH fd, lstat, name)."""
        if not path:
            raise InvalidArgument("path is required")
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            norm = os.path.normpath("/" + path)
            flags = os.O_PATH | (0 if follow else os.O_NOFOLLOW)
            try:
                fd = linux.open_in_root(root_fd, norm, flags)
            except FileNotFoundError:
                raise NotFound(f"Could not find the file {path} in container") from None
            except OSError as e:
                raise InvalidArgument(f"cannot resolve {path}: {e.strerror}") from None
        finally:
            os.close(root_fd)
        st = os.fstat(fd)  # an O_PATH fd: fstat gives the object itself (the link, with O_NOFOLLOW)
        return fd, st, os.path.basename(norm.rstrip("/")) or "/"

    def archive_stat(self, id: str, path: str) -> dict:
        """Docker's path stat (lstat semantics; a symlink reports its target in linkTarget)."""
        c = self.containers.get(id)
        with self._container_root(c) as root:
            fd, st, name = self._resolve(root, path, follow=False)
            os.close(fd)
            link = _readlink_in(root, path) if stat.S_ISLNK(st.st_mode) else ""
        return {
            "name": name,
            "size": st.st_size,
            "mode": go_mode(st),
            "mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime)),
            "linkTarget": link,
        }

    @staticmethod
    def stat_header(info: dict) -> str:
        return base64.b64encode(json.dumps(info).encode()).decode()

    async def archive_get(self, id: str, path: str) -> tuple[dict, AsyncIterator[bytes]]:
        """(path stat, tar stream) of path, its top entry named by the path's basename."""
        c = self.containers.get(id)
        info = await asyncio.to_thread(self.archive_stat, c.id, path)
        spool = tempfile.TemporaryFile(dir=self._tmp_root())

        def work() -> None:
            with self._container_root(c) as root:
                fd, st, name = self._resolve(root, path)
                try:
                    _tar_path(fd, st, name, spool)
                finally:
                    os.close(fd)

        await asyncio.to_thread(work)
        spool.seek(0)

        async def gen() -> AsyncIterator[bytes]:
            try:
                while True:
                    chunk = await asyncio.to_thread(spool.read, 1 << 20)
                    if not chunk:
                        return
                    yield chunk
            finally:
                spool.close()

        return info, gen()

    async def archive_put(
        self,
        id: str,
        path: str,
        source: AsyncIterator[bytes],
        *,
        no_overwrite_dir_non_dir: bool = False,
        copy_uid_gid: bool = False,
    ) -> None:
        """Extract a tar (plain, gzip or zstd, decompressed in-process) into directory path."""
        from berth.archive import Limits, apply_layer

        c = self.containers.get(id)
        spool = await self._spool(source)

        def work() -> None:
            with self._container_root(c) as root:
                fd, st, _ = self._resolve(root, path)
                try:
                    if not stat.S_ISDIR(st.st_mode):
                        raise InvalidArgument(f"extraction point is not a directory: {path}")
                    if c.host_config.get("ReadonlyRootfs"):
                        raise Conflict("container rootfs is marked read-only")
                    # the canonical host path of the directory resolved inside the rootfs (no
                    # symlinks left in it; the container is frozen, so nothing can swap one in)
                    target = os.readlink(f"/proc/self/fd/{fd}")
                    if not (target == root or target.startswith(root.rstrip("/") + "/")):
                        raise InvalidArgument(f"{path} resolves outside the container")
                    apply_layer(spool, target, whiteout_mode="delete", limits=Limits())
                finally:
                    os.close(fd)

        try:
            await asyncio.to_thread(work)
        finally:
            spool.close()

    # -- stats, update, prune --------------------------------------------------------------
    def _cgroup(self, c):
        from berth.runtime.cgroups import manager_for

        return manager_for(f"/{self.cfg.cgroup_parent}/{c.id}", c.id)

    def container_stats(self, id: str) -> dict:
        """One ContainerStatsResponse (the CLI computes CPU % from two of them)."""
        c = self.containers.get(id)
        now = time.time()
        base = {
            "read": _rfc(now),
            "preread": "0001-01-01T00:00:00Z",
            "name": "/" + c.name,
            "id": c.id,
            "pids_stats": {},
            "blkio_stats": {},
            "num_procs": 0,
            "storage_stats": {},
            "cpu_stats": {
                "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                "throttling_data": {},
            },
            "precpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
            "memory_stats": {},
            "networks": {},
        }
        if c.state.status not in (Status.RUNNING, Status.PAUSED):
            return base
        try:
            s = self._cgroup(c).stats()
        except Exception:  # noqa: BLE001
            return base
        cpu = s.get("cpu", {}).get("usage", {})
        mem = s.get("memory", {})
        usage = mem.get("usage", {})
        base["cpu_stats"] = {
            "cpu_usage": {
                "total_usage": cpu.get("total", 0),
                "percpu_usage": cpu.get("percpu") or None,
                "usage_in_kernelmode": cpu.get("kernel", 0),
                "usage_in_usermode": cpu.get("user", 0),
            },
            "system_cpu_usage": _system_cpu_ns(),
            "online_cpus": os.cpu_count(),
            "throttling_data": {
                "periods": s.get("cpu", {}).get("throttling", {}).get("periods", 0),
                "throttled_periods": s.get("cpu", {}).get("throttling", {}).get("throttled_periods", 0),
                "throttled_time": s.get("cpu", {}).get("throttling", {}).get("throttled_time", 0),
            },
        }
        raw = mem.get("raw") or mem.get("stats") or {}
        base["memory_stats"] = {
            "usage": usage.get("usage", 0),
            "max_usage": usage.get("max", 0),
            "limit": usage.get("limit", 0) or _mem_total(),
            "stats": raw,
            "failcnt": usage.get("failcnt", 0),
        }
        pids = s.get("pids", {})
        base["pids_stats"] = {
            "current": pids.get("current", 0),
            **({"limit": pids["limit"]} if pids.get("limit") else {}),
        }
        blk = s.get("blkio", {})
        base["blkio_stats"] = {"io_service_bytes_recursive": blk.get("ioServiceBytesRecursive") or None}
        base["num_procs"] = 0
        return base

    async def stats(self, id: str, stream: bool = True, one_shot: bool = False) -> AsyncIterator[dict]:
        prev = None
        while True:
            cur = await asyncio.to_thread(self.container_stats, id)
            if prev is not None:
                cur["precpu_stats"] = prev["cpu_stats"]
                cur["preread"] = prev["read"]
            yield cur
            if not stream:
                return
            prev = cur
            await asyncio.sleep(1.0)
            c = self.containers.get(id)
            if c.state.status not in (Status.RUNNING, Status.PAUSED):
                return

    def update_container(self, id: str, resources: dict) -> dict:
        """`docker update`: new limits applied to the running cgroup and kept in HostConfig."""
        from berth.engine import specgen

        c = self.containers.get(id)
        allowed = {
            "Memory",
            "MemorySwap",
            "MemoryReservation",
            "CpuShares",
            "CpuQuota",
            "CpuPeriod",
            "NanoCpus",
            "CpusetCpus",
            "CpusetMems",
            "PidsLimit",
            "BlkioWeight",
            "RestartPolicy",
        }
        unknown = [k for k, v in resources.items() if v not in (None, 0, "", [], {}) and k not in allowed]
        if unknown:
            raise InvalidArgument(f"cannot update {', '.join(sorted(unknown))}")
        host = dict(c.host_config)
        for k in allowed:
            if resources.get(k) not in (None,):
                if k == "RestartPolicy" and not (resources[k] or {}).get("Name"):
                    continue
                host[k] = resources[k]
        if c.state.status in (Status.RUNNING, Status.PAUSED):
            res = specgen.resources({k: v for k, v in host.items() if k in allowed})
            if res:
                self._cgroup(c).update(res)
        c.host_config = host
        self.containers.save(c)
        self.bus.emit("container", "update", c.id, {"name": c.name, "image": c.image_name})
        return {"Warnings": []}

    async def prune_containers(self, filters: dict[str, list[str]] | None = None) -> dict:
        from berth.engine import views

        deleted, space = [], 0
        for c in list(self.containers.all()):
            if c.state.status not in (Status.EXITED, Status.CREATED, Status.DEAD):
                continue
            if filters and not views.matches(c, {k: v for k, v in filters.items() if k == "label"}):
                continue
            try:
                space += self.snapshotter.usage(c.snapshot_key).size
            except BerthError:
                pass
            try:
                await self.remove(c.id)
                deleted.append(c.id)
            except BerthError:
                continue
        self.bus.emit("container", "prune", "", {"reclaimed": str(space)})
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": space}


def _readlink_in(root: str, path: str) -> str:
    parent = os.path.dirname(os.path.normpath("/" + path))
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        pfd = linux.open_in_root(root_fd, parent, os.O_PATH | os.O_DIRECTORY)
    finally:
        os.close(root_fd)
    try:
        return os.readlink(os.path.basename(os.path.normpath(path)), dir_fd=pfd)
    finally:
        os.close(pfd)


def _tar_path(fd: int, st: os.stat_result, name: str, out) -> None:
    """Write a tar of the object behind an O_PATH fd, its top entry called name."""
    import tarfile

    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        _add(tf, fd, st, name)


def _add(tf, fd: int, st: os.stat_result, arcname: str) -> None:
    import tarfile

    ti = tarfile.TarInfo(arcname)
    ti.mode = st.st_mode & 0o7777
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.mtime = int(st.st_mtime)
    if stat.S_ISDIR(st.st_mode):
        ti.type = tarfile.DIRTYPE
        tf.addfile(ti)
        dfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for n in sorted(os.listdir(dfd)):
                cfd = os.open(n, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
                try:
                    cst = os.stat(n, dir_fd=dfd, follow_symlinks=False)
                    _add(tf, cfd, cst, f"{arcname}/{n}")
                finally:
                    os.close(cfd)
        finally:
            os.close(dfd)
    elif stat.S_ISREG(st.st_mode):
        ti.size = st.st_size
        rfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)  # reopens that very file
        with os.fdopen(rfd, "rb") as f:
            tf.addfile(ti, f)
    elif stat.S_ISLNK(st.st_mode):
        ti.type = tarfile.SYMTYPE
        ti.linkname = os.readlink("", dir_fd=fd)  # readlinkat(fd, "") on an O_PATH|O_NOFOLLOW fd
        tf.addfile(ti)
    elif stat.S_ISFIFO(st.st_mode):
        ti.type = tarfile.FIFOTYPE
        tf.addfile(ti)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        tf.addfile(ti)


def _rfc(ts: float) -> str:
    ns = int(ts * 1e9)
    s, n = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{n:09d}Z"


def _system_cpu_ns() -> int:
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:8]
    return sum(int(x) for x in parts) * (1_000_000_000 // os.sysconf("SC_CLK_TCK"))


def _mem_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0
