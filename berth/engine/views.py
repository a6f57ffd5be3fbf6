"""Docker Engine API shapes of a container: ContainerInspectResponse and ContainerSummary."""

from __future__ import annotations

import time

from berth.containers.state import Status
from berth.containers.store import Container
from berth.humanize import human_duration

ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(ts: float) -> str:
    if not ts:
        return ZERO_TIME
    ns = int(ts * 1e9)
    secs, nanos = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{nanos:09d}Z"


HOST_CONFIG_DEFAULTS: dict = {
    "Binds": None,
    "ContainerIDFile": "",
    "LogConfig": {"Type": "json-file", "Config": {}},
    "NetworkMode": "bridge",
    "PortBindings": {},
    "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
    "AutoRemove": False,
    "VolumeDriver": "",
    "VolumesFrom": None,
    "ConsoleSize": [0, 0],
    "CapAdd": None,
    "CapDrop": None,
    "CgroupnsMode": "host",
    "Dns": [],
    "DnsOptions": [],
    "DnsSearch": [],
    "ExtraHosts": None,
    "GroupAdd": None,
    "IpcMode": "private",
    "Cgroup": "",
    "Links": None,
    "OomScoreAdj": 0,
    "PidMode": "",
    "Privileged": False,
    "PublishAllPorts": False,
    "ReadonlyRootfs": False,
    "SecurityOpt": None,
    "UTSMode": "",
    "UsernsMode": "",
    "ShmSize": 67108864,
    "Runtime": "berth",
    "Isolation": "",
    "CpuShares": 0,
    "Memory": 0,
    "NanoCpus": 0,
    "CgroupParent": "",
    "BlkioWeight": 0,
    "BlkioWeightDevice": [],
    "BlkioDeviceReadBps": [],
    "BlkioDeviceWriteBps": [],
    "BlkioDeviceReadIOps": [],
    "BlkioDeviceWriteIOps": [],
    "CpuPeriod": 0,
    "CpuQuota": 0,
    "CpuRealtimePeriod": 0,
    "CpuRealtimeRuntime": 0,
    "CpusetCpus": "",
    "CpusetMems": "",
    "Devices": [],
    "DeviceCgroupRules": None,
    "DeviceRequests": None,
    "MemoryReservation": 0,
    "MemorySwap": 0,
    "MemorySwappiness": None,
    "OomKillDisable": None,
    "PidsLimit": None,
    "Ulimits": [],
    "CpuCount": 0,
    "CpuPercent": 0,
    "IOMaximumIOps": 0,
    "IOMaximumBandwidth": 0,
    "Mounts": None,
    "MaskedPaths": None,
    "ReadonlyPaths": None,
    "Init": None,
    "Tmpfs": None,
    "Sysctls": None,
}

CONFIG_KEYS = (
    "Hostname",
    "Domainname",
    "User",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "ExposedPorts",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "Env",
    "Cmd",
    "Healthcheck",
    "ArgsEscaped",
    "Image",
    "Volumes",
    "WorkingDir",
    "Entrypoint",
    "NetworkDisabled",
    "MacAddress",
    "OnBuild",
    "Labels",
    "StopSignal",
    "StopTimeout",
    "Shell",
)


def normalize_host_config(host: dict | None) -> dict:
    """HostConfig with every field filled in (inspect must not echo the request)."""
    out = dict(HOST_CONFIG_DEFAULTS)
    for k, v in (host or {}).items():
        if v is not None or k not in out:
            out[k] = v
    if not out.get("LogConfig") or not out["LogConfig"].get("Type"):
        out["LogConfig"] = {"Type": "json-file", "Config": (out.get("LogConfig") or {}).get("Config") or {}}
    out["LogConfig"].setdefault("Config", {})
    rp = out.get("RestartPolicy") or {}
    out["RestartPolicy"] = {
        "Name": rp.get("Name") or "no",
        "MaximumRetryCount": int(rp.get("MaximumRetryCount") or 0),
    }
    if out.get("NetworkMode") in (None, "", "default"):
        out["NetworkMode"] = "bridge"
    return out


def normalize_config(cfg: dict) -> dict:
    out = {k: cfg.get(k) for k in CONFIG_KEYS}
    for k in ("Hostname", "Domainname", "User", "Image", "WorkingDir"):
        out[k] = out[k] or ""
    for k in ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce"):
        out[k] = bool(out[k])
    out["Labels"] = out["Labels"] or {}
    out["Env"] = out["Env"] or []
    if not out.get("StopSignal"):
        out.pop("StopSignal")
    if out.get("StopTimeout") is None:
        out.pop("StopTimeout")
    for k in ("Healthcheck", "MacAddress", "NetworkDisabled", "Shell", "ArgsEscaped"):
        if out.get(k) in (None, ""):
            out.pop(k)
    return out


def state_view(c: Container) -> dict:
    s = c.state
    status = s.status
    running = status in (Status.RUNNING, Status.PAUSED, Status.RESTARTING)
    view = {
        "Status": status,
        "Running": running,
        "Paused": status == Status.PAUSED,
        "Restarting": status == Status.RESTARTING,
        "OOMKilled": s.oom_killed,
        "Dead": status == Status.DEAD,
        "Pid": s.pid if running else 0,
        "ExitCode": s.exit_code,
        "Error": s.error,
        "StartedAt": rfc3339(s.started_at),
        "FinishedAt": rfc3339(s.finished_at),
    }
    if s.health:
        view["Health"] = s.health
    return view


def inspect(c: Container, *, paths: dict, graph: dict, size: dict | None = None) -> dict:
    """ContainerInspectResponse."""
    host = normalize_host_config(c.host_config)
    cfg = normalize_config(c.config)
    args = list(c.config.get("Entrypoint") or []) + list(c.config.get("Cmd") or [])
    net = c.extra.get("network") or {}
    out = {
        "Id": c.id,
        "Created": rfc3339(c.created),
        "Path": args[0] if args else "",
        "Args": args[1:],
        "State": state_view(c),
        "Image": c.image_id,
        "ResolvConfPath": paths.get("resolv", ""),
        "HostnamePath": paths.get("hostname", ""),
        "HostsPath": paths.get("hosts", ""),
        "LogPath": paths.get("log", ""),
        "Name": "/" + c.name,
        "RestartCount": c.state.restart_count,
        "Driver": graph.get("Name", ""),
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": c.extra.get("exec_ids") or None,
        "HostConfig": host,
        "GraphDriver": graph,
        "Mounts": c.extra.get("mounts") or [],
        "Config": cfg,
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": net.get("sandbox", ""),
            "SandboxKey": net.get("sandbox_key", ""),
            "HairpinMode": False,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "Ports": net.get("ports") or {},
            "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None,
            "EndpointID": "",
            "Gateway": net.get("gateway", ""),
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "IPAddress": net.get("ip", ""),
            "IPPrefixLen": net.get("prefix", 0),
            "IPv6Gateway": "",
            "MacAddress": net.get("mac", ""),
            "Networks": net.get("networks") or {},
        },
    }
    if size:
        out.update(size)
    return out


def status_text(c: Container, now: float | None = None) -> str:
    """Docker's human status: 'Up 2 seconds', 'Exited (0) 3 minutes ago', 'Created'."""
    now = now or time.time()
    s = c.state
    if s.status == Status.RUNNING:
        return (
            "Up "
            + human_duration(now - s.started_at)
            + (
                f" ({'health: starting' if s.health['Status'] == 'starting' else s.health['Status']})"
                if s.health and s.health.get("Status") not in (None, "none")
                else ""
            )
        )
    if s.status == Status.PAUSED:
        return "Up " + human_duration(now - s.started_at) + " (Paused)"
    if s.status == Status.RESTARTING:
        return f"Restarting ({s.exit_code}) " + human_duration(now - s.finished_at) + " ago"
    if s.status == Status.EXITED:
        if not s.finished_at:
            return "Created"
        return f"Exited ({s.exit_code}) " + human_duration(now - s.finished_at) + " ago"
    if s.status == Status.DEAD:
        return "Dead"
    if s.status == Status.REMOVING:
        return "Removal In Progress"
    return "Created"


def summary(c: Container, image_ref: str, size: dict | None = None) -> dict:
    """ContainerSummary (one item of GET /containers/json)."""
    args = list(c.config.get("Entrypoint") or []) + list(c.config.get("Cmd") or [])
    net = c.extra.get("network") or {}
    ports = []
    for key, binds in (net.get("ports") or {}).items():
        port, _, proto = key.partition("/")
        if not binds:
            ports.append({"PrivatePort": int(port), "Type": proto or "tcp"})
        for b in binds or []:
            ports.append(
                {
                    "IP": b.get("HostIp") or "0.0.0.0",
                    "PrivatePort": int(port),
                    "PublicPort": int(b.get("HostPort") or 0),
                    "Type": proto or "tcp",
                }
            )
    out = {
        "Id": c.id,
        "Names": ["/" + c.name],
        "Image": image_ref,
        "ImageID": c.image_id,
        "Command": " ".join(args),
        "Created": int(c.created),
        "Ports": ports,
        "Labels": c.config.get("Labels") or {},
        "State": c.state.status,
        "Status": status_text(c),
        "HostConfig": {"NetworkMode": normalize_host_config(c.host_config)["NetworkMode"]},
        "NetworkSettings": {"Networks": net.get("networks") or {}},
        "Mounts": c.extra.get("mounts") or [],
    }
    if size:
        out.update(size)
    return out


def matches(
    c: Container, filters: dict[str, list[str]], *, image_matches=None, before=None, since=None
) -> bool:
    """Docker's container list filters."""
    for key, values in (filters or {}).items():
        if not values:
            continue
        if key == "status" and c.state.status not in values:
            return False
        if key == "id" and not any(c.id.startswith(v) for v in values):
            return False
        if key == "name" and not any(v.lstrip("/") in c.name for v in values):
            return False
        if key == "label":
            labels = c.config.get("Labels") or {}
            for v in values:
                k, eq, val = v.partition("=")
                if k not in labels or (eq and labels[k] != val):
                    return False
        if key == "exited":
            if c.state.status != Status.EXITED or str(c.state.exit_code) not in values:
                return False
        if key == "ancestor" and image_matches is not None and not any(image_matches(c, v) for v in values):
            return False
        if key == "before" and before is not None and not c.created < before:
            return False
        if key == "since" and since is not None and not c.created > since:
            return False
        if key == "health":
            h = (c.state.health or {}).get("Status", "none")
            if h not in values:
                return False
        if key == "is-task" and "true" in values:
            return False
    return True
