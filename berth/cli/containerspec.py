"""`create`/`run` flags → the Engine API create body (ContainerConfig + HostConfig + NetworkingConfig).

Pure logic (file reads for --env-file/--label-file/seccomp profiles aside); mirrors the docker
CLI's ``cli/command/container/opts.go``. Errors are ``SpecError`` (the CLI exits 125).
"""

from __future__ import annotations

import os

from berth.cli.flags import Flag, Flags

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class SpecError(ValueError):
    """A flag value that cannot be translated; printed as is, exit 125."""


def _f(names: str, dest: str, kind: type = str, default: Any = None, help: str = "") -> Flag:
    return Flag(tuple(names.split()), dest, kind, default, help=help)


# Flags shared by create and run (run adds -d, --rm-less extras, --sig-proxy, --detach-keys).
CREATE_FLAGS = Flags([
    _f("-a --attach", "attach", list, help="Attach to STDIN, STDOUT or STDERR"),
    _f("--add-host", "add_host", list, help="Add a custom host-to-IP mapping (host:ip)"),
    _f("--blkio-weight", "blkio_weight", int, help="Block IO (relative weight), between 10 and 1000"),
    _f("--cap-add", "cap_add", list, help="Add Linux capabilities"),
    _f("--cap-drop", "cap_drop", list, help="Drop Linux capabilities"),
    _f("--cgroup-parent", "cgroup_parent", str, help="Optional parent cgroup for the container"),
    _f("--cgroupns", "cgroupns", str, help="Cgroup namespace to use (host|private)"),
    _f("--cidfile", "cidfile", str, help="Write the container ID to the file"),
    _f("--cpu-period", "cpu_period", int, help="Limit CPU CFS (Completely Fair Scheduler) period"),
    _f("--cpu-quota", "cpu_quota", int, help="Limit CPU CFS (Completely Fair Scheduler) quota"),
    _f("-c --cpu-shares", "cpu_shares", int, help="CPU shares (relative weight)"),
    _f("--cpus", "cpus", str, help="Number of CPUs"),
    _f("--cpuset-cpus", "cpuset_cpus", str, help="CPUs in which to allow execution (0-3, 0,1)"),
    _f("--cpuset-mems", "cpuset_mems", str, help="MEMs in which to allow execution (0-3, 0,1)"),
    _f("--device", "device", list, help="Add a host device to the container"),
    _f("--dns", "dns", list, help="Set custom DNS servers"),
    _f("--dns-option", "dns_option", list, help="Set DNS options"),
    _f("--dns-search", "dns_search", list, help="Set custom DNS search domains"),
    _f("--domainname", "domainname", str, help="Container NIS domain name"),
    _f("--entrypoint", "entrypoint", str, help="Overwrite the default ENTRYPOINT of the image"),
    _f("-e --env", "env", list, help="Set environment variables"),
    _f("--env-file", "env_file", list, help="Read in a file of environment variables"),
    _f("--expose", "expose", list, help="Expose a port or a range of ports"),
    _f("--group-add", "group_add", list, help="Add additional groups to join"),
    _f("--health-cmd", "health_cmd", str, help="Command to run to check health"),
    _f("--health-interval", "health_interval", str, help="Time between running the check (ms|s|m|h)"),
    _f("--health-retries", "health_retries", int, help="Consecutive failures needed to report unhealthy"),
    _f("--health-start-interval", "health_start_interval", str,
       help="Time between running the check during the start period (ms|s|m|h)"),
    _f("--health-start-period", "health_start_period", str,
       help="Start period for the container to initialize before starting health-retries countdown"),
    _f("--health-timeout", "health_timeout", str, help="Maximum time to allow one check to run (ms|s|m|h)"),
    _f("-h --hostname", "hostname", str, help="Container host name"),
    _f("--init", "init", bool, help="Run an init inside the container that forwards signals and reaps "
       "processes"),
    _f("-i --interactive", "interactive", bool, help="Keep STDIN open even if not attached"),
    _f("--ip", "ip", str, help="IPv4 address (e.g., 172.30.100.104)"),
    _f("--ip6", "ip6", str, help="IPv6 address (e.g., 2001:db8::33)"),
    _f("--ipc", "ipc", str, help="IPC mode to use"),
    _f("--isolation", "isolation", str, help="Container isolation technology"),
    _f("-l --label", "label", list, help="Set meta data on a container"),
    _f("--label-file", "label_file", list, help="Read in a line delimited file of labels"),
    _f("--link", "link", list, help="Add link to another container"),
    _f("--log-driver", "log_driver", str, help="Logging driver for the container"),
    _f("--log-opt", "log_opt", list, help="Log driver options"),
    _f("--mac-address", "mac_address", str, help="Container MAC address (e.g., 92:d0:c6:0a:29:33)"),
    _f("-m --memory", "memory", str, help="Memory limit"),
    _f("--memory-reservation", "memory_reservation", str, help="Memory soft limit"),
    _f("--memory-swap", "memory_swap", str,
       help="Swap limit equal to memory plus swap: '-1' to enable unlimited swap"),
    _f("--memory-swappiness", "memory_swappiness", int, -1,
       help="Tune container memory swappiness (0 to 100)"),
    _f("--mount", "mount", list, help="Attach a filesystem mount to the container"),
    _f("--name", "name", str, help="Assign a name to the container"),
    _f("--network --net", "network", str, help="Connect a container to a network"),
    _f("--network-alias --net-alias", "network_alias", list,
       help="Add network-scoped alias for the container"),
    _f("--no-healthcheck", "no_healthcheck", bool, help="Disable any container-specified HEALTHCHECK"),
    _f("--oom-kill-disable", "oom_kill_disable", bool, help="Disable OOM Killer"),
    _f("--oom-score-adj", "oom_score_adj", int, help="Tune host's OOM preferences (-1000 to 1000)"),
    _f("--pid", "pid", str, help="PID namespace to use"),
    _f("--pids-limit", "pids_limit", int, help="Tune container pids limit (set -1 for unlimited)"),
    _f("--platform", "platform", str, help="Set platform if server is multi-platform capable"),
    _f("--privileged", "privileged", bool, help="Give extended privileges to this container"),
    _f("-p --publish", "publish", list, help="Publish a container's port(s) to the host"),
    _f("-P --publish-all", "publish_all", bool, help="Publish all exposed ports to random ports"),
    _f("--pull", "pull", str, "missing", help='Pull image before creating ("always", "missing", "never")'),
    _f("-q --quiet", "quiet", bool, help="Suppress the pull output"),
    _f("--read-only", "read_only", bool, help="Mount the container's root filesystem as read only"),
    _f("--restart", "restart", str, "no", help="Restart policy to apply when a container exits"),
    _f("--rm", "rm", bool, help="Automatically remove the container and its associated anonymous volumes "
                               "when it exits"),
    _f("--runtime", "runtime", str, help="Runtime to use for this container"),
    _f("--security-opt", "security_opt", list, help="Security Options"),
    _f("--shm-size", "shm_size", str, help="Size of /dev/shm"),
    _f("--stop-signal", "stop_signal", str, help="Signal to stop the container"),
    _f("--stop-timeout", "stop_timeout", int, help="Timeout (in seconds) to stop a container"),
    _f("--storage-opt", "storage_opt", list, help="Storage driver options for the container"),
    _f("--sysctl", "sysctl", list, help="Sysctl options"),
    _f("--tmpfs", "tmpfs", list, help="Mount a tmpfs directory"),
    _f("-t --tty", "tty", bool, help="Allocate a pseudo-TTY"),
    _f("--ulimit", "ulimit", list, help="Ulimit options"),
    _f("-u --user", "user", str, help="Username or UID (format: <name|uid>[:<group|gid>])"),
    _f("--userns", "userns", str, help="User namespace to use"),
    _f("--uts", "uts", str, help="UTS namespace to use"),
    _f("-v --volume", "volume", list, help="Bind mount a volume"),
    _f("--volume-driver", "volume_driver", str, help="Optional volume driver for the container"),
    _f("--volumes-from", "volumes_from", list, help="Mount volumes from the specified container(s)"),
    _f("-w --workdir", "workdir", str, help="Working directory inside the container"),
])
RUN_FLAGS = Flags(sorted(CREATE_FLAGS + [
    _f("-d --detach", "detach", bool, help="Run container in background and print container ID"),
    _f("--detach-keys", "detach_keys", str, help="Override the key sequence for detaching a container"),
    _f("--sig-proxy", "sig_proxy", bool, True, help="Proxy received signals to the process"),
], key=lambda f: f.names[-1]))


# -- value parsers ---------------------------------------------------------------------------------
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_bytes(value: str) -> int:
    """go-units RAMInBytes: ``512m``, ``1.5g``, ``1024`` (bytes), ``2KiB``; binary multiples."""
    v = value.strip().lower()
    num = v.rstrip("abcdefghijklmnopqrstuvwxyz")
    suffix = v[len(num):]
    if suffix.endswith("ib"):
        suffix = suffix[:-2]
    elif len(suffix) == 2 and suffix.endswith("b"):
        suffix = suffix[:-1]
    if suffix not in _UNITS or not num:
        raise SpecError(f"invalid size: '{value}'")
    try:
        n = float(num)
    except ValueError:
        raise SpecError(f"invalid size: '{value}'") from None
    if n < 0:
        raise SpecError(f"invalid size: '{value}'")
    return int(n * _UNITS[suffix])


def mem_swap(value: str) -> int:
    return -1 if value.strip() == "-1" else ram_bytes(value)


_DUR = {"ns": 1, "us": 1000, "µs": 1000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def duration_ns(value: str, flag: str = "") -> int:
    """Go time.ParseDuration (``1m30s``, ``500ms``, ``0``) → nanoseconds."""
    s = value.strip()
    if s in ("0", ""):
        return 0
    total, i = 0.0, 0
    while i < len(s):
        j = i
        while j < len(s) and (s[j].isdigit() or s[j] == "."):
            j += 1
        k = j
        while k < len(s) and not (s[k].isdigit() or s[k] == "."):
            k += 1
        num, unit = s[i:j], s[j:k]
        if not num or unit not in _DUR:
            raise SpecError(f'invalid argument "{value}" for "{flag}" flag: time: invalid duration "{value}"')
        total += float(num) * _DUR[unit]
        i = k
    return int(total)


def nano_cpus(value: str) -> int:
    try:
        n = float(value)
    except ValueError:
        raise SpecError(f'invalid argument "{value}" for "--cpus" flag: failed to parse {value} as a '
                        f'rational number') from None
    if n < 0:
        raise SpecError(f'invalid argument "{value}" for "--cpus" flag: value must be positive')
    return int(round(n * 1e9))


def read_kv_file(path: str, env_lookup: bool) -> list[str]:
    """docker's --env-file/--label-file: ``#`` comments and blank lines skipped; a bare ``VAR``
    takes the local environment's value (env files) or stays as is."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as e:
        raise SpecError(f"open {path}: {e.strerror.lower() if e.strerror else e}") from None
    out = []
    for raw in text.splitlines():
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, eq, val = line.partition("=")
        if not key:
            raise SpecError(f"no variable name on line '{raw}'")
        if " " in key.strip() or "\t" in key.strip():
            raise SpecError(f"variable '{key}' contains whitespaces")
        if eq:
            out.append(f"{key}={val}")
        elif env_lookup:
            name = line.rstrip()
            if name in os.environ:
                out.append(f"{name}={os.environ[name]}")
        else:
            out.append(line.rstrip())
    return out


def env_value(item: str) -> str:
    """``-e VAR`` (no ``=``) takes the value from the local environment when it is set."""
    if "=" not in item:
        if not item:
            raise SpecError("invalid environment variable: ")
        if item in os.environ:
            return f"{item}={os.environ[item]}"
    elif item.startswith("="):
        raise SpecError(f"invalid environment variable: {item}")
    return item


def _port_range(s: str, what: str) -> tuple[int, int]:
    lo, dash, hi = s.partition("-")
    try:
        a = int(lo)
        b = int(hi) if dash else a
    except ValueError:
        raise SpecError(f"invalid {what}: {s}") from None
    if not (0 <= a <= 65535 and 0 <= b <= 65535) or b < a:
        raise SpecError(f"invalid {what}: {s}")
    return a, b


def parse_publish(spec: str) -> list[tuple[str, dict]]:
    """``[ip:[hostPort]:]containerPort[/proto]`` with ranges → [("80/tcp", {"HostIp", "HostPort"})]."""
    rest, slash, proto = spec.rpartition("/") if "/" in spec else (spec, "", "tcp")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise SpecError(f"invalid proto: {proto}")
    ip = ""
    if rest.startswith("["):  # [::1]:80:80
        end = rest.find("]")
        if end < 0:
            raise SpecError(f"invalid IP address: {rest}")
        ip, rest = rest[1:end], rest[end + 1:].removeprefix(":")
        parts = rest.split(":")
        if len(parts) == 1:
            parts = ["", parts[0]]
        host, ctr = parts[0], parts[-1]
    else:
        parts = rest.split(":")
        if len(parts) == 1:
            host, ctr = "", parts[0]
        elif len(parts) == 2:
            host, ctr = parts
        elif len(parts) == 3:
            ip, host, ctr = parts
        else:
            raise SpecError(f"invalid port format: {spec}")
    if not ctr:
        raise SpecError(f"no port specified: {spec}<empty>")
    c_lo, c_hi = _port_range(ctr, "containerPort")
    h_lo = h_hi = 0
    if host:
        h_lo, h_hi = _port_range(host, "hostPort")
    n = c_hi - c_lo
    if host and n > 0 and h_hi - h_lo != n:
        raise SpecError(f"invalid ranges specified for container and host Ports: {ctr} and {host}")
    out = []
    for i in range(n + 1):
        if not host:
            hp = ""
        elif n == 0 and h_hi != h_lo:
            hp = f"{h_lo}-{h_hi}"  # one container port, a host range: the engine picks
        else:
            hp = str(h_lo + i)
        out.append((f"{c_lo + i}/{proto}", {"HostIp": ip, "HostPort": hp}))
    return out


def parse_expose(spec: str) -> list[str]:
    port, _, proto = spec.partition("/")
    lo, hi = _port_range(port, "range format for --expose")
    return [f"{p}/{proto or 'tcp'}" for p in range(lo, hi + 1)]


def parse_mount(spec: str) -> dict:
    """``--mount type=bind,source=/a,target=/b,readonly`` (CSV) → a HostConfig.Mounts entry."""
    import csv
    fields = next(csv.reader([spec]), [])
    m: dict[str, Any] = {"Type": "volume"}
    ro: bool | None = None
    bind: dict[str, Any] = {}
    vol: dict[str, Any] = {}
    tmp: dict[str, Any] = {}
    for field in fields:
        key, eq, val = field.partition("=")
        key = key.strip().lower()
        if not eq and key not in ("readonly", "ro", "volume-nocopy", "bind-nonrecursive"):
            raise SpecError(f"invalid field '{field}' must be a key=value pair")
        if key == "type":
            m["Type"] = val
        elif key in ("source", "src"):
            m["Source"] = val
        elif key in ("target", "dst", "destination"):
            m["Target"] = val
        elif key in ("readonly", "ro"):
            ro = _csv_bool(field, val, eq)
        elif key == "consistency":
            m["Consistency"] = val
        elif key == "bind-propagation":
            bind["Propagation"] = val.lower()
        elif key == "bind-nonrecursive":
            bind["NonRecursive"] = _csv_bool(field, val, eq)
        elif key == "volume-nocopy":
            vol["NoCopy"] = _csv_bool(field, val, eq)
        elif key == "volume-label":
            k, _, v = val.partition("=")
            vol.setdefault("Labels", {})[k] = v
        elif key == "volume-driver":
            vol.setdefault("DriverConfig", {})["Name"] = val
        elif key == "volume-opt":
            k, _, v = val.partition("=")
            vol.setdefault("DriverConfig", {}).setdefault("Options", {})[k] = v
        elif key == "volume-subpath":
            vol["Subpath"] = val
        elif key == "tmpfs-size":
            tmp["SizeBytes"] = ram_bytes(val)
        elif key == "tmpfs-mode":
            try:
                tmp["Mode"] = int(val, 8)
            except ValueError:
                raise SpecError(f"invalid value for {key}: {val}") from None
        else:
            raise SpecError(f"unexpected key '{key}' in '{field}'")
    kind = m["Type"]
    if kind not in ("bind", "volume", "tmpfs", "npipe", "cluster", "image"):
        raise SpecError(f"invalid mount type: {kind!r}" if kind else "type is required")
    if not m.get("Target"):
        raise SpecError("target is required")
    if ro is not None:
        m["ReadOnly"] = ro
    if bind:
        if kind != "bind":
            raise SpecError(f"cannot mix 'bind-*' options with mount type '{kind}'")
        m["BindOptions"] = bind
    if vol:
        if kind != "volume":
            raise SpecError(f"cannot mix 'volume-*' options with mount type '{kind}'")
        m["VolumeOptions"] = vol
    if tmp:
        if kind != "tmpfs":
            raise SpecError(f"cannot mix 'tmpfs-*' options with mount type '{kind}'")
        m["TmpfsOptions"] = tmp
    if kind == "bind" and not m.get("Source"):
        raise SpecError("source is required when specifying bind mounts")
    return m


def _csv_bool(field: str, val: str, eq: str) -> bool:
    if not eq:
        return True
    lv = val.lower()
    if lv in ("1", "true"):
        return True
    if lv in ("0", "false"):
        return False
    raise SpecError(f"invalid value for {field.partition('=')[0]}: {val}")


def parse_volume(spec: str) -> tuple[str | None, str]:
    """``-v``: a bind/named volume (→ Binds, returns the spec with a relative host path made
    absolute) or an anonymous volume (→ (None, target))."""
    parts = spec.split(":")
    if not spec or len(parts) > 3 or any(p == "" for p in parts[:2]):
        raise SpecError(f"invalid spec: {spec}: empty section between colons" if "::" in spec
                        else f"invalid volume specification: '{spec}'")
    if len(parts) == 1:
        if not parts[0].startswith("/"):
            raise SpecError(f"invalid volume specification: '{spec}': invalid mount config for type "
                            f'"volume": invalid mount path: \'{spec}\' mount path must be absolute')
        return None, parts[0]
    src = parts[0]
    if src.startswith("."):
        src = os.path.abspath(src)
    if not parts[1].startswith("/"):
        raise SpecError(f"invalid volume specification: '{spec}': invalid mount config for type "
                        f"\"bind\": invalid mount path: '{parts[1]}' mount path must be absolute")
    return ":".join([src, *parts[1:]]), parts[1]


def parse_ulimit(spec: str) -> dict:
    name, eq, val = spec.partition("=")
    if not eq or not name:
        raise SpecError(f'invalid argument "{spec}" for "--ulimit" flag: invalid ulimit argument: {spec}')
    soft, colon, hard = val.partition(":")
    try:
        s = int(soft)
        h = int(hard) if colon else s
    except ValueError:
        raise SpecError(f'invalid argument "{spec}" for "--ulimit" flag: invalid ulimit value') from None
    if s > h and h != -1:
        raise SpecError(f'invalid argument "{spec}" for "--ulimit" flag: ulimit soft limit must be less '
                        f"than or equal to hard limit: {s} > {h}")
    return {"Name": name, "Soft": s, "Hard": h}


def parse_restart(spec: str) -> dict:
    name, colon, count = spec.partition(":")
    if name not in ("", "no", "always", "unless-stopped", "on-failure"):
        raise SpecError(f"invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', "
                        f"'on-failure', or 'unless-stopped'")
    retries = 0
    if colon:
        if name != "on-failure":
            raise SpecError("invalid restart policy: maximum retry count can only be used with "
                            "'on-failure'")
        try:
            retries = int(count)
        except ValueError:
            raise SpecError(f"invalid restart policy format: maximum retry count must be an integer: "
                            f"{count}") from None
    return {"Name": name or "no", "MaximumRetryCount": retries}


def parse_device(spec: str) -> dict:
    parts = spec.split(":")
    host = parts[0]
    ctr, perms = host, "rwm"
    if len(parts) == 2:
        if all(c in "rwm" for c in parts[1]) and not parts[1].startswith("/"):
            perms = parts[1]
        else:
            ctr = parts[1]
    elif len(parts) == 3:
        ctr, perms = parts[1], parts[2]
    elif len(parts) > 3:
        raise SpecError(f"invalid device specification: {spec}")
    if not perms or any(c not in "rwm" for c in perms):
        raise SpecError(f"invalid device mode: {perms}")
    return {"PathOnHost": host, "PathInContainer": ctr, "CgroupPermissions": perms}


def parse_security_opt(spec: str) -> str:
    """``seccomp=<file>`` is read here and sent as the profile JSON (the engine may be remote)."""
    key, sep, val = spec.partition("=")
    if not sep:
        key, sep, val = spec.partition(":")  # old "label:..." form
        if spec == "no-new-privileges" or not sep:
            return spec
        return f"{key}={val}"
    if key == "seccomp" and val not in ("unconfined", "builtin"):
        import json
        try:
            with open(val, "rb") as fh:
                profile = json.loads(fh.read())
        except OSError as e:
            raise SpecError(f"opening seccomp profile ({val}) failed: {e}") from None
        except ValueError as e:
            raise SpecError(f"compacting json for seccomp profile ({val}) failed: {e}") from None
        return "seccomp=" + json.dumps(profile, separators=(",", ":"))
    return spec


def normalize_cap(cap: str) -> str:
    c = cap.strip().upper()
    if c == "ALL":
        return c
    return c if c.startswith("CAP_") else "CAP_" + c


def _kv(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise SpecError(f"invalid {what} format: {item}" if what else f"bad format: {item}")
        out[k] = v
    return out


# -- the whole body --------------------------------------------------------------------------------
def build(opts: dict[str, Any], image: str, cmd: list[str], console_size: tuple[int, int] | None = None
          ) -> dict:
    """→ the ``POST /containers/create`` body (ContainerConfig + HostConfig + NetworkingConfig)."""
    detach = bool(opts.get("detach"))
    attach = [a.lower() for a in opts.get("attach") or []]
    for a in attach:
        if a not in ("stdin", "stdout", "stderr"):
            raise SpecError(f"invalid argument \"{a}\" for \"-a, --attach\" flag: valid streams are STDIN, "
                            f"STDOUT and STDERR")
    if detach and attach:
        raise SpecError("Conflicting options: -a and -d")
    if opts.get("rm") and (opts.get("restart") or "no") not in ("no", ""):
        raise SpecError("Conflicting options: --restart and --rm")
    stdin = stdout = stderr = False
    if not detach:
        if attach:
            stdin, stdout, stderr = ("stdin" in attach), ("stdout" in attach), ("stderr" in attach)
        else:
            stdout = stderr = True
            stdin = bool(opts.get("interactive"))
    tty = bool(opts.get("tty"))

    env: list[str] = []
    for f in opts.get("env_file") or []:
        env += read_kv_file(f, env_lookup=True)
    env += [env_value(e) for e in opts.get("env") or []]

    labels: dict[str, str] = {}
    for f in opts.get("label_file") or []:
        for line in read_kv_file(f, env_lookup=False):
            k, _, v = line.partition("=")
            labels[k] = v
    for item in opts.get("label") or []:
        k, _, v = item.partition("=")
        if not k:
            raise SpecError(f"invalid label '{item}': empty name")
        labels[k] = v

    exposed: dict[str, dict] = {}
    bindings: dict[str, list[dict]] = {}
    for spec in opts.get("publish") or []:
        for port, b in parse_publish(spec):
            exposed[port] = {}
            bindings.setdefault(port, []).append(b)
    for spec in opts.get("expose") or []:
        for port in parse_expose(spec):
            exposed[port] = {}

    binds: list[str] = []
    volumes: dict[str, dict] = {}
    for spec in opts.get("volume") or []:
        bind, target = parse_volume(spec)
        if bind is None:
            volumes[target] = {}
        else:
            binds.append(bind)
    mounts = [parse_mount(s) for s in opts.get("mount") or []]

    tmpfs: dict[str, str] = {}
    for spec in opts.get("tmpfs") or []:
        path, _, options = spec.partition(":")
        if not path.startswith("/"):
            raise SpecError(f"invalid tmpfs path {path!r}: mount path must be absolute")
        tmpfs[path] = options

    health = _healthcheck(opts)

    entrypoint = opts.get("entrypoint")
    config: dict[str, Any] = {
        "Hostname": opts.get("hostname") or "",
        "Domainname": opts.get("domainname") or "",
        "User": opts.get("user") or "",
        "AttachStdin": stdin,
        "AttachStdout": stdout,
        "AttachStderr": stderr,
        "Tty": tty,
        "OpenStdin": bool(opts.get("interactive")),
        "StdinOnce": stdin and not detach and bool(opts.get("interactive")),
        "Env": env,
        "Cmd": cmd or None,
        "Image": image,
        "Volumes": volumes or None,
        "WorkingDir": opts.get("workdir") or "",
        "Entrypoint": None if entrypoint is None else ([entrypoint] if entrypoint else [""]),
        "OnBuild": None,
        "Labels": labels,
    }
    if exposed:
        config["ExposedPorts"] = exposed
    if opts.get("stop_signal"):
        config["StopSignal"] = opts["stop_signal"]
    if opts.get("stop_timeout") is not None:
        config["StopTimeout"] = opts["stop_timeout"]
    if health is not None:
        config["Healthcheck"] = health

    network = opts.get("network") or "default"
    memory = ram_bytes(opts["memory"]) if opts.get("memory") else 0
    swap = mem_swap(opts["memory_swap"]) if opts.get("memory_swap") else 0
    host: dict[str, Any] = {
        "Binds": binds or None,
        "ContainerIDFile": opts.get("cidfile") or "",
        "LogConfig": {"Type": opts.get("log_driver") or "",
                      "Config": _kv(opts.get("log_opt") or [], "log-opt")},
        "NetworkMode": network,
        "PortBindings": bindings,
        "RestartPolicy": parse_restart(opts.get("restart") or "no"),
        "AutoRemove": bool(opts.get("rm")),
        "VolumeDriver": opts.get("volume_driver") or "",
        "VolumesFrom": opts.get("volumes_from") or None,
        "ConsoleSize": list(console_size) if console_size else [0, 0],
        "CapAdd": [normalize_cap(c) for c in opts.get("cap_add") or []] or None,
        "CapDrop": [normalize_cap(c) for c in opts.get("cap_drop") or []] or None,
        "CgroupnsMode": opts.get("cgroupns") or "",
        "Dns": opts.get("dns") or [],
        "DnsOptions": opts.get("dns_option") or [],
        "DnsSearch": opts.get("dns_search") or [],
        "ExtraHosts": [_extra_host(h) for h in opts.get("add_host") or []] or None,
        "GroupAdd": opts.get("group_add") or None,
        "IpcMode": opts.get("ipc") or "",
        "Cgroup": "",
        "Links": opts.get("link") or None,
        "OomScoreAdj": opts.get("oom_score_adj") or 0,
        "PidMode": opts.get("pid") or "",
        "Privileged": bool(opts.get("privileged")),
        "PublishAllPorts": bool(opts.get("publish_all")),
        "ReadonlyRootfs": bool(opts.get("read_only")),
        "SecurityOpt": [parse_security_opt(s) for s in opts.get("security_opt") or []] or None,
        "StorageOpt": _kv(opts.get("storage_opt") or [], "storage-opt") or None,
        "Tmpfs": tmpfs or None,
        "UTSMode": opts.get("uts") or "",
        "UsernsMode": opts.get("userns") or "",
        "ShmSize": ram_bytes(opts["shm_size"]) if opts.get("shm_size") else 0,
        "Sysctls": _kv(opts.get("sysctl") or [], "sysctl") or None,
        "Runtime": opts.get("runtime") or "",
        "Isolation": opts.get("isolation") or "",
        "CpuShares": opts.get("cpu_shares") or 0,
        "Memory": memory,
        "NanoCpus": nano_cpus(opts["cpus"]) if opts.get("cpus") else 0,
        "CgroupParent": opts.get("cgroup_parent") or "",
        "BlkioWeight": opts.get("blkio_weight") or 0,
        "CpuPeriod": opts.get("cpu_period") or 0,
        "CpuQuota": opts.get("cpu_quota") or 0,
        "CpusetCpus": opts.get("cpuset_cpus") or "",
        "CpusetMems": opts.get("cpuset_mems") or "",
        "Devices": [parse_device(d) for d in opts.get("device") or []],
        "MemoryReservation": ram_bytes(opts["memory_reservation"]) if opts.get("memory_reservation") else 0,
        "MemorySwap": swap,
        "MemorySwappiness": None if (opts.get("memory_swappiness") in (None, -1))
        else opts["memory_swappiness"],
        "OomKillDisable": bool(opts.get("oom_kill_disable")),
        "PidsLimit": opts.get("pids_limit"),
        "Ulimits": [parse_ulimit(u) for u in opts.get("ulimit") or []] or None,
        "Mounts": mounts or None,
    }
    if opts.get("init"):
        host["Init"] = True
    if swap and swap != -1 and memory and swap < memory:
        raise SpecError("Minimum memoryswap limit should be larger than memory limit, see usage")
    endpoint: dict[str, Any] = {}
    if opts.get("network_alias"):
        endpoint["Aliases"] = list(opts["network_alias"])
    if opts.get("ip") or opts.get("ip6"):
        endpoint["IPAMConfig"] = {k: v for k, v in (("IPv4Address", opts.get("ip")),
                                                    ("IPv6Address", opts.get("ip6"))) if v}
    if opts.get("mac_address"):
        endpoint["MacAddress"] = opts["mac_address"]
    if endpoint and network in ("host", "none") or (endpoint and network.startswith("container:")):
        raise SpecError("conflicting options: custom network settings cannot be used with "
                        f"--network {network}" if not opts.get("mac_address") else
                        "conflicting options: mac-address and the network mode")
    body = dict(config)
    body["HostConfig"] = host
    body["NetworkingConfig"] = {"EndpointsConfig": {network: endpoint}}
    return body


def _extra_host(spec: str) -> str:
    name, sep, ip = spec.partition("=")
    if not sep:
        name, sep, ip = spec.partition(":")
    if not sep or not name or not ip:
        raise SpecError(f'invalid argument "{spec}" for "--add-host" flag: bad format for add-host: "{spec}"')
    return f"{name}:{ip}"


def _healthcheck(opts: dict[str, Any]) -> dict | None:
    keys = ("health_cmd", "health_interval", "health_timeout", "health_start_period", "health_start_interval")
    given = any(opts.get(k) for k in keys) or opts.get("health_retries") is not None
    if opts.get("no_healthcheck"):
        if given:
            raise SpecError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not given:
        return None
    hc: dict[str, Any] = {}
    if opts.get("health_cmd"):
        hc["Test"] = ["CMD-SHELL", opts["health_cmd"]]
    for key, field in (("health_interval", "Interval"), ("health_timeout", "Timeout"),
                       ("health_start_period", "StartPeriod"), ("health_start_interval", "StartInterval")):
        if opts.get(key):
            ns = duration_ns(opts[key], "--" + key.replace("_", "-"))
            if ns < 0:
                raise SpecError(f"--{key.replace('_', '-')} cannot be negative")
            hc[field] = ns
    if opts.get("health_retries") is not None:
        if opts["health_retries"] < 0:
            raise SpecError("--health-retries cannot be negative")
        hc["Retries"] = opts["health_retries"]
    return hc


def default_opts(flags: list[Flag] | None = None) -> dict[str, Any]:
    """The options dict the flag parser yields for no flags (handy in tests)."""
    from berth.cli.flags import parse
    return parse(flags or RUN_FLAGS, [])[0]
