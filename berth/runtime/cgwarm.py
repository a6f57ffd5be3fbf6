"""Start the cgroup attach grace period early, in a thread, while the runtime is still importing.

Every write to a `cgroup.procs` file takes the kernel's global `cgroup_threadgroup_rwsem` for
writing. The first writer after a quiet period waits for an RCU grace period (rcu_sync, about
8-10 ms here); writers that follow within a grace period or two of the last one pay nothing.
`create`/`run`/`exec` must move a freshly forked process into the container's cgroup, and that
write sits on the critical path between fork and "go".

So the CLI starts a thread at once that writes our own pid to the `cgroup.procs` of the cgroup we
are already in (a no-op move: the kernel migrates nothing). The thread blocks in write(2) with the
GIL released while the main thread imports modules and reads config.json; when the runtime later
writes the child's pid, the rwsem is already in writer mode and the write is cheap. `wait()` joins
the thread and closes the file: before joining a time namespace (which needs a single-threaded
caller) and when `create`/`exec` are done. Forking while the thread is blocked in write(2) is safe:
it holds no lock (the GIL is the forking thread's) and the child never touches it; the main thread
opens the file itself, so its fd number is known and the child closes it first thing (`in_child`):
no host file stays open in the container's init. Every error is ignored: this is only a warm-up.
"""

from __future__ import annotations

import os

_lock = None
_fd = -1
HIGH_FD = 200


def procs_file(cgroup_line: str, unified_dir: bool = False) -> str | None:
    """cgroup.procs of the cgroup named by one /proc/self/cgroup line, or None.

    unified_dir: the v2 tree is mounted at /sys/fs/cgroup/unified (a hybrid host)."""
    parts = cgroup_line.rstrip("\n").split(":", 2)
    if len(parts) != 3:
        return None
    _, ctrls, path = parts
    if not path.startswith("/") or "/.." in path:  # outside our cgroup namespace: not our own dir
        return None
    if not ctrls:  # "0::/path": the v2 unified hierarchy
        base = "/sys/fs/cgroup/unified" if unified_dir else "/sys/fs/cgroup"
    else:
        base = "/sys/fs/cgroup/" + (ctrls[5:] if ctrls.startswith("name=") else ctrls)
    return base + path.rstrip("/") + "/cgroup.procs"


def _open() -> int:
    """O_WRONLY fd on cgroup.procs of our own cgroup in the first mounted hierarchy, or -1."""
    try:
        with open("/proc/self/cgroup", "rb") as f:
            lines = f.read().decode().splitlines()
    except OSError:
        return -1
    unified = os.path.isdir("/sys/fs/cgroup/unified")
    for line in lines:
        path = procs_file(line, unified)
        if path is None:
            continue
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            continue
        import fcntl

        try:  # out of the way: the fds the runtime opens next keep the numbers they had without us
            high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, HIGH_FD)
        except OSError:
            return fd
        os.close(fd)
        return high
    return -1


def _write(fd: int, started, done) -> None:  # noqa: ANN001
    started.release()  # the main thread resumes as soon as os.write below lets go of the GIL
    try:
        os.write(fd, str(os.getpid()).encode())
    except OSError:
        pass
    finally:
        done.release()


def start() -> None:
    """Begin the warm-up write in a thread (once; only as root, which can move itself); returns
    when the thread runs (a new thread would otherwise wait up to the 5 ms GIL switch interval)."""
    global _lock, _fd
    if _lock is not None or os.geteuid() != 0:
        return
    fd = _open()
    if fd < 0:
        return
    import _thread

    started = _thread.allocate_lock()
    done = _thread.allocate_lock()
    started.acquire()
    done.acquire()
    try:
        _thread.start_new_thread(_write, (fd, started, done))
    except RuntimeError:
        os.close(fd)
        return
    _lock, _fd = done, fd
    started.acquire()


def wait() -> None:
    """Join the warm-up thread, close its file, and return once the kernel sees us single-threaded
    again (setns into a time namespace refuses a multi-threaded caller). No-op when not started."""
    global _lock, _fd
    lock, fd, _lock, _fd = _lock, _fd, None, -1
    if lock is None:
        return
    lock.acquire()
    lock.release()
    os.close(fd)
    import time

    deadline = time.monotonic() + 1
    while len(os.listdir("/proc/self/task")) > 1 and time.monotonic() < deadline:
        time.sleep(0.0001)


def in_child() -> None:
    """First thing in a process forked by the runtime: close the inherited warm-up fd, forget it."""
    global _lock, _fd
    if _fd >= 0:
        try:
            os.close(_fd)
        except OSError:
            pass
    _lock, _fd = None, -1
