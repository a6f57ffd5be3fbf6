"""Mount descriptions and the one place (with the runtime) that performs mounts.

A Mount is a description ``{type, source, options}`` as in the OCI runtime spec; snapshotters
return lists of them and never mount anything themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from berth.sys import linux

# option name -> (set flag?, flag)
MOUNT_FLAGS: dict[str, tuple[bool, int]] = {
    "ro": (True, linux.MS_RDONLY),
    "rw": (False, linux.MS_RDONLY),
    "nosuid": (True, linux.MS_NOSUID),
    "suid": (False, linux.MS_NOSUID),
    "nodev": (True, linux.MS_NODEV),
    "dev": (False, linux.MS_NODEV),
    "noexec": (True, linux.MS_NOEXEC),
    "exec": (False, linux.MS_NOEXEC),
    "sync": (True, linux.MS_SYNCHRONOUS),
    "async": (False, linux.MS_SYNCHRONOUS),
    "dirsync": (True, linux.MS_DIRSYNC),
    "remount": (True, linux.MS_REMOUNT),
    "mand": (True, linux.MS_MANDLOCK),
    "nomand": (False, linux.MS_MANDLOCK),
    "atime": (False, linux.MS_NOATIME),
    "noatime": (True, linux.MS_NOATIME),
    "diratime": (False, linux.MS_NODIRATIME),
    "nodiratime": (True, linux.MS_NODIRATIME),
    "bind": (True, linux.MS_BIND),
    "rbind": (True, linux.MS_BIND | linux.MS_REC),
    "relatime": (True, linux.MS_RELATIME),
    "norelatime": (False, linux.MS_RELATIME),
    "strictatime": (True, linux.MS_STRICTATIME),
    "nostrictatime": (False, linux.MS_STRICTATIME),
    "nosymfollow": (True, linux.MS_NOSYMFOLLOW),
    "defaults": (False, 0),
}

PROPAGATION_FLAGS: dict[str, int] = {
    "private": linux.MS_PRIVATE,
    "rprivate": linux.MS_PRIVATE | linux.MS_REC,
    "shared": linux.MS_SHARED,
    "rshared": linux.MS_SHARED | linux.MS_REC,
    "slave": linux.MS_SLAVE,
    "rslave": linux.MS_SLAVE | linux.MS_REC,
    "unbindable": linux.MS_UNBINDABLE,
    "runbindable": linux.MS_UNBINDABLE | linux.MS_REC,
}


@dataclass
class Mount:
    """A mount description: what the kernel would be asked to mount."""

    type: str
    source: str
    options: list[str] = field(default_factory=list)
    target: str = ""  # set when the description is a runtime-spec mount

    def to_dict(self) -> dict:
        d = {"type": self.type, "source": self.source, "options": list(self.options)}
        if self.target:
            d["destination"] = self.target
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Mount:
        return cls(type=d.get("type", ""), source=d.get("source", ""),
                   options=list(d.get("options") or []), target=d.get("destination", ""))


def parse_options(options: list[str]) -> tuple[int, list[int], str]:
    """Split mount options into (flags, propagation flags, data string)."""
    flags = 0
    propagation: list[int] = []
    data: list[str] = []
    for opt in options:
        if opt in MOUNT_FLAGS:
            clear, flag = MOUNT_FLAGS[opt]
            if clear:
                flags |= flag
            else:
                flags &= ~flag
        elif opt in PROPAGATION_FLAGS:
            propagation.append(PROPAGATION_FLAGS[opt])
        else:
            data.append(opt)
    return flags, propagation, ",".join(data)


def mount_all(mounts: list[Mount], target: str) -> None:
    """Mount a snapshot's mount list onto target (the rootfs).

    Overlay mounts whose data would not fit in a page are made with the new mount API
    (fsconfig ``lowerdir+``) when the kernel has it.
    """
    for m in mounts:
        flags, propagation, data = parse_options(m.options)
        if m.type == "bind":
            flags |= linux.MS_BIND
        if m.type == "overlay" and len(data) >= 4000:
            _mount_overlay_fsapi(m.options, target, flags)
        else:
            linux.mount(m.source, target, None if m.type == "bind" else m.type,
                        flags & ~linux.MS_RDONLY if flags & linux.MS_BIND else flags, data or None)
            if flags & linux.MS_BIND and flags & linux.MS_RDONLY:
                linux.mount(None, target, None, flags | linux.MS_REMOUNT | linux.MS_BIND, None)
        for p in propagation:
            linux.mount(None, target, None, p, None)


_MOUNT_ATTRS = ((linux.MS_RDONLY, 0x1), (linux.MS_NOSUID, 0x2), (linux.MS_NODEV, 0x4),
                (linux.MS_NOEXEC, 0x8), (linux.MS_NOATIME, 0x10), (linux.MS_STRICTATIME, 0x20),
                (linux.MS_NODIRATIME, 0x80))


def _mount_overlay_fsapi(options: list[str], target: str, flags: int) -> None:
    fd = linux.fsopen("overlay", 1)  # FSOPEN_CLOEXEC
    try:
        for opt in options:
            if opt in MOUNT_FLAGS or opt in PROPAGATION_FLAGS:
                continue
            key, _, value = opt.partition("=")
            if key == "lowerdir":
                for lower in value.split(":"):
                    linux.fsconfig(fd, linux.FSCONFIG_SET_STRING, "lowerdir+", lower)
            elif value:
                linux.fsconfig(fd, linux.FSCONFIG_SET_STRING, key, value)
            else:
                linux.fsconfig(fd, linux.FSCONFIG_SET_FLAG, key)
        if flags & linux.MS_RDONLY:
            linux.fsconfig(fd, linux.FSCONFIG_SET_FLAG, "ro")
        linux.fsconfig(fd, linux.FSCONFIG_CMD_CREATE)
        attrs = sum(attr for flag, attr in _MOUNT_ATTRS if flags & flag)
        mfd = linux.fsmount(fd, linux.FSMOUNT_CLOEXEC, attrs)
        try:
            linux.move_mount(mfd, "", -100, target, linux.MOVE_MOUNT_F_EMPTY_PATH)
        finally:
            os.close(mfd)
    finally:
        os.close(fd)


def unmount_all(target: str, *, detach: bool = True) -> None:
    """Unmount everything stacked on target (loops until EINVAL: not a mount point)."""
    flags = linux.MNT_DETACH if detach else 0
    while True:
        try:
            linux.umount(target, flags)
        except OSError as e:
            if e.errno in (22, 2):  # EINVAL: not mounted; ENOENT
                return
            raise


def is_mountpoint(path: str) -> bool:
    """True if path is listed as a mount point in /proc/self/mountinfo."""
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == real:
                return True
    return False
