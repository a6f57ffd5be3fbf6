"""The OCI runtime config.json with Docker's security defaults, and Docker's capability tweaks.

Pure: no I/O except reading the packaged seccomp profile data (Docker's default.json, moby/profiles
seccomp v0.2.3) once, lazily. Every function returns a new dict and leaves its input unchanged.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable

from berth.errors import InvalidArgument

OCI_VERSION = "1.2.0"

# daemon/pkg/oci/caps/defaults.go: bounding = effective = permitted; inheritable stays empty.
DEFAULT_CAPS: list[str] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]

# Every capability up to CAP_CHECKPOINT_RESTORE (40), in number order (kept here so oci stays below runtime).
ALL_CAPS: list[str] = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]

# daemon/pkg/oci/defaults.go. Docker also masks /sys/devices/system/cpu/cpu*/thermal_throttle where
# present; that needs a glob on the host, so callers pass those through default_spec(masked_extra=...).
MASKED_PATHS: list[str] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
]

READONLY_PATHS: list[str] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
]

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SHM_SIZE = 64 * 1024 * 1024
NOFILE = 1024

# Go's runtime.GOARCH (what Docker's profile "arches" use) → the OCI/libseccomp native architecture.
GOARCH_TO_SCMP: dict[str, str] = {
    "386": "SCMP_ARCH_X86",
    "amd64": "SCMP_ARCH_X86_64",
    "arm": "SCMP_ARCH_ARM",
    "arm64": "SCMP_ARCH_AARCH64",
    "loong64": "SCMP_ARCH_LOONGARCH64",
    "mips64": "SCMP_ARCH_MIPS64",
    "mips64p32": "SCMP_ARCH_MIPS64N32",
    "mips64le": "SCMP_ARCH_MIPSEL64",
    "mips64p32le": "SCMP_ARCH_MIPSEL64N32",
    "mipsle": "SCMP_ARCH_MIPSEL",
    "ppc": "SCMP_ARCH_PPC",
    "ppc64": "SCMP_ARCH_PPC64",
    "ppc64le": "SCMP_ARCH_PPC64LE",
    "riscv64": "SCMP_ARCH_RISCV64",
    "s390": "SCMP_ARCH_S390",
    "s390x": "SCMP_ARCH_S390X",
}
# GOARCH → the name Docker's "arches" filters compare against (moby seccomp goToNative).
_GOARCH_TO_NATIVE = {"386": "x86", "loong64": "loongarch64", "mips64p32": "mips64n32",
                     "mips64le": "mipsel64", "mips64p32le": "mips3l64n32"}

_PROFILE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "profiles", "seccomp_default.json")
_profile_cache: dict | None = None


def docker_default_profile() -> dict:
    """Docker's default seccomp profile in Docker's own format (a fresh copy of the packaged data)."""
    global _profile_cache
    if _profile_cache is None:
        with open(_PROFILE_FILE, "rb") as f:
            _profile_cache = json.load(f)
    return copy.deepcopy(_profile_cache)


def _kernel_at_least(kernel: tuple[int, int] | None, wanted: str) -> bool:
    if kernel is None:
        return True  # every kernel berth supports is newer than the profile's minKernel gates (4.8)
    major, minor = (int(p) for p in wanted.split(".")[:2])
    return tuple(kernel[:2]) >= (major, minor)


def resolve_seccomp_profile(profile: dict, caps: Iterable[str], arch: str = "amd64",
                            kernel: tuple[int, int] | None = None) -> dict:
    """Turn a Docker-format profile (archMap, includes/excludes) into OCI linux.seccomp for a
    bounding capability set, a Go architecture name and a kernel version (moby setupSeccomp)."""
    if "architectures" in profile and "archMap" in profile:
        raise InvalidArgument("seccomp profile: both 'architectures' and 'archMap' are specified")
    capset = set(caps)
    native = _GOARCH_TO_NATIVE.get(arch, arch)
    out: dict = {"defaultAction": profile.get("defaultAction", "")}
    for key in ("defaultErrnoRet", "flags", "listenerPath", "listenerMetadata"):
        if profile.get(key) is not None:
            out[key] = copy.deepcopy(profile[key])
    arches = list(profile.get("architectures") or [])
    scmp = GOARCH_TO_SCMP.get(arch)
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == scmp:
            arches = [scmp, *(entry.get("subArchitectures") or [])]
            break
    if arches:
        out["architectures"] = arches
    rules = []
    for i, call in enumerate(profile.get("syscalls") or []):
        names = call.get("names") or []
        if call.get("name"):
            if names:
                raise InvalidArgument(f"seccomp profile syscalls[{i}]: both 'name' and 'names' are specified")
            names = [call["name"]]
        exc = call.get("excludes") or {}
        if native in (exc.get("arches") or []):
            continue
        if any(c in capset for c in exc.get("caps") or []):
            continue
        if exc.get("minKernel") and _kernel_at_least(kernel, exc["minKernel"]):
            continue
        inc = call.get("includes") or {}
        if inc.get("arches") and native not in inc["arches"]:
            continue
        if any(c not in capset for c in inc.get("caps") or []):
            continue
        if inc.get("minKernel") and not _kernel_at_least(kernel, inc["minKernel"]):
            continue
        rule: dict = {"names": list(names), "action": call["action"]}
        if call.get("errnoRet") is not None:
            rule["errnoRet"] = call["errnoRet"]
        if call.get("args"):
            rule["args"] = copy.deepcopy(call["args"])
        rules.append(rule)
    out["syscalls"] = rules
    return out


def default_seccomp_profile(caps: list[str] | None = None, arch: str = "amd64", *,
                            kernel: tuple[int, int] | None = None) -> dict:
    """Docker's default seccomp profile as OCI linux.seccomp for the given capability set
    (default: DEFAULT_CAPS). Without CAP_SYS_ADMIN, clone with namespace flags is refused and
    clone3 fails with ENOSYS."""
    return resolve_seccomp_profile(docker_default_profile(), DEFAULT_CAPS if caps is None else caps,
                                   arch, kernel)


def default_mounts(shm_size: int = SHM_SIZE) -> list[dict]:
    """Docker's default mounts (B1 table), in mount order."""
    def m(dest: str, typ: str, src: str, opts: list[str]) -> dict:
        return {"destination": dest, "type": typ, "source": src, "options": opts}

    return [
        m("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        m("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        m("/dev/pts", "devpts", "devpts", ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                                           "gid=5"]),
        m("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
        m("/sys/fs/cgroup", "cgroup", "cgroup", ["ro", "nosuid", "noexec", "nodev"]),
        m("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        m("/dev/shm", "tmpfs", "shm",
          ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size // 1024}k"]),
    ]


def default_device_rules() -> list[dict]:
    """Docker's device cgroup list: deny all, allow the standard character devices, deny fuse."""
    def dev(allow: bool, major: int | None = None, minor: int | None = None) -> dict:
        rule: dict = {"allow": allow}
        if major is not None:
            rule.update({"type": "c", "major": major, "minor": minor})
        rule["access"] = "rwm"
        return rule

    return [dev(False), dev(True, 1, 5), dev(True, 1, 3), dev(True, 1, 9), dev(True, 1, 8),
            dev(True, 5, 0), dev(True, 5, 1), dev(False, 10, 229)]


def _host_nofile_hard() -> int:
    import resource  # a getrlimit(2) call, no file I/O

    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def default_spec(args: list[str] | None = None, *, terminal: bool = False, rootfs: str = "rootfs",
                 hostname: str = "", seccomp: bool = True, cgroupns: bool = False,
                 host_nofile_hard: int | None = None, masked_extra: Iterable[str] = (),
                 arch: str = "amd64") -> dict:
    """A complete OCI runtime config.json with Docker's defaults.

    cgroupns: add a cgroup namespace (Docker does on cgroup v2 only). host_nofile_hard: the hard
    RLIMIT_NOFILE the runtime will run under (default: this process's), to which 1024/1024 is clamped
    because setrlimit cannot raise it without CAP_SYS_RESOURCE. masked_extra: more masked paths (the
    host's cpu*/thermal_throttle).
    """
    hard = _host_nofile_hard() if host_nofile_hard is None else host_nofile_hard
    nofile = NOFILE if hard < 0 else min(NOFILE, hard)  # RLIM_INFINITY is -1
    env = [DEFAULT_PATH] + (["TERM=xterm"] if terminal else [])
    namespaces = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]
    if cgroupns:
        namespaces.append({"type": "cgroup"})
    spec: dict = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": list(args) if args is not None else ["sh"],
            "env": env,
            "cwd": "/",
            "capabilities": {
                "bounding": list(DEFAULT_CAPS),
                "effective": list(DEFAULT_CAPS),
                "permitted": list(DEFAULT_CAPS),
                "inheritable": [],
                "ambient": [],
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": False,
        },
        "root": {"path": rootfs, "readonly": False},
        "hostname": hostname,
        "mounts": default_mounts(),
        "linux": {
            "resources": {"devices": default_device_rules()},
            "namespaces": namespaces,
            "maskedPaths": list(MASKED_PATHS) + [p for p in masked_extra if p not in MASKED_PATHS],
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
    if seccomp:
        spec["linux"]["seccomp"] = default_seccomp_profile(DEFAULT_CAPS, arch)
    return spec


def normalize_caps(names: Iterable[str]) -> list[str]:
    """Docker's NormalizeLegacyCapabilities: upper-case, add CAP_, keep "ALL"; unknown → InvalidArgument."""
    out = []
    for name in names:
        if not isinstance(name, str):
            raise InvalidArgument(f"capability names must be strings, not {name!r}")
        c = name.strip().upper()
        if c != "ALL":
            if not c.startswith("CAP_"):
                c = "CAP_" + c
            if c not in ALL_CAPS:
                raise InvalidArgument(f"unknown capability: {name!r}")
        if c not in out:
            out.append(c)
    return out


def tweak_capabilities(basics: list[str], add: Iterable[str] = (), drop: Iterable[str] = ()) -> list[str]:
    """Docker's TweakCapabilities: "ALL" in add means all but the dropped ones; "ALL" in drop means only
    the added ones; otherwise drop from basics, then add (add wins over drop)."""
    cap_add, cap_drop = normalize_caps(add), normalize_caps(drop)
    if not cap_add and not cap_drop:
        return list(basics)
    if "ALL" in cap_add:
        return [c for c in ALL_CAPS if c not in cap_drop]
    if "ALL" in cap_drop:
        return cap_add
    out = [c for c in basics if c not in cap_drop]
    return out + [c for c in cap_add if c not in out]


def _spec_arch(seccomp: dict) -> str | None:
    arches = seccomp.get("architectures") or []
    for goarch, scmp in GOARCH_TO_SCMP.items():
        if arches and arches[0] == scmp:
            return goarch
    return None


def with_capabilities(spec: dict, add: Iterable[str] = (), drop: Iterable[str] = ()) -> dict:
    """A copy of spec with docker --cap-add/--cap-drop applied to bounding/effective/permitted.

    If the spec carries Docker's default seccomp profile (as resolved for its old capability set),
    the profile is recomputed for the new set; a custom profile is left alone.
    """
    out = copy.deepcopy(spec)
    process = out.setdefault("process", {})
    capabilities = process.setdefault("capabilities", {})
    old = list(capabilities.get("bounding") or [])
    new = tweak_capabilities(old, add, drop)
    for key in ("bounding", "effective", "permitted"):
        capabilities[key] = list(new)
    linux = out.get("linux") or {}
    seccomp = linux.get("seccomp")
    if seccomp:
        arch = _spec_arch(seccomp)
        if arch is not None and seccomp == default_seccomp_profile(old, arch):
            linux["seccomp"] = default_seccomp_profile(new, arch)
    return out


def privileged(spec: dict) -> dict:
    """A copy of spec as docker --privileged makes it: every capability, no seccomp, no masked or
    read-only paths, /sys and /sys/fs/cgroup writable, every device allowed in the device cgroup.
    (Docker also adds the host's device nodes to linux.devices; that needs host I/O, so the engine does it.)
    """
    out = copy.deepcopy(spec)
    capabilities = out.setdefault("process", {}).setdefault("capabilities", {})
    for key in ("bounding", "effective", "permitted"):
        capabilities[key] = list(ALL_CAPS)
    linux = out.setdefault("linux", {})
    linux.pop("seccomp", None)
    linux["maskedPaths"] = []
    linux["readonlyPaths"] = []
    linux.setdefault("resources", {})["devices"] = [{"allow": True, "access": "rwm"}]
    for mount in out.get("mounts") or []:
        if mount.get("destination") in ("/sys", "/sys/fs/cgroup"):
            mount["options"] = [o for o in mount.get("options") or [] if o != "ro"]
    return out
