"""Linux capabilities: names, masks, bounding-set drops and capset (OCI process.capabilities).

Stdlib + ctypes only and no I/O at import: the container init imports this on every start.
Capabilities the running kernel does not know (above ``last_cap()``) are ignored, as runc does.
"""

from __future__ import annotations

import ctypes
import os

from berth.errors import InvalidArgument

CAPS: dict[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}

SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SYS_CAPGET = 125
_SYS_CAPSET = 126
_PR_CAPBSET_READ = 23
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_RAISE = 2
_PR_CAP_AMBIENT_CLEAR_ALL = 4

_libc: ctypes.CDLL | None = None
_last_cap: int | None = None


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    return _libc


def _prctl(option: int, arg2: int = 0, arg3: int = 0) -> int:
    ret = _lib().prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                       ctypes.c_ulong(0), ctypes.c_ulong(0))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}, {arg2}): {os.strerror(err)}")
    return ret


def normalize(name: str) -> str:
    """Upper-case a capability name and add the ``CAP_`` prefix Docker lets users omit."""
    n = name.strip().upper()
    return n if n.startswith("CAP_") else "CAP_" + n


def last_cap() -> int:
    """The highest capability number the running kernel knows (/proc/sys/kernel/cap_last_cap).

    Without /proc, probe PR_CAPBSET_READ, which fails with EINVAL above the last capability.
    """
    global _last_cap
    if _last_cap is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
                _last_cap = int(f.read().strip())
        except (OSError, ValueError):
            n = 0
            while True:
                try:
                    _prctl(_PR_CAPBSET_READ, n + 1)
                except OSError:
                    break
                n += 1
            _last_cap = n
    return _last_cap


def mask(names: list[str]) -> int:
    """The bit mask of the named capabilities; InvalidArgument naming any unknown one."""
    m = 0
    for name in names:
        if not isinstance(name, str):
            raise InvalidArgument(f"capability names must be strings, not {name!r}")
        n = normalize(name)
        if n not in CAPS:
            raise InvalidArgument(f"unknown capability {name!r}")
        m |= 1 << CAPS[n]
    return m


def names(m: int) -> list[str]:
    """The capability names set in mask m, in capability-number order."""
    return [n for n, bit in CAPS.items() if m >> bit & 1]


def drop_bounding(keep: list[str]) -> None:
    """Drop every capability not in keep from the bounding set (needs CAP_SETPCAP; do it before setuid)."""
    keep_mask = mask(keep)
    for cap in range(last_cap() + 1):
        if keep_mask >> cap & 1:
            continue
        if _prctl(_PR_CAPBSET_READ, cap) == 0:
            continue  # already gone: dropping again would need CAP_SETPCAP for nothing
        _prctl(_PR_CAPBSET_DROP, cap)


def _capset(effective: int, permitted: int, inheritable: int) -> None:
    hdr = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = effective >> shift & 0xFFFFFFFF
        data[i].permitted = permitted >> shift & 0xFFFFFFFF
        data[i].inheritable = inheritable >> shift & 0xFFFFFFFF
    if _lib().syscall(_SYS_CAPSET, ctypes.byref(hdr), data) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def masks(caps: dict) -> dict[str, int]:
    """Validate OCI process.capabilities and return each set as a mask (unknown name → InvalidArgument)."""
    if not isinstance(caps, dict):
        raise InvalidArgument("process.capabilities: must be an object")
    out = {}
    for key, value in caps.items():
        if key not in SETS:
            raise InvalidArgument(f"process.capabilities.{key}: unknown capability set")
        if value is None:
            value = []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidArgument(f"process.capabilities.{key}: must be a list of names")
        try:
            out[key] = mask(value)
        except InvalidArgument as e:
            raise InvalidArgument(f"process.capabilities.{key}: {e}") from None
    return out


def apply(caps: dict) -> None:
    """Set effective/permitted/inheritable with capset(2), then replace the ambient set.

    ``caps`` is OCI process.capabilities; the bounding set is left to drop_bounding(). Called by
    the runtime after setuid (with PR_SET_KEEPCAPS). Every name is checked before anything changes.
    """
    m = masks(caps)
    valid = (1 << (last_cap() + 1)) - 1
    eff, prm, inh, amb = (m.get(k, 0) & valid for k in ("effective", "permitted", "inheritable", "ambient"))
    missing = amb & ~(prm & inh)
    if missing:
        raise InvalidArgument(f"process.capabilities.ambient: {', '.join(names(missing))} must also be "
                              "permitted and inheritable")
    _capset(eff, prm, inh)
    _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    for cap in range(last_cap() + 1):
        if amb >> cap & 1:
            _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, cap)


def current(pid: int | str = "self") -> dict[str, int]:
    """CapInh/CapPrm/CapEff/CapBnd/CapAmb of a process, from /proc/<pid>/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Cap"):
                key, _, value = line.partition(":")
                out[key] = int(value.strip(), 16)
    return out
