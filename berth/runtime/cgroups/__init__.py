"""cgroup managers, v1 and v2: create a container's cgroup, apply OCI resources, freeze, stats.

    mgr = manager_for("/berth/<id>", "<id>")     # version detected from /sys/fs/cgroup
    mgr.create(); mgr.apply(spec["linux"]["resources"]); mgr.add(init_pid)
    ...; mgr.destroy()

cgroupsPath (cgroupfs driver, as runc): absolute = below each hierarchy root; relative = below
the calling process's own cgroup; empty = "/<container_id>". With systemd=True the path has the
form "slice:prefix:name" (empty = "system.slice:berth:<container_id>") and maps to
"/<slice path>/<prefix>-<name>.scope"; the directories are then managed through cgroupfs (no
D-Bus transient unit is registered).

Device rules are never implied: the runtime appends DEFAULT_ALLOWED_DEVICES (runc's list) to
the spec's rules itself. On v1 they become devices.deny/devices.allow writes (starting from
deny "a"); on v2 an eBPF device program with the same meaning.
"""

from __future__ import annotations

import os

from berth.runtime.cgroups.devices import DEFAULT_ALLOWED_DEVICES

TYPE_CHECKING = False  # typing costs ~8 ms of start-up (re, enum, collections): annotations only
if TYPE_CHECKING:
    from typing import Any

    from berth.runtime.cgroups.protocol import CgroupManager

__all__ = ["DEFAULT_ALLOWED_DEVICES", "CgroupManager", "detect", "manager_for"]

DEFAULT_ROOT = "/sys/fs/cgroup"


def __getattr__(name: str):  # noqa: ANN202 - the Protocol lives apart so typing stays off the hot path
    if name == "CgroupManager":
        from berth.runtime.cgroups.protocol import CgroupManager

        return CgroupManager
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _mount_fstype(path: str) -> str | None:
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    fstype = None
    for line in lines:
        fields = line.split()
        if len(fields) < 10 or fields[4] != path:
            continue
        sep = fields.index("-")
        fstype = fields[sep + 1]    # the last mount on top wins
    return fstype


def detect(root: str = DEFAULT_ROOT) -> str:
    """"v2" when root is a cgroup2 mount with controllers; otherwise "v1" (hybrid is v1).

    A root that is not a mount point (a test tree) is v2 when it has a non-empty
    cgroup.controllers file.
    """
    real = os.path.realpath(root)
    fstype = _mount_fstype(real)
    if fstype is not None and fstype != "cgroup2":
        return "v1"
    try:
        with open(os.path.join(real, "cgroup.controllers")) as f:
            controllers = f.read().split()
    except OSError:
        return "v1"
    return "v2" if controllers else "v1"


def manager_for(cgroups_path: str, container_id: str, *, systemd: bool = False, root: str = DEFAULT_ROOT,
                version: str | None = None, fs: Any = None, device_filter: Any = None,
                proc_cgroup: str = "/proc/self/cgroup") -> CgroupManager:
    """The manager for a container's cgroupsPath (see the module docstring for the semantics).

    fs, device_filter and proc_cgroup exist for tests (tmpdir trees, recording fakes).
    """
    from berth.errors import InvalidArgument, Unavailable
    from berth.runtime.cgroups import paths

    if systemd:
        paths.require_systemd()
    version = version or detect(root)
    if version not in ("v1", "v2"):
        raise InvalidArgument(f"unknown cgroup version {version!r}")
    path = paths.container_path(cgroups_path or "", container_id, systemd=systemd)
    own = paths.own_cgroups(proc_cgroup)
    if version == "v2":
        from berth.runtime.cgroups.manager_v2 import V2Manager

        return V2Manager(paths.join(root, own.get("", "/"), path), root, fs=fs, device_filter=device_filter)
    from berth.runtime.cgroups.manager_v1 import V1Manager, hierarchies

    mounts = hierarchies(root)
    if not mounts:
        raise Unavailable(f"no cgroup v1 hierarchies under {root}")
    dirs = {c: paths.join(m, own.get(c, "/"), path) for c, m in mounts.items()}
    return V1Manager(dirs, mounts, fs=fs)
