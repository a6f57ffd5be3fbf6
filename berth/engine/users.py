"""Resolve `--user` (name or id, with group) against the container's /etc/passwd and /etc/group.

The files are read fd-relatively under the rootfs (RESOLVE_IN_ROOT, no magic links), must be
regular files, and are read up to a size cap: a passwd that is a symlink to /dev/zero or to
/proc/self/environ, or a 1 GB file, cannot hang or leak anything (security-reliability B5 #13).
"""

from __future__ import annotations

import os
import stat

from berth.errors import InvalidArgument
from berth.sys import linux

MAX_FILE = 1 << 20


def _read_in_root(rootfs: str, path: str) -> str:
    try:
        root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        fd = linux.open_in_root(root_fd, path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return ""
    finally:
        os.close(root_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return os.read(fd, MAX_FILE).decode("utf-8", "replace")
    finally:
        os.close(fd)


def _entries(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve(rootfs: str, user: str) -> dict:
    """`user` as Docker takes it (``name``, ``uid``, ``name:group``, ``uid:gid``) → OCI process.user."""
    user = (user or "").strip()
    if not user:
        user = "0"
    name, _, group = user.partition(":")
    passwd = _entries(_read_in_root(rootfs, "/etc/passwd"))
    uid = gid = None
    uname = None
    if name.isdigit():
        uid = int(name)
        for e in passwd:
            if len(e) >= 4 and e[2] == name:
                gid, uname = int(e[3]), e[0]
                break
        if gid is None:
            gid = 0 if not group else None
    else:
        for e in passwd:
            if len(e) >= 4 and e[0] == name:
                uid, gid, uname = int(e[2]), int(e[3]), name
                break
        if uid is None:
            raise InvalidArgument(f"unable to find user {name}: no matching entries in passwd file")
    groups_text = _entries(_read_in_root(rootfs, "/etc/group"))
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            for e in groups_text:
                if len(e) >= 3 and e[0] == group:
                    gid = int(e[2])
                    break
            else:
                raise InvalidArgument(f"unable to find group {group}: no matching entries in group file")
    extra: list[int] = []
    if uname:
        for e in groups_text:
            if len(e) >= 4 and uname in e[3].split(",") and e[2].isdigit() and int(e[2]) != gid:
                extra.append(int(e[2]))
    out: dict = {"uid": uid, "gid": gid or 0}
    if extra:
        out["additionalGids"] = sorted(set(extra))
    return out
