"""cgroup v2 manager: one directory in the unified hierarchy; devices via an eBPF filter."""

from __future__ import annotations

import posixpath
import time

from berth.errors import BerthError, Conflict, InvalidArgument, Unavailable
from berth.runtime.cgroups.devices import FIELD as DEVICES_FIELD
from berth.runtime.cgroups.devices import Rule, parse_rules
from berth.runtime.cgroups.fs import CgroupFS, parse_flat_keyed, remove_tree
from berth.runtime.cgroups.manager_v1 import _all_pids, check_usage
from berth.runtime.cgroups.resources import validate
from berth.runtime.cgroups.stats import stats_v2
from berth.runtime.cgroups.translate_v2 import translate_v2

TYPE_CHECKING = False  # no typing at run time: it costs start-up
if TYPE_CHECKING:
    from typing import Any, Protocol

    class DeviceFilter(Protocol):
        def attach(self, cgroup_dir: str, rules: list[Rule]) -> None: ...


class V2Manager:
    """Manage one container's cgroup in a cgroup2 hierarchy; see `CgroupManager`."""

    version = "v2"

    def __init__(self, path: str, root: str, fs: CgroupFS | None = None,
                 device_filter: DeviceFilter | None = None) -> None:
        self._dir = path
        self._root = root.rstrip("/") or "/"
        self.fs = fs or CgroupFS()
        self._device_filter = device_filter

    def paths(self) -> dict[str, str]:
        return {"": self._dir}

    def create(self) -> None:
        """mkdir each level; enable every available controller in the levels above the leaf."""
        rel = posixpath.relpath(self._dir, self._root)
        parts = [] if rel == "." else rel.split("/")
        current = self._root
        for part in parts:
            self._enable_controllers(current)
            current = posixpath.join(current, part)
            self.fs.mkdir(current)

    def _enable_controllers(self, d: str) -> None:
        available = (self.fs.read_or_none(d, "cgroup.controllers") or "").split()
        if not available:
            return
        enabled = set((self.fs.read_or_none(d, "cgroup.subtree_control") or "").split())
        missing = [c for c in available if c not in enabled]
        if not missing:
            return
        try:
            self.fs.write(d, "cgroup.subtree_control", " ".join("+" + c for c in missing))
        except OSError:
            for c in missing:   # one by one, as runc: some may be refused (e.g. threaded mode)
                try:
                    self.fs.write(d, "cgroup.subtree_control", "+" + c)
                except OSError:
                    pass

    def add(self, pid: int) -> None:
        try:
            self.fs.write(self._dir, "cgroup.procs", str(pid))
        except OSError as e:
            raise BerthError(f"cannot add pid {pid} to cgroup {self._dir}: {e.strerror}") from None

    def exists(self) -> bool:
        return self.fs.exists(self._dir)

    def destroy(self) -> None:
        try:
            remove_tree(self.fs, self._dir)
        except OSError as e:
            raise Conflict(f"cannot remove cgroup {self._dir}: {e.strerror}") from None

    def apply(self, resources: dict[str, Any]) -> None:
        """Write OCI linux.resources; validation happens before the first write."""
        res = validate(resources)
        writes = translate_v2(res, bfq=self.fs.exists(self._dir, "io.bfq.weight"))
        mem = res.get("memory") or {}
        if mem.get("checkBeforeUpdate") and (mem.get("limit") or 0) > 0:
            check_usage(mem["limit"], self.fs.read_or_none(self._dir, "memory.current"))
        rules = parse_rules(res["devices"]) if res.get("devices") is not None else None
        for w in writes:
            try:
                self.fs.write(self._dir, w.file, w.value)
            except FileNotFoundError:
                raise InvalidArgument(f"{w.field} is not supported here "
                                      f"({w.file} is missing: controller not enabled?)") from None
            except OSError as e:
                raise InvalidArgument(f"{w.field}: writing {w.value!r} to {w.file}: {e.strerror}") from None
        if rules is not None:
            self._apply_devices(rules)

    update = apply

    def _apply_devices(self, rules: list[Rule]) -> None:
        from berth.runtime.cgroups.ebpf import EbpfDeviceFilter, allows_everything

        flt = self._device_filter or EbpfDeviceFilter()
        try:
            flt.attach(self._dir, rules)
        except OSError as e:
            if allows_everything(rules):
                return
            raise InvalidArgument(
                f"{DEVICES_FIELD} is not supported on cgroup v2 without eBPF ({e.strerror})") from None

    def freeze(self, frozen: bool, timeout: float = 10.0) -> None:
        """Write cgroup.freeze and wait for "frozen 0/1" in cgroup.events."""
        want = "1" if frozen else "0"
        try:
            self.fs.write(self._dir, "cgroup.freeze", want)
        except FileNotFoundError:
            raise Unavailable(f"cgroup {self._dir} has no cgroup.freeze (kernel < 5.2?)") from None
        deadline = time.monotonic() + timeout
        delay = 0.001
        while self._events().get("frozen", -1) != int(want):
            if time.monotonic() >= deadline:
                if frozen:
                    self.fs.write(self._dir, "cgroup.freeze", "0")
                verb = "freeze" if frozen else "thaw"
                raise Unavailable(f"cgroup {self._dir} did not {verb} within {timeout}s")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _events(self) -> dict[str, int]:
        return parse_flat_keyed(self.fs.read_or_none(self._dir, "cgroup.events") or "")

    def frozen(self) -> bool:
        return self._events().get("frozen", 0) == 1

    def pids(self) -> list[int]:
        """Every pid in the cgroup and its descendants."""
        return _all_pids(self.fs, self._dir)

    def stats(self) -> dict[str, Any]:
        def read(_ctrl: str, name: str) -> str | None:
            try:
                return self.fs.read_or_none(self._dir, name)
            except OSError:
                return None
        return stats_v2(read)

    def oom_kill_count(self) -> int:
        return parse_flat_keyed(self.fs.read_or_none(self._dir, "memory.events") or "").get("oom_kill", 0)
