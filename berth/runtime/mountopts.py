"""Parse OCI mount options into mount(2) flags, propagation, recursive attributes and data."""

from __future__ import annotations

# mount(2) flag values (duplicated from berth.sys.linux so parsing needs no ctypes)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_SYNCHRONOUS = 1, 2, 4, 8, 16
MS_REMOUNT, MS_MANDLOCK, MS_DIRSYNC, MS_NOSYMFOLLOW = 32, 64, 128, 256
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_SILENT = 1024, 2048, 4096, 16384, 32768
MS_UNBINDABLE, MS_PRIVATE, MS_SLAVE, MS_SHARED = 1 << 17, 1 << 18, 1 << 19, 1 << 20
MS_RELATIME, MS_STRICTATIME, MS_LAZYTIME = 1 << 21, 1 << 24, 1 << 25

# option -> (clear?, flag)
FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, MS_SYNCHRONOUS), "atime": (True, MS_NOATIME), "bind": (False, MS_BIND),
    "defaults": (False, 0), "dev": (True, MS_NODEV), "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC), "exec": (True, MS_NOEXEC), "mand": (False, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME), "nodev": (False, MS_NODEV), "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC), "nomand": (True, MS_MANDLOCK), "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME), "nosuid": (False, MS_NOSUID),
    "nosymfollow": (False, MS_NOSYMFOLLOW), "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME), "remount": (False, MS_REMOUNT), "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY), "silent": (False, MS_SILENT), "loud": (True, MS_SILENT),
    "strictatime": (False, MS_STRICTATIME), "suid": (True, MS_NOSUID), "sync": (False, MS_SYNCHRONOUS),
    "lazytime": (False, MS_LAZYTIME), "nolazytime": (True, MS_LAZYTIME),
    "iversion": (False, 1 << 23), "noiversion": (True, 1 << 23),
}
PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC, "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}
# recursive attributes via mount_setattr(2): option -> (clear?, MOUNT_ATTR_*)
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC = 1, 2, 4, 8
MOUNT_ATTR_NOATIME, MOUNT_ATTR_STRICTATIME, MOUNT_ATTR_NODIRATIME = 0x10, 0x20, 0x80
MOUNT_ATTR_NOSYMFOLLOW = 0x200000
REC_ATTRS: dict[str, tuple[bool, int]] = {
    "rro": (False, MOUNT_ATTR_RDONLY), "rrw": (True, MOUNT_ATTR_RDONLY),
    "rnosuid": (False, MOUNT_ATTR_NOSUID), "rsuid": (True, MOUNT_ATTR_NOSUID),
    "rnodev": (False, MOUNT_ATTR_NODEV), "rdev": (True, MOUNT_ATTR_NODEV),
    "rnoexec": (False, MOUNT_ATTR_NOEXEC), "rexec": (True, MOUNT_ATTR_NOEXEC),
    "rnodiratime": (False, MOUNT_ATTR_NODIRATIME), "rdiratime": (True, MOUNT_ATTR_NODIRATIME),
    "rnoatime": (False, MOUNT_ATTR_NOATIME), "rstrictatime": (False, MOUNT_ATTR_STRICTATIME),
    "rrelatime": (False, 0), "rnosymfollow": (False, MOUNT_ATTR_NOSYMFOLLOW),
    "rsymfollow": (True, MOUNT_ATTR_NOSYMFOLLOW),
}
IGNORED = ("tmpcopyup", "acl", "noacl", "z", "Z", "U", "copy", "nocopy", "notmpcopyup")
UNSUPPORTED = ("idmap", "ridmap")


class MountOptions:
    """The parsed form of one mount's options list."""

    __slots__ = ("flags", "clear", "propagation", "attr_set", "attr_clr", "data", "bind")

    def __init__(self) -> None:
        self.flags = 0
        self.clear = 0
        self.propagation: list[int] = []
        self.attr_set = 0
        self.attr_clr = 0
        self.data: list[str] = []
        self.bind = False


def parse_options(options: list[str]) -> MountOptions:
    """Split options; ValueError for one this runtime cannot honour (named in the message)."""
    mo = MountOptions()
    for o in options:
        if o in FLAGS:
            clear, flag = FLAGS[o]
            if clear:
                mo.flags &= ~flag
                mo.clear |= flag
            else:
                mo.flags |= flag
                mo.clear &= ~flag
        elif o in PROPAGATION:
            mo.propagation.append(PROPAGATION[o])
        elif o in REC_ATTRS:
            clear, attr = REC_ATTRS[o]
            if clear:
                mo.attr_clr |= attr
            else:
                mo.attr_set |= attr
                if attr in (MOUNT_ATTR_NOATIME, MOUNT_ATTR_STRICTATIME) or o == "rrelatime":
                    mo.attr_clr |= 0x70  # MOUNT_ATTR__ATIME
        elif o in UNSUPPORTED:
            raise ValueError(f"option {o!r} is not supported")
        elif o in IGNORED or not o:
            continue
        else:
            mo.data.append(o)
    mo.bind = bool(mo.flags & MS_BIND)
    return mo
