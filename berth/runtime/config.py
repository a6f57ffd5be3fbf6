"""Load and validate an OCI runtime `config.json` (runtime-spec 1.1) before anything is created.

Every error is an InvalidArgument naming the offending field, e.g. `process.args: must be a
non-empty list of strings`. Validation is pure (plus a few stats of host paths).
"""

from __future__ import annotations

import os

from berth.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
HOOK_NAMES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
CAP_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
# fields of the spec this runtime does not implement: refuse rather than silently ignore
UNSUPPORTED = {
    "process": ("ioPriority", "scheduler", "execCPUAffinity"),
    "linux": ("intelRdt", "personality", "memoryPolicy", "netDevices"),
}
_SYSCTL_IPC = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
               "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def _err(field: str, msg: str) -> InvalidArgument:
    return InvalidArgument(f"config.json: {field}: {msg}")


def load(bundle: str, *, check_seccomp: bool = True) -> dict:
    """Read `<bundle>/config.json`, validate it and return the spec with root.path made absolute.

    check_seccomp=False leaves linux.seccomp to the caller (the runtime validates it while
    compiling, or skips it when the compiled filter is cached under the profile's digest)."""
    from berth.runtime import fastjson

    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InvalidArgument(f"no config.json in bundle {bundle}") from None
    except OSError as e:
        raise InvalidArgument(f"cannot read {path}: {e.strerror}") from None
    try:
        spec = fastjson.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"config.json: malformed JSON: {e}") from None
    validate(spec, bundle, check_seccomp=check_seccomp)
    return spec


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _uint(v: Any, field: str, bits: int = 32) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v >= (1 << bits):
        raise _err(field, f"must be an unsigned {bits}-bit integer, got {v!r}")


def _obj(v: Any, field: str) -> dict:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise _err(field, "must be an object")
    return v


def validate(spec: Any, bundle: str, *, need_process: bool = True, check_seccomp: bool = True) -> None:
    """Check every field berth-runtime uses; resolve root.path against bundle in place."""
    if not isinstance(spec, dict):
        raise _err("(top level)", "must be an object")
    if not isinstance(spec.get("ociVersion"), str):
        raise _err("ociVersion", "must be a string")
    root = _obj(spec.get("root"), "root")
    if not isinstance(root.get("path"), str) or not root["path"]:
        raise _err("root.path", "required")
    if not isinstance(root.get("readonly", False), bool):
        raise _err("root.readonly", "must be a boolean")
    rp = root["path"] if os.path.isabs(root["path"]) else os.path.join(bundle, root["path"])
    rp = os.path.realpath(rp)
    if not os.path.isdir(rp):
        raise _err("root.path", f"{rp} is not a directory")
    root["path"] = rp
    spec["root"] = root
    proc = spec.get("process")
    if proc is None:
        if need_process:
            raise _err("process", "required")
    else:
        validate_process(proc, "process")
    if "hostname" in spec and not isinstance(spec["hostname"], str):
        raise _err("hostname", "must be a string")
    if "domainname" in spec and not isinstance(spec["domainname"], str):
        raise _err("domainname", "must be a string")
    _validate_mounts(spec.get("mounts"))
    _validate_hooks(spec.get("hooks"))
    anno = spec.get("annotations")
    if anno is not None and not (isinstance(anno, dict) and all(isinstance(v, str) for v in anno.values())):
        raise _err("annotations", "must be an object of strings")
    _validate_linux(spec, check_seccomp)


def validate_process(proc: Any, field: str) -> None:
    """Validate an OCI `process` object (also used for `exec --process`)."""
    proc = _obj(proc, field)
    args = proc.get("args")
    if not _is_str_list(args) or not args or not args[0]:
        raise _err(f"{field}.args", "must be a non-empty list of strings")
    env = proc.get("env", [])
    if not _is_str_list(env) or any("=" not in e for e in env):
        raise _err(f"{field}.env", "must be a list of KEY=value strings")
    cwd = proc.get("cwd", "/")
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise _err(f"{field}.cwd", "must be an absolute path")
    if not isinstance(proc.get("terminal", False), bool):
        raise _err(f"{field}.terminal", "must be a boolean")
    cs = proc.get("consoleSize")
    if cs is not None:
        cs = _obj(cs, f"{field}.consoleSize")
        _uint(cs.get("height", 0), f"{field}.consoleSize.height", 16)
        _uint(cs.get("width", 0), f"{field}.consoleSize.width", 16)
    user = _obj(proc.get("user"), f"{field}.user")
    _uint(user.get("uid", 0), f"{field}.user.uid")
    _uint(user.get("gid", 0), f"{field}.user.gid")
    if "umask" in user:
        _uint(user["umask"], f"{field}.user.umask")
    for i, g in enumerate(user.get("additionalGids") or []):
        _uint(g, f"{field}.user.additionalGids[{i}]")
    if "username" in user:
        raise _err(f"{field}.user.username", "not supported on Linux")
    caps = _obj(proc.get("capabilities"), f"{field}.capabilities")
    for k, v in caps.items():
        if k not in CAP_SETS:
            raise _err(f"{field}.capabilities.{k}", "unknown capability set")
        if not _is_str_list(v):
            raise _err(f"{field}.capabilities.{k}", "must be a list of strings")
        for c in v:
            if not c.startswith("CAP_") or c[4:] not in CAPABILITIES:
                raise _err(f"{field}.capabilities.{k}", f"unknown capability {c!r}")
    for i, rl in enumerate(proc.get("rlimits") or []):
        f = f"{field}.rlimits[{i}]"
        rl = _obj(rl, f)
        if rl.get("type") not in RLIMITS:
            raise _err(f"{f}.type", f"unknown rlimit {rl.get('type')!r}")
        _uint(rl.get("hard"), f"{f}.hard", 64)
        _uint(rl.get("soft"), f"{f}.soft", 64)
        if rl["soft"] > rl["hard"]:
            raise _err(f, "soft limit exceeds hard limit")
    if not isinstance(proc.get("noNewPrivileges", False), bool):
        raise _err(f"{field}.noNewPrivileges", "must be a boolean")
    oom = proc.get("oomScoreAdj")
    if oom is not None and (not isinstance(oom, int) or not -1000 <= oom <= 1000):
        raise _err(f"{field}.oomScoreAdj", "must be an integer in [-1000, 1000]")
    for k in UNSUPPORTED["process"]:
        if proc.get(k) is not None:
            raise _err(f"{field}.{k}", "not supported by berth-runtime")


def _validate_mounts(mounts: Any) -> None:
    from berth.runtime.mountopts import parse_options

    if mounts is None:
        return
    if not isinstance(mounts, list):
        raise _err("mounts", "must be a list")
    for i, m in enumerate(mounts):
        f = f"mounts[{i}]"
        m = _obj(m, f)
        d = m.get("destination")
        if not isinstance(d, str) or not d.startswith("/"):
            raise _err(f"{f}.destination", f"must be an absolute path, got {d!r}")
        if ".." in d.split("/"):
            raise _err(f"{f}.destination", "must not contain '..'")
        if "type" in m and not isinstance(m["type"], str):
            raise _err(f"{f}.type", "must be a string")
        if "source" in m and not isinstance(m["source"], str):
            raise _err(f"{f}.source", "must be a string")
        opts = m.get("options", [])
        if not _is_str_list(opts):
            raise _err(f"{f}.options", "must be a list of strings")
        try:
            mo = parse_options(opts)
        except ValueError as e:
            raise _err(f"{f}.options", str(e)) from None
        if m.get("uidMappings") or m.get("gidMappings"):
            raise _err(f"{f}.uidMappings", "id-mapped mounts are not supported")
        if m.get("type") == "bind" or mo.bind:
            if not m.get("source"):
                raise _err(f"{f}.source", "required for a bind mount")


def _validate_hooks(hooks: Any) -> None:
    hooks = _obj(hooks, "hooks")
    for name, lst in hooks.items():
        if name not in HOOK_NAMES:
            raise _err(f"hooks.{name}", "unknown hook")
        if not isinstance(lst, list):
            raise _err(f"hooks.{name}", "must be a list")
        for i, h in enumerate(lst):
            f = f"hooks.{name}[{i}]"
            h = _obj(h, f)
            if not isinstance(h.get("path"), str) or not h["path"].startswith("/"):
                raise _err(f"{f}.path", "must be an absolute path")
            if "args" in h and not _is_str_list(h["args"]):
                raise _err(f"{f}.args", "must be a list of strings")
            if "env" in h and not _is_str_list(h["env"]):
                raise _err(f"{f}.env", "must be a list of strings")
            if "timeout" in h and (not isinstance(h["timeout"], int) or h["timeout"] <= 0):
                raise _err(f"{f}.timeout", "must be a positive integer")


def _validate_idmaps(maps: Any, field: str) -> None:
    if not isinstance(maps, list) or not maps:
        raise _err(field, "required (non-empty) with a new user namespace")
    for i, m in enumerate(maps):
        m = _obj(m, f"{field}[{i}]")
        for k in ("containerID", "hostID", "size"):
            _uint(m.get(k), f"{field}[{i}].{k}")


def _validate_linux(spec: dict, check_seccomp: bool = True) -> None:
    linux = _obj(spec.get("linux"), "linux")
    seen: set[str] = set()
    for i, ns in enumerate(linux.get("namespaces") or []):
        f = f"linux.namespaces[{i}]"
        ns = _obj(ns, f)
        t = ns.get("type")
        if t not in NAMESPACE_TYPES:
            raise _err(f"{f}.type", f"unknown namespace type {t!r}")
        if t in seen:
            raise _err(f"{f}.type", f"namespace {t} given twice")
        seen.add(t)
        p = ns.get("path")
        if p:
            if not isinstance(p, str) or not p.startswith("/"):
                raise _err(f"{f}.path", "must be an absolute path")
            if not os.path.exists(p):
                raise _err(f"{f}.path", f"{p} does not exist")
        if t == "time" and not os.path.exists("/proc/self/ns/time"):
            raise _err(f"{f}.type", "the kernel has no time namespaces")
    new_user = "user" in seen and not any(
        n.get("type") == "user" and n.get("path") for n in linux.get("namespaces") or [])
    if new_user:
        _validate_idmaps(linux.get("uidMappings"), "linux.uidMappings")
        _validate_idmaps(linux.get("gidMappings"), "linux.gidMappings")
    elif linux.get("uidMappings") or linux.get("gidMappings"):
        raise _err("linux.uidMappings", "given without a new user namespace")
    if "uts" not in seen and spec.get("hostname"):
        raise _err("hostname", "set without a new uts namespace")
    if "timeOffsets" in linux and "time" not in seen:
        raise _err("linux.timeOffsets", "set without a time namespace")
    cp = linux.get("cgroupsPath")
    if cp is not None and not isinstance(cp, str):
        raise _err("linux.cgroupsPath", "must be a string")
    if cp and ".." in cp.replace(":", "/").split("/"):
        raise _err("linux.cgroupsPath", "must not contain '..'")
    res = linux.get("resources")
    if res is not None and not isinstance(res, dict):
        raise _err("linux.resources", "must be an object")
    for key in ("maskedPaths", "readonlyPaths"):
        v = linux.get(key)
        if v is not None and (not _is_str_list(v) or any(not p.startswith("/") for p in v)):
            raise _err(f"linux.{key}", "must be a list of absolute paths")
    for i, d in enumerate(linux.get("devices") or []):
        f = f"linux.devices[{i}]"
        d = _obj(d, f)
        if d.get("type") not in ("c", "b", "u", "p"):
            raise _err(f"{f}.type", f"must be one of c, b, u, p, got {d.get('type')!r}")
        p = d.get("path")
        if not isinstance(p, str) or not p.startswith("/dev/") or ".." in p.split("/"):
            raise _err(f"{f}.path", "must be an absolute path under /dev")
        if d["type"] != "p":
            _uint(d.get("major"), f"{f}.major")
            _uint(d.get("minor"), f"{f}.minor")
        for k in ("fileMode", "uid", "gid"):
            if k in d:
                _uint(d[k], f"{f}.{k}")
    sysctl = _obj(linux.get("sysctl"), "linux.sysctl")
    for k, v in sysctl.items():
        if not isinstance(v, str):
            raise _err(f"linux.sysctl.{k}", "value must be a string")
        if "/" in k or ".." in k or not k:
            raise _err(f"linux.sysctl.{k}", "invalid name")
        if k.startswith("net.") and "network" not in seen:
            raise _err(f"linux.sysctl.{k}", "needs a new network namespace")
        elif (k in _SYSCTL_IPC or k.startswith("fs.mqueue.")) and "ipc" not in seen:
            raise _err(f"linux.sysctl.{k}", "needs a new ipc namespace")
        elif k in ("kernel.hostname", "kernel.domainname") and "uts" not in seen:
            raise _err(f"linux.sysctl.{k}", "needs a new uts namespace")
        elif not (k.startswith("net.") or k in _SYSCTL_IPC or k.startswith("fs.mqueue.")
                  or k in ("kernel.hostname", "kernel.domainname")):
            raise _err(f"linux.sysctl.{k}", "not namespaced; refusing to change the host")
    prop = linux.get("rootfsPropagation")
    if prop not in (None, "", "private", "rprivate", "slave", "rslave", "shared", "rshared",
                    "unbindable", "runbindable"):
        raise _err("linux.rootfsPropagation", f"unknown propagation {prop!r}")
    sec = linux.get("seccomp")
    if sec is not None and check_seccomp:
        validate_seccomp(sec)
    for k in UNSUPPORTED["linux"]:
        if linux.get(k) is not None:
            raise _err(f"linux.{k}", "not supported by berth-runtime")
    mnt = [n for n in linux.get("namespaces") or [] if n.get("type") == "mount"]
    if not mnt or mnt[0].get("path"):
        raise _err("linux.namespaces", "a new mount namespace (without path) is required")


def validate_seccomp(profile: Any) -> None:
    from berth.runtime import seccomp

    if not isinstance(profile, dict):
        raise _err("linux.seccomp", "must be an object")
    try:
        seccomp.validate(profile)
    except InvalidArgument as e:
        raise InvalidArgument(f"config.json: linux.seccomp: {e}") from None


def namespaces(spec: dict) -> dict[str, str]:
    """{type: path or ''} from linux.namespaces."""
    return {n["type"]: n.get("path") or "" for n in (spec.get("linux") or {}).get("namespaces") or []}
