"""Seccomp filters from an OCI ``linux.seccomp`` object, compiled and loaded with libseccomp (ctypes).

libseccomp.so.2 is opened only when a filter is built (load/export_bpf); validate() is pure. The
translation follows runc: unknown syscall names are skipped, rules whose action equals the default
action are dropped, ERRNO/TRACE without errnoRet return EPERM, and a rule with two conditions on
the same argument is split into one rule per condition. libseccomp is told not to set
no_new_privs: whether NNP is set is the runtime's decision (process.noNewPrivileges), so load()
needs either NNP already set or CAP_SYS_ADMIN (runc loads the filter before dropping capabilities).
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Any

from berth.errors import BerthError, InvalidArgument

ACTIONS: dict[str, int] = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
    "SCMP_ACT_NOTIFY": 0x7FC00000,
}
_WITH_ERRNO = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")

OPERATORS: dict[str, int] = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# OCI architecture names → audit arch tokens (linux/audit.h), which libseccomp uses as arch tokens.
ARCHITECTURES: dict[str, int] = {
    "SCMP_ARCH_X86": 0x40000003,
    "SCMP_ARCH_X86_64": 0xC000003E,
    "SCMP_ARCH_X32": 0x4000003E,
    "SCMP_ARCH_ARM": 0x40000028,
    "SCMP_ARCH_AARCH64": 0xC00000B7,
    "SCMP_ARCH_MIPS": 0x00000008,
    "SCMP_ARCH_MIPS64": 0x80000008,
    "SCMP_ARCH_MIPS64N32": 0xA0000008,
    "SCMP_ARCH_MIPSEL": 0x40000008,
    "SCMP_ARCH_MIPSEL64": 0xC0000008,
    "SCMP_ARCH_MIPSEL64N32": 0xE0000008,
    "SCMP_ARCH_PPC": 0x00000014,
    "SCMP_ARCH_PPC64": 0x80000015,
    "SCMP_ARCH_PPC64LE": 0xC0000015,
    "SCMP_ARCH_S390": 0x00000016,
    "SCMP_ARCH_S390X": 0x80000016,
    "SCMP_ARCH_PARISC": 0x0000000F,
    "SCMP_ARCH_PARISC64": 0x8000000F,
    "SCMP_ARCH_RISCV64": 0xC00000F3,
    "SCMP_ARCH_LOONGARCH64": 0xC0000102,
    "SCMP_ARCH_M68K": 0x00000004,
    "SCMP_ARCH_SH": 0x4000002A,
    "SCMP_ARCH_SHEB": 0x0000002A,
}

# OCI flags → libseccomp filter attribute (None: known, but libseccomp 2.5 cannot express it).
FLAGS: dict[str, int | None] = {
    "SECCOMP_FILTER_FLAG_TSYNC": 4,  # SCMP_FLTATR_CTL_TSYNC
    "SECCOMP_FILTER_FLAG_LOG": 6,  # SCMP_FLTATR_CTL_LOG
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 7,  # SCMP_FLTATR_CTL_SSB
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": None,
}

_PROFILE_KEYS = {"defaultAction", "defaultErrnoRet", "architectures", "flags", "listenerPath",
                 "listenerMetadata", "syscalls"}
_RULE_KEYS = {"names", "action", "errnoRet", "args", "comment"}
_ARG_KEYS = {"index", "value", "valueTwo", "op"}
_DOCKER_ONLY = {"archMap", "includes", "excludes", "name"}

_SCMP_FLTATR_CTL_NNP = 3
_SCMP_FLTATR_API_SYSRAWRC = 9  # report the kernel's errno instead of ECANCELED
_NR_SCMP_ERROR = -1
_U64 = (1 << 64) - 1
_PREFIX = "linux.seccomp"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _list(obj: dict, key: str) -> Any:
    value = obj.get(key)
    return [] if value is None else value


def _check_action(where: str, action: Any, errno_ret: Any, errno_field: str) -> None:
    if action not in ACTIONS:
        raise InvalidArgument(f"{where}: unknown action {action!r}")
    if action == "SCMP_ACT_NOTIFY":
        raise InvalidArgument(f"{where}: SCMP_ACT_NOTIFY is not supported (no seccomp listener)")
    if errno_ret is not None:
        if action not in _WITH_ERRNO:
            raise InvalidArgument(f"{errno_field}: only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, "
                                  f"not {action}")
        if not _is_int(errno_ret) or not 0 <= errno_ret <= 0xFFFF:
            raise InvalidArgument(f"{errno_field}: must be an integer 0..65535, not {errno_ret!r}")


def validate(profile: dict) -> None:
    """Check an OCI linux.seccomp object; InvalidArgument names the first bad field."""
    if not isinstance(profile, dict):
        raise InvalidArgument(f"{_PREFIX}: must be an object")
    for key in profile:
        if key in _DOCKER_ONLY:
            raise InvalidArgument(f"{_PREFIX}.{key}: Docker profile field; resolve the profile into "
                                  "OCI form first (berth.oci.spec)")
        if key not in _PROFILE_KEYS:
            raise InvalidArgument(f"{_PREFIX}.{key}: unknown field")
    if "defaultAction" not in profile:
        raise InvalidArgument(f"{_PREFIX}.defaultAction: required")
    _check_action(f"{_PREFIX}.defaultAction", profile["defaultAction"], profile.get("defaultErrnoRet"),
                  f"{_PREFIX}.defaultErrnoRet")
    if profile.get("listenerPath"):
        raise InvalidArgument(f"{_PREFIX}.listenerPath: seccomp notify listeners are not supported")
    arches = _list(profile, "architectures")
    if not isinstance(arches, list):
        raise InvalidArgument(f"{_PREFIX}.architectures: must be a list")
    for i, arch in enumerate(arches):
        if arch not in ARCHITECTURES:
            raise InvalidArgument(f"{_PREFIX}.architectures[{i}]: unknown architecture {arch!r}")
    flags = _list(profile, "flags")
    if not isinstance(flags, list):
        raise InvalidArgument(f"{_PREFIX}.flags: must be a list")
    for i, flag in enumerate(flags):
        if flag not in FLAGS:
            raise InvalidArgument(f"{_PREFIX}.flags[{i}]: unknown flag {flag!r}")
        if FLAGS[flag] is None:
            raise InvalidArgument(f"{_PREFIX}.flags[{i}]: {flag} is not supported by libseccomp 2.5")
    rules = _list(profile, "syscalls")
    if not isinstance(rules, list):
        raise InvalidArgument(f"{_PREFIX}.syscalls: must be a list")
    for i, rule in enumerate(rules):
        _validate_rule(f"{_PREFIX}.syscalls[{i}]", rule)


def _validate_rule(where: str, rule: Any) -> None:
    if not isinstance(rule, dict):
        raise InvalidArgument(f"{where}: must be an object")
    for key in rule:
        if key in _DOCKER_ONLY:
            raise InvalidArgument(f"{where}.{key}: Docker profile field; resolve the profile into OCI "
                                  "form first (berth.oci.spec)")
        if key not in _RULE_KEYS:
            raise InvalidArgument(f"{where}.{key}: unknown field")
    names = rule.get("names")
    if not isinstance(names, list) or not names:
        raise InvalidArgument(f"{where}.names: must be a non-empty list of syscall names")
    for j, name in enumerate(names):
        if not isinstance(name, str) or not name or "\0" in name:
            raise InvalidArgument(f"{where}.names[{j}]: not a syscall name: {name!r}")
    if "action" not in rule:
        raise InvalidArgument(f"{where}.action: required")
    _check_action(f"{where}.action", rule["action"], rule.get("errnoRet"), f"{where}.errnoRet")
    args = _list(rule, "args")
    if not isinstance(args, list):
        raise InvalidArgument(f"{where}.args: must be a list")
    for k, arg in enumerate(args):
        at = f"{where}.args[{k}]"
        if not isinstance(arg, dict):
            raise InvalidArgument(f"{at}: must be an object")
        for key in arg:
            if key not in _ARG_KEYS:
                raise InvalidArgument(f"{at}.{key}: unknown field")
        index = arg.get("index")
        if not _is_int(index) or not 0 <= index <= 5:
            raise InvalidArgument(f"{at}.index: must be an argument number 0..5, not {index!r}")
        for key in ("value", "valueTwo"):
            v = arg.get(key, 0)
            if not _is_int(v) or not 0 <= v <= _U64:
                raise InvalidArgument(f"{at}.{key}: must be an unsigned 64-bit integer, not {v!r}")
        if arg.get("op") not in OPERATORS:
            raise InvalidArgument(f"{at}.op: unknown operator {arg.get('op')!r}")


def action_value(action: str, errno_ret: int | None) -> int:
    """The libseccomp action word for an OCI action (ERRNO/TRACE default to EPERM, as runc)."""
    value = ACTIONS[action]
    if action in _WITH_ERRNO:
        value |= (errno.EPERM if errno_ret is None else errno_ret) & 0xFFFF
    return value


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


_lib: ctypes.CDLL | None = None


def _libseccomp() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        try:
            lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        except OSError as e:
            raise BerthError(f"seccomp: cannot load libseccomp.so.2 ({e}); install libseccomp2") from None
        vp, u32, cint = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
        for fname, res, args in (
            ("seccomp_init", vp, [u32]),
            ("seccomp_release", None, [vp]),
            ("seccomp_arch_add", cint, [vp, u32]),
            ("seccomp_attr_set", cint, [vp, cint, u32]),
            ("seccomp_syscall_resolve_name", cint, [ctypes.c_char_p]),
            ("seccomp_rule_add_array", cint, [vp, u32, cint, ctypes.c_uint, ctypes.POINTER(_ArgCmp)]),
            ("seccomp_load", cint, [vp]),
            ("seccomp_export_bpf", cint, [vp, cint]),
        ):
            fn = getattr(lib, fname)
            fn.restype = res
            fn.argtypes = args
        _lib = lib
    return _lib


def _rc(rc: int, what: str) -> None:
    if rc < 0:
        raise BerthError(f"seccomp: {what}: {os.strerror(-rc)}")


def _conditions(args: list[dict]) -> list[list[tuple[int, int, int, int]]]:
    """Argument conditions per libseccomp rule: all in one rule, or one rule each when an index repeats."""
    conds = [(a["index"], OPERATORS[a["op"]], a.get("value", 0), a.get("valueTwo", 0)) for a in args]
    indexes = [c[0] for c in conds]
    if len(set(indexes)) == len(indexes):
        return [conds]
    return [[c] for c in conds]


def _build(profile: dict) -> int:
    """A libseccomp filter context for a validated profile (caller releases it)."""
    lib = _libseccomp()
    default = action_value(profile["defaultAction"], profile.get("defaultErrnoRet"))
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise BerthError("seccomp: seccomp_init failed")
    try:
        _rc(lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_NNP, 0), "clear the NNP attribute")
        _rc(lib.seccomp_attr_set(ctx, _SCMP_FLTATR_API_SYSRAWRC, 1), "ask for raw return codes")
        for i, arch in enumerate(profile.get("architectures") or []):
            rc = lib.seccomp_arch_add(ctx, ARCHITECTURES[arch])
            if rc == -errno.EEXIST:
                continue  # the native architecture is always present
            if rc < 0:
                raise InvalidArgument(f"{_PREFIX}.architectures[{i}]: {arch} is not supported by this "
                                      f"libseccomp ({os.strerror(-rc)})")
        for flag in profile.get("flags") or []:
            _rc(lib.seccomp_attr_set(ctx, FLAGS[flag], 1), f"flag {flag}")
        for i, rule in enumerate(profile.get("syscalls") or []):
            action = action_value(rule["action"], rule.get("errnoRet"))
            if action == default:
                continue  # libseccomp refuses rules that repeat the default action
            groups = _conditions(rule.get("args") or [])
            for name in rule["names"]:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr == _NR_SCMP_ERROR:
                    continue  # a name this libseccomp does not know: skipped, as runc does
                for group in groups:
                    arr = (_ArgCmp * max(1, len(group)))(*(_ArgCmp(*c) for c in group))
                    rc = lib.seccomp_rule_add_array(ctx, action, nr, len(group), arr)
                    if rc < 0:
                        raise InvalidArgument(f"{_PREFIX}.syscalls[{i}]: rule for {name} rejected by "
                                              f"libseccomp: {os.strerror(-rc)}")
        return ctx
    except BaseException:
        lib.seccomp_release(ctx)
        raise


def load(profile: dict) -> None:
    """Validate, compile and install the filter on the calling thread (TSYNC flag: all threads).

    Needs no_new_privs set or CAP_SYS_ADMIN; the filter stays for the life of the process.
    """
    validate(profile)
    lib = _libseccomp()
    ctx = _build(profile)
    try:
        rc = lib.seccomp_load(ctx)
        if rc == -errno.EACCES:
            raise PermissionError(errno.EACCES, "seccomp: loading a filter needs no_new_privs or "
                                  "CAP_SYS_ADMIN")
        _rc(rc, "seccomp_load")
    finally:
        lib.seccomp_release(ctx)


def export_bpf(profile: dict) -> bytes:
    """The compiled classic-BPF program (8-byte instructions) for a profile, without loading it."""
    validate(profile)
    lib = _libseccomp()
    ctx = _build(profile)
    fd = os.memfd_create("berth-seccomp-bpf", os.MFD_CLOEXEC)
    try:
        _rc(lib.seccomp_export_bpf(ctx, fd), "seccomp_export_bpf")
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
        lib.seccomp_release(ctx)
