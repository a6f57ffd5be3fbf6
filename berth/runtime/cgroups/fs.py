"""File access to a cgroup tree: kernel-like semantics over plain os calls.

Cgroup interface files cannot be created, only opened and written; `CgroupFS.write` therefore
opens without O_CREAT, so a missing file (a controller that is not enabled) is an error, in a
real hierarchy and in a tmpdir tree alike. Unit tests subclass `CgroupFS` to record writes or
to emulate kernel behaviour (pseudo-files appearing on mkdir, rmdir of a dir holding them).
"""

from __future__ import annotations

import errno
import os
import time


class CgroupFS:
    """Reads and writes cgroup interface files."""

    def read(self, directory: str, name: str) -> str:
        with open(os.path.join(directory, name)) as f:
            return f.read()

    def read_or_none(self, directory: str, name: str) -> str | None:
        try:
            return self.read(directory, name)
        except FileNotFoundError:
            return None

    def write(self, directory: str, name: str, value: str) -> None:
        """Write value with one write(2), like echo > file (no O_CREAT: files are the kernel's)."""
        fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def exists(self, directory: str, name: str = "") -> bool:
        return os.path.exists(os.path.join(directory, name) if name else directory)

    def mkdir(self, directory: str) -> None:
        try:
            os.mkdir(directory, 0o755)
        except FileExistsError:
            pass

    def rmdir(self, directory: str) -> None:
        os.rmdir(directory)

    def subdirs(self, directory: str) -> list[str]:
        try:
            with os.scandir(directory) as it:
                return [e.path for e in it if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return []


def remove_tree(fs: CgroupFS, top: str, *, timeout: float = 2.0) -> None:
    """rmdir top and every cgroup below it, children first; retry on EBUSY; missing is fine."""
    for sub in fs.subdirs(top):
        remove_tree(fs, sub, timeout=timeout)
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            fs.rmdir(top)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def parse_flat_keyed(text: str) -> dict[str, int]:
    """Parse "key value" lines (memory.stat, cpu.stat, cgroup.events, memory.events)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def parse_uint(text: str | None, *, max_as: int = 0) -> int:
    """Parse a single number file; "max" (and absent files) map to max_as / 0."""
    if text is None:
        return 0
    t = text.strip()
    if t == "max":
        return max_as
    try:
        return int(t)
    except ValueError:
        return 0
