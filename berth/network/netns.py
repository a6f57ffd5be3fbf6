"""Network namespace handles: persistent netns files and running code inside a netns.

setns(2) for a network namespace changes only the calling thread, and a socket stays in
the netns it was created in. So work that must happen "inside" a namespace runs in a
short-lived thread that enters the namespace and exits afterwards; the caller's thread is
never switched and nothing forks (the daemon is threaded).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from berth.errors import Conflict, InvalidArgument, NotFound
from berth.sys import linux

T = TypeVar("T")


def _run_in_thread(fn: Callable[[], T]) -> T:
    box: dict[str, object] = {}

    def body() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # re-raised in the caller
            box["error"] = e

    t = threading.Thread(target=body, name="berth-netns", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def run_in_netns(path: str | None, fn: Callable[..., T], *args, **kwargs) -> T:
    """Call fn(*args, **kwargs) in a fresh thread that has entered the netns at path.

    path None runs in a fresh thread in the caller's own netns (useful for libraries such as
    pyroute2 that keep per-thread state or refuse to run inside an asyncio loop thread).
    """

    def body() -> T:
        if path is not None:
            enter_netns(path)
        return fn(*args, **kwargs)

    return _run_in_thread(body)


def enter_netns(path: str) -> None:
    """Move the calling thread into the netns at path (a nsfs file or /proc/<pid>/ns/net)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"network namespace {path} does not exist") from None
    try:
        linux.setns(fd, linux.CLONE_NEWNET)
    except OSError as e:
        raise InvalidArgument(f"{path} is not a network namespace: {e.strerror}") from None
    finally:
        os.close(fd)


def create_netns(path: str) -> str:
    """Create a new network namespace kept alive by a bind mount of it on the file path.

    Loopback is brought up. The file must not exist yet; its directory must.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    except FileExistsError:
        raise Conflict(f"network namespace file {path} already exists") from None
    os.close(fd)

    def body() -> None:
        linux.unshare(linux.CLONE_NEWNET)
        linux.mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", path, None, linux.MS_BIND)
        _loopback_up()

    try:
        _run_in_thread(body)
    except BaseException:
        with contextlib.suppress(OSError):
            linux.umount(path, linux.MNT_DETACH)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return path


def delete_netns(path: str) -> None:
    """Unmount and remove a netns file made by create_netns(); missing files are fine."""
    with contextlib.suppress(OSError):
        linux.umount(path, linux.MNT_DETACH)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def is_netns(path: str) -> bool:
    """True if path names a network namespace (an nsfs file or /proc/<pid>/ns/net)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        import fcntl

        NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3)
        return fcntl.ioctl(fd, NS_GET_NSTYPE) == linux.CLONE_NEWNET
    except OSError:
        return False
    finally:
        os.close(fd)


def loopback_up(path: str | None) -> None:
    """Bring up lo in the netns at path (None: the caller's netns, in a helper thread)."""
    run_in_netns(path, _loopback_up)


def _loopback_up() -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname="lo")
        if idx:
            ipr.link("set", index=idx[0], state="up")
