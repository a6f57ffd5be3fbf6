"""cgroup v1 manager: one directory per mounted hierarchy (cpu, cpuacct, cpuset, memory, ...)."""

from __future__ import annotations

import os
import posixpath
import time

from berth.errors import BerthError, Conflict, InvalidArgument, Unavailable
from berth.runtime.cgroups.fs import CgroupFS, parse_flat_keyed, remove_tree
from berth.runtime.cgroups.resources import Write, validate
from berth.runtime.cgroups.stats import stats_v1
from berth.runtime.cgroups.translate_v1 import translate_v1

TYPE_CHECKING = False  # no typing at run time: it costs start-up
if TYPE_CHECKING:
    from typing import Any

KNOWN_CONTROLLERS = ("cpuset", "cpu", "cpuacct", "memory", "devices", "freezer", "net_cls", "net_prio",
                     "blkio", "perf_event", "pids", "hugetlb", "rdma", "misc")
NAMED_SYSTEMD = "name=systemd"


def hierarchies(root: str) -> dict[str, str]:
    """Controller → hierarchy mount dir, from the directories under root.

    "cpu,cpuacct" (and symlinks to it) count for both; "systemd" is the name=systemd hierarchy.
    """
    out: dict[str, str] = {}
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return out
    for name in names:
        path = os.path.join(root, name)
        if not os.path.isdir(path) or name == "unified":
            continue
        real = os.path.join(root, os.path.basename(os.path.realpath(path)))
        if name == "systemd":
            out[NAMED_SYSTEMD] = real
            continue
        for c in name.split(","):
            if c in KNOWN_CONTROLLERS:
                out.setdefault(c, real)
    return out


class V1Manager:
    """Manage one container's cgroup across the v1 hierarchies; see `CgroupManager`."""

    version = "v1"

    def __init__(self, dirs: dict[str, str], mounts: dict[str, str], fs: CgroupFS | None = None) -> None:
        self._dirs = dict(dirs)
        self._mounts = dict(mounts)
        self.fs = fs or CgroupFS()

    def paths(self) -> dict[str, str]:
        return dict(self._dirs)

    def _unique_dirs(self) -> list[tuple[str, str]]:
        seen: set[str] = set()
        out = []
        for ctrl, d in self._dirs.items():
            if d not in seen:
                seen.add(d)
                out.append((ctrl, d))
        return out

    # lifecycle ---------------------------------------------------------------------------------

    def create(self) -> None:
        for ctrl, d in self._unique_dirs():
            mount = self._mounts[ctrl]
            rel = posixpath.relpath(d, mount)
            current = mount
            for part in ([] if rel == "." else rel.split("/")):
                parent, current = current, posixpath.join(current, part)
                self.fs.mkdir(current)
                if ctrl == "cpuset":
                    self._copy_cpuset(parent, current)

    def _copy_cpuset(self, parent: str, child: str) -> None:
        """A new v1 cpuset has empty cpus/mems and refuses tasks: inherit the parent's."""
        for name in ("cpuset.cpus", "cpuset.mems"):
            cur = self.fs.read_or_none(child, name)
            if cur is not None and not cur.strip():
                value = (self.fs.read_or_none(parent, name) or "").strip()
                if value:
                    self.fs.write(child, name, value)

    def add(self, pid: int) -> None:
        for _, d in self._unique_dirs():
            try:
                self.fs.write(d, "cgroup.procs", str(pid))
            except OSError as e:
                raise BerthError(f"cannot add pid {pid} to cgroup {d}: {e.strerror}") from None

    def exists(self) -> bool:
        return any(self.fs.exists(d) for _, d in self._unique_dirs())

    def destroy(self) -> None:
        failed = []
        for _, d in self._unique_dirs():
            try:
                remove_tree(self.fs, d)
            except OSError as e:
                failed.append(f"{d}: {e.strerror}")
        if failed:
            raise Conflict("cannot remove cgroup: " + "; ".join(failed))

    # resources ---------------------------------------------------------------------------------

    def apply(self, resources: dict[str, Any]) -> None:
        """Write OCI linux.resources; validation happens before the first write."""
        res = validate(resources)
        mem = res.get("memory") or {}
        mem_dir = self._dirs.get("memory")
        current_limit = None
        has_memsw = True
        if mem_dir:
            has_memsw = self.fs.exists(mem_dir, "memory.memsw.limit_in_bytes")
            if mem.get("limit") and mem.get("swap"):
                text = self.fs.read_or_none(mem_dir, "memory.limit_in_bytes")
                current_limit = int(text) if text and text.strip().lstrip("-").isdigit() else None
        if mem_dir and mem.get("checkBeforeUpdate") and (mem.get("limit") or 0) > 0:
            check_usage(mem["limit"], self.fs.read_or_none(mem_dir, "memory.usage_in_bytes"))
        blkio_dir = self._dirs.get("blkio")
        bfq = bool(blkio_dir) and not self.fs.exists(blkio_dir, "blkio.weight") and self.fs.exists(
            blkio_dir, "blkio.bfq.weight")
        self._write_all(translate_v1(res, current_limit=current_limit, has_memsw=has_memsw, bfq=bfq))

    update = apply

    def _write_all(self, writes: list[Write]) -> None:
        for w in writes:
            d = self._dirs.get(w.controller)
            if d is None:
                raise InvalidArgument(f"{w.field}: the {w.controller} cgroup controller is not available")
            try:
                self.fs.write(d, w.file, w.value)
            except FileNotFoundError:
                raise InvalidArgument(
                    f"{w.field} is not supported by this kernel ({w.file} is missing)") from None
            except OSError as e:
                raise InvalidArgument(f"{w.field}: writing {w.value!r} to {w.file}: {e.strerror}") from None

    # freezer -----------------------------------------------------------------------------------

    def _freezer(self) -> str:
        d = self._dirs.get("freezer")
        if d is None:
            raise Unavailable("the freezer cgroup controller is not available")
        return d

    def freeze(self, frozen: bool, timeout: float = 10.0) -> None:
        """Write FROZEN/THAWED and wait until freezer.state says so (re-writing while FREEZING)."""
        d = self._freezer()
        want = "FROZEN" if frozen else "THAWED"
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            self.fs.write(d, "freezer.state", want)
            if self.fs.read(d, "freezer.state").strip() == want:
                return
            if time.monotonic() >= deadline:
                if frozen:
                    self.fs.write(d, "freezer.state", "THAWED")
                raise Unavailable(f"cgroup {d} did not reach {want} within {timeout}s")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def frozen(self) -> bool:
        d = self._dirs.get("freezer")
        if d is None:
            return False
        return (self.fs.read_or_none(d, "freezer.state") or "").strip() == "FROZEN"

    # inspection --------------------------------------------------------------------------------

    def pids(self) -> list[int]:
        """Every pid in the cgroup and its descendants."""
        for ctrl in ("freezer", "pids", "memory", "devices", "cpu"):
            if ctrl in self._dirs:
                return _all_pids(self.fs, self._dirs[ctrl])
        uniq = self._unique_dirs()
        return _all_pids(self.fs, uniq[0][1]) if uniq else []

    def stats(self) -> dict[str, Any]:
        def read(ctrl: str, name: str) -> str | None:
            d = self._dirs.get(ctrl)
            if d is None:
                return None
            try:
                return self.fs.read_or_none(d, name)
            except OSError:
                return None
        return stats_v1(read)

    def oom_kill_count(self) -> int:
        d = self._dirs.get("memory")
        if d is None:
            return 0
        return parse_flat_keyed(self.fs.read_or_none(d, "memory.oom_control") or "").get("oom_kill", 0)


def check_usage(limit: int, usage_text: str | None) -> None:
    """memory.checkBeforeUpdate: refuse a limit below the current usage."""
    usage = int(usage_text) if usage_text and usage_text.strip().isdigit() else 0
    if limit < usage:
        raise InvalidArgument(f"linux.resources.memory.limit ({limit}) is below the current usage ({usage}) "
                              "and checkBeforeUpdate is set")


def _all_pids(fs: CgroupFS, top: str) -> list[int]:
    out = [int(x) for x in (fs.read_or_none(top, "cgroup.procs") or "").split()]
    for sub in fs.subdirs(top):
        out += _all_pids(fs, sub)
    return out
