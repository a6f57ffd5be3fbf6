"""Test doubles: a recording CgroupFS and a tmpdir tree that behaves like a cgroup2 mount.

`FakeCgroup2FS.mkdir` creates the interface files the kernel would show (the core cgroup.*
files plus those of the controllers enabled in the parent's cgroup.subtree_control), writes to
cgroup.subtree_control update the enabled set, and rmdir removes the pseudo-files first.
Every write is recorded in `.writes` as (directory, file, value), so repeated writes to one
file (io.max, devices.allow) can be checked in order.
"""

from __future__ import annotations

import os

from berth.runtime.cgroups.fs import CgroupFS

V2_CONTROLLER_FILES: dict[str, dict[str, str]] = {
    "cpu": {"cpu.weight": "100", "cpu.max": "max 100000", "cpu.max.burst": "0", "cpu.idle": "0"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "io": {"io.weight": "default 100", "io.max": "", "io.stat": ""},
    "memory": {"memory.max": "max", "memory.low": "0", "memory.high": "max", "memory.swap.max": "max",
               "memory.current": "0", "memory.swap.current": "0", "memory.stat": "",
               "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
               "memory.peak": "0"},
    "pids": {"pids.max": "max", "pids.current": "0"},
    "hugetlb": {"hugetlb.2MB.max": "max", "hugetlb.1GB.max": "max"},
    "rdma": {"rdma.max": ""},
}
V2_CORE_FILES = {"cgroup.procs": "", "cgroup.events": "populated 0\nfrozen 0\n", "cgroup.freeze": "0",
                 "cgroup.subtree_control": "", "cgroup.max.depth": "max",
                 "cgroup.max.descendants": "max", "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"}


def _put(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


class RecordingFS(CgroupFS):
    """CgroupFS that also logs every write."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str, str]] = []

    def write(self, directory: str, name: str, value: str) -> None:
        super().write(directory, name, value)
        self.writes.append((directory, name, value))

    def rmdir(self, directory: str) -> None:
        for entry in os.scandir(directory):
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
        os.rmdir(directory)


class FakeCgroup2FS(RecordingFS):
    """RecordingFS with cgroup2 semantics for mkdir and cgroup.subtree_control."""

    def mkdir(self, directory: str) -> None:
        if os.path.isdir(directory):
            return
        os.mkdir(directory)
        parent = os.path.dirname(directory)
        enabled = (self.read_or_none(parent, "cgroup.subtree_control") or "").split()
        _put(os.path.join(directory, "cgroup.controllers"), " ".join(enabled))
        for name, text in V2_CORE_FILES.items():
            _put(os.path.join(directory, name), text)
        for c in enabled:
            for name, text in V2_CONTROLLER_FILES.get(c, {}).items():
                _put(os.path.join(directory, name), text)

    def write(self, directory: str, name: str, value: str) -> None:
        if name != "cgroup.subtree_control":
            return super().write(directory, name, value)
        available = (self.read_or_none(directory, "cgroup.controllers") or "").split()
        enabled = (self.read_or_none(directory, "cgroup.subtree_control") or "").split()
        for token in value.split():
            c = token[1:]
            if c not in available:
                raise OSError(2, "No such file or directory")
            if token[0] == "+" and c not in enabled:
                enabled.append(c)
            elif token[0] == "-" and c in enabled:
                enabled.remove(c)
        super().write(directory, name, " ".join(enabled))


def make_v2_root(root: str, controllers: str = "cpuset cpu io memory hugetlb pids rdma") -> str:
    """Populate root like the top of a cgroup2 mount."""
    os.makedirs(root, exist_ok=True)
    _put(os.path.join(root, "cgroup.controllers"), controllers)
    _put(os.path.join(root, "cgroup.subtree_control"), "")
    _put(os.path.join(root, "cgroup.procs"), "")
    return root
