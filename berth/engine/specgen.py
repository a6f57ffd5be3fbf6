"""Build a container's OCI runtime config.json from its (merged) Config and its HostConfig.

Docker's defaults come from ``berth.oci.spec``; this module applies what `docker run` flags
change: command, env, user, workdir, tty, limits, capabilities, security options, namespaces,
mounts (planned by ``berth.volumes``), read-only root, init.
"""

from __future__ import annotations

import os
import shlex

from berth.errors import InvalidArgument
from berth.oci import spec as ocispec

TINI_PATHS = ("/usr/bin/tini-static", "/usr/bin/tini")
INIT_PATH = "/sbin/docker-init"
_SIGNALS = None


def merge_image_config(cfg: dict, image_cfg: dict) -> dict:
    """Fill a ContainerConfig from the image's config, as Docker does at create time."""
    out = dict(cfg)
    img = image_cfg or {}
    env = list(img.get("Env") or [])
    keys = {e.split("=", 1)[0]: i for i, e in enumerate(env)}
    for e in cfg.get("Env") or []:
        k = e.split("=", 1)[0]
        if k in keys:
            env[keys[k]] = e
        else:
            keys[k] = len(env)
            env.append(e)
    out["Env"] = env
    if cfg.get("Entrypoint") is None or cfg.get("Entrypoint") == []:
        out["Entrypoint"] = img.get("Entrypoint") if cfg.get("Entrypoint") is None else None
        if not cfg.get("Cmd"):
            out["Cmd"] = img.get("Cmd")
    elif not cfg.get("Cmd"):
        out["Cmd"] = None  # an Entrypoint given at create drops the image's Cmd
    for key in ("WorkingDir", "User", "StopSignal"):
        if not cfg.get(key):
            out[key] = img.get(key) or ""
    if not cfg.get("Healthcheck") and img.get("Healthcheck"):
        out["Healthcheck"] = img["Healthcheck"]
    for key in ("ExposedPorts", "Volumes", "Labels"):
        merged = dict(img.get(key) or {})
        merged.update(cfg.get(key) or {})
        out[key] = merged or None
    if isinstance(out.get("Entrypoint"), str):
        out["Entrypoint"] = ["/bin/sh", "-c", out["Entrypoint"]]
    if isinstance(out.get("Cmd"), str):
        out["Cmd"] = ["/bin/sh", "-c", out["Cmd"]]
    return out


def command(cfg: dict) -> list[str]:
    args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
    if not args:
        raise InvalidArgument("no command specified")
    return args


def parse_signal(value: str | int | None, default: int = 15) -> int:
    """'SIGTERM', 'TERM', '15' → 15 (Docker's signal.ParseSignal)."""
    import signal

    if value in (None, ""):
        return default
    if isinstance(value, int):
        return value
    v = str(value).strip().upper()
    if v.isdigit():
        return int(v)
    name = v if v.startswith("SIG") else "SIG" + v
    try:
        return int(getattr(signal, name))
    except AttributeError:
        if name.startswith("SIGRTMIN+"):
            return int(signal.SIGRTMIN) + int(name[9:])
        raise InvalidArgument(f"Invalid signal: {value}") from None


def _memory(value) -> int:
    return int(value or 0)


def resources(host: dict) -> dict:
    """linux.resources from HostConfig limits."""
    r: dict = {}
    mem: dict = {}
    if _memory(host.get("Memory")) > 0:
        mem["limit"] = int(host["Memory"])
    swap = host.get("MemorySwap")
    if swap not in (None, 0) and mem.get("limit"):
        mem["swap"] = int(swap)  # -1 = unlimited
    if _memory(host.get("MemoryReservation")) > 0:
        mem["reservation"] = int(host["MemoryReservation"])
    if host.get("MemorySwappiness") not in (None, -1):
        mem["swappiness"] = int(host["MemorySwappiness"])
    if host.get("OomKillDisable"):
        mem["disableOOMKiller"] = True
    if mem:
        r["memory"] = mem
    cpu: dict = {}
    if host.get("CpuShares"):
        cpu["shares"] = int(host["CpuShares"])
    if host.get("NanoCpus"):
        if host.get("CpuQuota"):
            raise InvalidArgument("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
        cpu["period"] = 100000
        cpu["quota"] = int(host["NanoCpus"]) * 100000 // 1_000_000_000
    else:
        if host.get("CpuQuota"):
            cpu["quota"] = int(host["CpuQuota"])
        if host.get("CpuPeriod"):
            cpu["period"] = int(host["CpuPeriod"])
    if host.get("CpusetCpus"):
        cpu["cpus"] = host["CpusetCpus"]
    if host.get("CpusetMems"):
        cpu["mems"] = host["CpusetMems"]
    if cpu:
        r["cpu"] = cpu
    pids = host.get("PidsLimit")
    if pids not in (None, 0):
        r["pids"] = {"limit": int(pids) if int(pids) > 0 else -1}
    blkio: dict = {}
    if host.get("BlkioWeight"):
        blkio["weight"] = int(host["BlkioWeight"])
    for src, dst in (("BlkioDeviceReadBps", "throttleReadBpsDevice"),
                     ("BlkioDeviceWriteBps", "throttleWriteBpsDevice"),
                     ("BlkioDeviceReadIOps", "throttleReadIOPSDevice"),
                     ("BlkioDeviceWriteIOps", "throttleWriteIOPSDevice")):
        devs = []
        for d in host.get(src) or []:
            st = os.stat(d["Path"])
            devs.append({"major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                         "rate": int(d["Rate"])})
        if devs:
            blkio[dst] = devs
    if blkio:
        r["blockIO"] = blkio
    return r


def _rlimits(host: dict) -> list[dict]:
    out = []
    for u in host.get("Ulimits") or []:
        name = "RLIMIT_" + str(u["Name"]).upper()
        out.append({"type": name, "soft": int(u["Soft"]), "hard": int(u["Hard"])})
    return out


def build_spec(*, cid: str, cfg: dict, host: dict, rootfs: str, user: dict,
               etc_files: dict[str, str] | None = None, cgroups_path: str = "",
               netns_path: str | None = None, cgroupns: bool = False,
               mounts: list[dict] | None = None) -> dict:
    """The config.json for a container.

    ``user`` is the resolved process user ({"uid", "gid", "additionalGids"}); ``etc_files`` maps
    container paths (/etc/hosts, /etc/resolv.conf, /etc/hostname) to host files to bind-mount;
    ``mounts`` are the container's volume, bind and tmpfs mounts as runtime-spec mounts
    (``ResolvedMount.to_oci()`` of the mounts ``berth.volumes`` planned at create).
    """
    args = command(cfg)
    user_mounts = list(mounts or ())
    tty = bool(cfg.get("Tty"))
    hostname = cfg.get("Hostname") or cid[:12]
    s = ocispec.default_spec(args, terminal=tty, rootfs=rootfs, hostname=hostname, cgroupns=cgroupns)
    proc = s["process"]
    env = list(cfg.get("Env") or [])
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, ocispec.DEFAULT_PATH)
    env.insert(1, f"HOSTNAME={hostname}")
    if tty and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    proc["env"] = env
    proc["cwd"] = cfg.get("WorkingDir") or "/"
    proc["user"] = user
    if host.get("ConsoleSize") and any(host["ConsoleSize"]):
        h, w = host["ConsoleSize"]
        proc["consoleSize"] = {"height": int(h), "width": int(w)}
    rl = _rlimits(host)
    if rl:
        names = {r["type"] for r in rl}
        proc["rlimits"] = [r for r in proc.get("rlimits", []) if r["type"] not in names] + rl
    if host.get("OomScoreAdj"):
        proc["oomScoreAdj"] = int(host["OomScoreAdj"])
    linux = s["linux"]
    if host.get("Privileged"):
        s = ocispec.privileged(s)
        linux = s["linux"]
        proc = s["process"]
    elif host.get("CapAdd") or host.get("CapDrop"):
        s = ocispec.with_capabilities(s, host.get("CapAdd") or [], host.get("CapDrop") or [])
        linux = s["linux"]
        proc = s["process"]
    for opt in host.get("SecurityOpt") or []:
        key, _, val = opt.replace("=", ":", 1).partition(":")
        if key == "no-new-privileges":
            proc["noNewPrivileges"] = val.lower() not in ("false", "0")
        elif key == "seccomp":
            if val == "unconfined":
                linux.pop("seccomp", None)
            else:
                import json

                try:
                    prof = json.loads(val)
                except ValueError:
                    raise InvalidArgument(f"invalid --security-opt seccomp profile: {val[:80]}") from None
                linux["seccomp"] = ocispec.resolve_seccomp_profile(
                    prof, proc["capabilities"]["bounding"]) if "syscalls" in prof and \
                    "defaultAction" in prof and any("names" in r for r in prof["syscalls"]) else prof
        elif key in ("apparmor", "label"):
            continue
        else:
            raise InvalidArgument(f"invalid --security-opt: {opt!r}")
    s["root"]["readonly"] = bool(host.get("ReadonlyRootfs"))
    # mounts
    mounts = s["mounts"]
    if host.get("ShmSize"):
        for m in mounts:
            if m["destination"] == "/dev/shm":
                m["options"] = [o for o in m["options"] if not o.startswith("size=")] + \
                    [f"size={int(host['ShmSize']) // 1024}k"]
    extra: list[dict] = [dict(m) for m in user_mounts]
    for dest, src in (etc_files or {}).items():
        if not any(m["destination"] == dest for m in extra):
            extra.append({"destination": dest, "type": "bind", "source": src,
                          "options": ["rbind", "rprivate", "ro" if host.get("ReadonlyRootfs") else "rw"]})
    dests = {m["destination"] for m in extra}
    s["mounts"] = [m for m in mounts if m["destination"] not in dests] + extra
    if host.get("Init"):
        tini = next((p for p in TINI_PATHS if os.path.exists(p)), None)
        if tini is None:
            raise InvalidArgument("--init: no tini binary found on the host (install the tini package)")
        s["mounts"].append({"destination": INIT_PATH, "type": "bind", "source": tini,
                            "options": ["bind", "ro"]})
        proc["args"] = [INIT_PATH, "--", *proc["args"]]
    # namespaces
    ns = {n["type"]: n for n in linux["namespaces"]}
    net = host.get("NetworkMode") or "default"
    if net == "host":
        ns.pop("network", None)
        ns.pop("uts", None) if not cfg.get("Hostname") else None
    elif netns_path:
        ns["network"] = {"type": "network", "path": netns_path}
    for key, kind in (("PidMode", "pid"), ("IpcMode", "ipc"), ("UTSMode", "uts")):
        mode = host.get(key) or ""
        if mode == "host":
            ns.pop(kind, None)
        elif mode.startswith("container:"):
            ns[kind] = {"type": kind, "path": mode.split(":", 1)[1]}  # resolved by the engine
    linux["namespaces"] = list(ns.values())
    if host.get("Sysctls"):
        linux["sysctl"] = dict(host["Sysctls"])
    res = resources(host)
    linux.setdefault("resources", {}).update(res)
    if cgroups_path:
        linux["cgroupsPath"] = cgroups_path
    return s


def split_env_file(text: str) -> list[str]:
    """Lines of an --env-file (comments and blanks skipped)."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def shell_words(s: str) -> list[str]:
    return shlex.split(s)
