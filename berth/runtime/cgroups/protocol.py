"""The CgroupManager protocol (kept apart: importing typing costs start-up time)."""

from __future__ import annotations

from typing import Any, Protocol


class CgroupManager(Protocol):
    """One container's cgroup (all hierarchies on v1, one directory on v2)."""

    version: str

    def create(self) -> None:
        """mkdir in every needed hierarchy (cpuset inherits cpus/mems); idempotent."""

    def add(self, pid: int) -> None:
        """Move pid into the cgroup (cgroup.procs in every hierarchy)."""

    def apply(self, resources: dict[str, Any]) -> None:
        """Write OCI linux.resources; unsupported fields raise InvalidArgument naming them."""

    def update(self, resources: dict[str, Any]) -> None:
        """apply() for a running container (runc update)."""

    def freeze(self, frozen: bool) -> None:
        """Freeze or thaw, waiting until the kernel reports the new state."""

    def frozen(self) -> bool: ...

    def pids(self) -> list[int]:
        """Pids in the cgroup and its descendants."""

    def stats(self) -> dict[str, Any]:
        """runc `events --stats` data: cpu, memory, pids, blkio, hugetlb."""

    def oom_kill_count(self) -> int: ...

    def exists(self) -> bool: ...

    def destroy(self) -> None:
        """rmdir every directory, children first; retries on EBUSY; idempotent."""

    def paths(self) -> dict[str, str]:
        """Controller ("" for v2) → absolute directory."""
