"""Container state under the runtime root (`--root`, default /run/berth-runtime).

`<root>/<id>/state.json` holds the spec, init pid + start time and cgroup paths; it is written to
a temp file and renamed into place. `<root>/<id>/exec.fifo` exists while the container is
`created`. The status is derived from the kernel: a dead (or reused) pid is `stopped`.
"""

from __future__ import annotations

import os
import time

from berth.errors import AlreadyExists, InvalidArgument, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_ROOT = "/run/berth-runtime"
STATE_FILE = "state.json"
FIFO = "exec.fifo"
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def check_id(cid: str) -> str:
    """Container ids are `[A-Za-z0-9_+.-]+`, not '.' or '..' (as runc)."""
    if not cid or cid in (".", "..") or not set(cid) <= _ID_CHARS or len(cid) > 1024:
        raise InvalidArgument(f"invalid container id {cid!r}")
    return cid


def rfc3339(t: float | None = None) -> str:
    """UTC time as RFC 3339 with nanoseconds, like Go's time.RFC3339Nano."""
    ns = time.time_ns() if t is None else int(t * 1e9)
    s, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{frac:09d}Z"


class Container:
    """One container's persisted record plus live status."""

    def __init__(self, root: str, cid: str, data: dict[str, Any]) -> None:
        self.root = root
        self.id = cid
        self.data = data
        self.mgr = None  # the cgroup manager, when the caller already has one

    @property
    def dir(self) -> str:
        return os.path.join(self.root, self.id)

    @property
    def fifo(self) -> str:
        return os.path.join(self.dir, FIFO)

    @property
    def pid(self) -> int:
        return int(self.data.get("pid") or 0)

    @property
    def spec(self) -> dict:
        return self.data["config"]

    def alive(self) -> bool:
        from berth.sys.linux import process_alive

        return self.pid > 0 and process_alive(self.pid, self.data.get("start_time"))

    def frozen(self) -> bool:
        paths = self.data.get("cgroup_paths") or {}
        try:
            if "freezer" in paths:
                with open(os.path.join(paths["freezer"], "freezer.state")) as f:
                    return f.read().strip() in ("FROZEN", "FREEZING")
            if "" in paths:
                with open(os.path.join(paths[""], "cgroup.freeze")) as f:
                    return f.read().strip() == "1"
        except OSError:
            pass
        return False

    def status(self) -> str:
        if not self.alive():
            return "stopped"
        if os.path.exists(self.fifo):
            return "created"
        if self.frozen():
            return "paused"
        return "running"

    def oci_state(self, status: str | None = None) -> dict[str, Any]:
        """The runtime-spec state object (what `state` prints and hooks get on stdin)."""
        st = status or self.status()
        return {
            "ociVersion": self.spec.get("ociVersion", "1.1.0"),
            "id": self.id,
            "pid": self.pid if st != "stopped" else 0,
            "status": st,
            "bundle": self.data.get("bundle", ""),
            "rootfs": self.data.get("rootfs", ""),
            "created": self.data.get("created", ""),
            "owner": "",
            "annotations": self.spec.get("annotations") or {},
        }

    def save(self) -> None:
        """Write state.json atomically (temp file, fsync, rename)."""
        from berth.runtime import fastjson

        tmp = os.path.join(self.dir, f".{STATE_FILE}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, fastjson.dumps(self.data).encode())
        finally:
            os.close(fd)
        os.rename(tmp, os.path.join(self.dir, STATE_FILE))


def create_dir(root: str, cid: str) -> str:
    """Make `<root>/<id>` (mode 0711); AlreadyExists if the id is taken."""
    check_id(cid)
    os.makedirs(root, mode=0o711, exist_ok=True)
    d = os.path.join(root, cid)
    try:
        os.mkdir(d, 0o711)
    except FileExistsError:
        raise AlreadyExists(f"container with id {cid!r} already exists") from None
    return d


def load(root: str, cid: str) -> Container:
    """The container's record; NotFound if there is none."""
    from berth.runtime import fastjson

    check_id(cid)
    path = os.path.join(root, cid, STATE_FILE)
    try:
        with open(path, "rb") as f:
            data = fastjson.loads(f.read())
    except FileNotFoundError:
        raise NotFound(f"container {cid!r} does not exist") from None
    except ValueError as e:
        raise InvalidArgument(f"corrupt state file {path}: {e}") from None
    return Container(root, cid, data)


def list_ids(root: str) -> list[str]:
    """Ids with a state file under root, sorted."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if os.path.exists(os.path.join(root, n, STATE_FILE)))


def remove_dir(root: str, cid: str) -> None:
    """Remove `<root>/<id>` and everything in it (it holds only flat files)."""
    d = os.path.join(root, check_id(cid))
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return
    for n in names:
        try:
            os.unlink(os.path.join(d, n))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(d)
    except FileNotFoundError:
        pass
