"""`berth-runtime`: runc's command line (verbs, flags, JSON) over berth.runtime.

Flags follow Go conventions as runc's CLI does: `-flag`, `--flag`, `--flag=value`, `--flag value`;
global flags come before the verb. Start-up imports only the stdlib modules a verb needs.
"""

from __future__ import annotations

import os
import sys

VERSION = "0.1.0"
SPEC_VERSION = "1.1.0"

GLOBAL = {"root": "s", "log": "s", "log-format": "s", "debug": "b", "systemd-cgroup": "b",
          "rootless": "s", "criu": "s", "help": "b", "h": "b", "version": "b", "v": "b"}
_CREATE = {"bundle": "s", "b": "s", "console-socket": "s", "pid-file": "s", "no-pivot": "b",
           "no-new-keyring": "b", "preserve-fds": "s", "notify-socket": "s"}
VERBS: dict[str, dict[str, str]] = {
    "create": _CREATE,
    "run": dict(_CREATE, detach="b", d="b", keep="b"),
    "start": {},
    "state": {},
    "kill": {"all": "b", "a": "b"},
    "delete": {"force": "b", "f": "b"},
    "exec": {"process": "s", "p": "s", "tty": "b", "t": "b", "detach": "b", "d": "b", "pid-file": "s",
             "console-socket": "s", "cwd": "s", "env": "m", "e": "m", "user": "s", "u": "s",
             "cap": "m", "c": "m", "no-new-privs": "b", "preserve-fds": "s", "additional-gids": "m",
             "g": "m", "process-label": "s", "apparmor": "s", "ignore-paused": "b", "cgroup": "m"},
    "list": {"format": "s", "f": "s", "quiet": "b", "q": "b"},
    "pause": {},
    "resume": {},
    "ps": {"format": "s", "f": "s"},
    "events": {"stats": "b", "interval": "s"},
    "spec": {"bundle": "s", "b": "s", "rootless": "b"},
    "update": {"resources": "s", "r": "s", "blkio-weight": "s", "cpu-period": "s", "cpu-quota": "s",
               "cpu-share": "s", "cpu-rt-period": "s", "cpu-rt-runtime": "s", "cpuset-cpus": "s",
               "cpuset-mems": "s", "memory": "s", "memory-reservation": "s", "memory-swap": "s",
               "pids-limit": "s", "kernel-memory": "s"},
    "features": {},
}
ALIASES = {"r": "resources", "b": "bundle", "d": "detach", "a": "all", "f": "force", "p": "process",
           "t": "tty", "e": "env", "u": "user", "c": "cap", "g": "additional-gids", "q": "quiet",
           "h": "help", "v": "version", "ls": "list"}
VERB_ALIASES = {"list": dict(ALIASES, f="format"), "ps": dict(ALIASES, f="format")}
STOP_AT_FIRST_ARG = ("exec", "ps")


class UsageError(Exception):
    pass


def parse(argv: list[str], table: dict[str, str], *, stop_at_arg: bool = False,
          aliases: dict[str, str] = ALIASES) -> tuple[dict, list[str]]:
    """Parse Go-style flags from argv by table {name: 's'|'b'|'m'}; returns (flags, positional)."""
    flags: dict = {}
    pos: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            pos.extend(argv[i + 1:])
            break
        if a.startswith("-") and len(a) > 1 and not (stop_at_arg and pos):
            name, eq, val = a.lstrip("-").partition("=")
            kind = table.get(name)
            if kind is None:
                raise UsageError(f"flag provided but not defined: {a}")
            name = aliases.get(name, name)
            if kind == "b":
                flags[name] = (val.lower() in ("1", "true", "t")) if eq else True
            else:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise UsageError(f"flag needs an argument: {a}")
                    val = argv[i]
                if kind == "m":
                    flags.setdefault(name, []).append(val)
                else:
                    flags[name] = val
        else:
            pos.append(a)
            if table is GLOBAL:
                pos.extend(argv[i + 1:])
                break
        i += 1
    return flags, pos


class Logger:
    """runc-style log: text or JSON lines to --log (stderr when not given)."""

    def __init__(self, path: str = "", fmt: str = "text", debug: bool = False) -> None:
        self.path = path
        self.fmt = fmt
        self.debug_on = debug

    def write(self, level: str, msg: str) -> None:
        from berth.runtime.state import rfc3339

        if self.fmt == "json":
            from berth.runtime import fastjson

            line = fastjson.dumps({"level": level, "msg": msg, "time": rfc3339()}) + "\n"
        else:
            line = f'time="{rfc3339()}" level={level} msg="{msg}"\n'
        if self.path:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
                try:
                    os.write(fd, line.encode())
                finally:
                    os.close(fd)
            except OSError:
                pass

    def error(self, msg: str) -> None:
        self.write("error", msg)
        sys.stderr.write(f"berth-runtime: {msg}\n")
        sys.stderr.flush()

    def debug(self, msg: str) -> None:
        if self.debug_on:
            self.write("debug", msg)


def _one_id(pos: list[str], verb: str, extra: int = 0) -> str:
    if not pos:
        raise UsageError(f'"{verb}" requires a container id')
    if len(pos) > 1 + extra:
        raise UsageError(f'"{verb}" takes at most {1 + extra} argument(s)')
    return pos[0]


def _print_json(obj, indent: bool = False) -> None:  # noqa: ANN001
    from berth.runtime import fastjson

    sys.stdout.write((fastjson.dumps_indent(obj) if indent else fastjson.dumps(obj)) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Entry point. Run as a command (argv None) it ends with os._exit after flushing stdio:
    interpreter finalisation costs several milliseconds and there is nothing left to clean up."""
    if argv is not None:
        return _main(argv)
    code = _main(sys.argv[1:])
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)


def _main(argv: list[str]) -> int:
    log = Logger()
    try:
        g, rest = parse(argv, GLOBAL)
        log = Logger(g.get("log", ""), g.get("log-format", "text"), g.get("debug", False))
        log.debug(f"berth-runtime {' '.join(argv)}")
        if g.get("version"):
            sys.stdout.write(f"berth-runtime version {VERSION}\nspec: {SPEC_VERSION}\n")
            return 0
        if g.get("help") or not rest:
            sys.stdout.write("usage: berth-runtime [global flags] <verb> [flags] <id> ...\nverbs: "
                             + " ".join(VERBS) + "\n")
            return 0 if g.get("help") else 2
        verb = ALIASES.get(rest[0], rest[0])
        if verb not in VERBS:
            raise UsageError(f"no such command: {rest[0]}")
        f, pos = parse(rest[1:], VERBS[verb], stop_at_arg=verb in STOP_AT_FIRST_ARG,
                       aliases=VERB_ALIASES.get(verb, ALIASES))
        if f.get("help"):
            return 0
        return _dispatch(verb, f, pos, g)
    except UsageError as e:
        log.error(str(e))
        return 2
    except KeyboardInterrupt:
        return 130
    except BaseException as e:  # noqa: BLE001 - every error ends as a message and a status
        from berth.errors import BerthError

        if isinstance(e, SystemExit):
            raise
        code = getattr(e, "code", 1) if type(e).__name__ in ("ChildError",) else 1
        if isinstance(e, BerthError):
            log.error(str(e))
        elif isinstance(e, OSError):
            log.error(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
        else:
            import traceback

            log.error(f"internal error: {type(e).__name__}: {e}")
            if g_debug():
                traceback.print_exc()
        return code if isinstance(code, int) else 1


def g_debug() -> bool:
    return bool(os.environ.get("BERTH_RUNTIME_DEBUG"))


def _dispatch(verb: str, f: dict, pos: list[str], g: dict) -> int:
    if verb in ("create", "run", "exec"):
        from berth.runtime import cgwarm

        cgwarm.start()  # the first cgroup.procs write waits for an RCU grace period: begin it now
    from berth.runtime import state

    root = g.get("root") or state.DEFAULT_ROOT
    systemd = bool(g.get("systemd-cgroup"))
    if verb in ("create", "run"):
        from berth.runtime import container

        cid = _one_id(pos, verb)
        opts = container.Options(bundle=f.get("bundle", "."), pid_file=f.get("pid-file", ""),
                                 console_socket=f.get("console-socket", ""),
                                 preserve_fds=int(f.get("preserve-fds", 0)),
                                 no_pivot=f.get("no-pivot", False),
                                 systemd=systemd, detach=f.get("detach", False), keep=f.get("keep", False))
        if verb == "create":
            container.create(root, cid, opts)
            return 0
        return container.run(root, cid, opts)
    if verb == "start":
        from berth.runtime import container

        container.start(state.load(root, _one_id(pos, verb)))
        return 0
    if verb == "state":
        c = state.load(root, _one_id(pos, verb))
        _print_json(c.oci_state(), indent=True)
        return 0
    if verb == "kill":
        from berth.runtime import container

        cid = _one_id(pos, verb, 1)
        sig = container.parse_signal(pos[1] if len(pos) > 1 else "SIGTERM")
        container.kill(state.load(root, cid), sig, all_=f.get("all", False))
        return 0
    if verb == "delete":
        from berth.errors import NotFound
        from berth.runtime import container

        try:
            c = state.load(root, _one_id(pos, verb))
        except NotFound:
            if f.get("force"):
                state.remove_dir(root, pos[0])  # a create that died before writing state.json
                return 0
            raise
        container.delete(c, force=f.get("force", False))
        return 0
    if verb in ("pause", "resume"):
        from berth.runtime import container

        container.pause(state.load(root, _one_id(pos, verb)), verb == "pause")
        return 0
    if verb == "list":
        return _list(root, f)
    if verb == "ps":
        return _ps(root, f, pos)
    if verb == "events":
        return _events(root, f, pos)
    if verb == "exec":
        return _exec(root, f, pos)
    if verb == "spec":
        return _spec(f)
    if verb == "update":
        return _update(root, f, pos)
    if verb == "features":
        _print_json(features(), indent=True)
        return 0
    raise UsageError(f"no such command: {verb}")


def _list(root: str, f: dict) -> int:
    from berth.runtime import state

    items = []
    for cid in state.list_ids(root):
        try:
            items.append(state.load(root, cid).oci_state())
        except Exception:  # noqa: BLE001 - a half-written record is skipped, as runc does
            continue
    if f.get("quiet"):
        for it in items:
            sys.stdout.write(it["id"] + "\n")
    elif f.get("format", "table") == "json":
        _print_json(items)
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(it["id"], str(it["pid"]), it["status"], it["bundle"], it["created"], "root")
                 for it in items]
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        for r in rows:
            sys.stdout.write("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
    return 0


def _ps(root: str, f: dict, pos: list[str]) -> int:
    from berth.runtime import container, state

    if not pos:
        raise UsageError('"ps" requires a container id')
    c = state.load(root, pos[0])
    if c.status() == "stopped":
        raise UsageError("container not running") from None
    pids = container.pids(c)
    if f.get("format", "table") == "json":
        _print_json(pids)
        return 0
    import subprocess

    args = pos[1:] or ["-ef"]
    out = subprocess.run(["ps", *args], capture_output=True, text=True, check=True).stdout.splitlines()
    if not out:
        return 0
    header = out[0].split()
    try:
        col = header.index("PID")
    except ValueError:
        raise UsageError("couldn't find PID field in ps output") from None
    sys.stdout.write(out[0] + "\n")
    for line in out[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
            sys.stdout.write(line + "\n")
    return 0


def _events(root: str, f: dict, pos: list[str]) -> int:
    import time

    from berth.runtime import container, state

    cid = _one_id(pos, "events")
    c = state.load(root, cid)
    if f.get("stats"):
        _print_json(container.stats(c))
        return 0
    interval = float(f.get("interval", "5s").rstrip("s") or 5)
    last_oom = None
    while c.alive():
        ev = container.stats(c)
        oom = ev["data"].get("memory", {}).get("oom_kill", 0)
        if last_oom is not None and oom > last_oom:
            _print_json({"type": "oom", "id": cid})
        last_oom = oom
        _print_json(ev)
        sys.stdout.flush()
        time.sleep(interval)
    return 0


def _exec(root: str, f: dict, pos: list[str]) -> int:
    from berth.runtime import exec_process, state

    if not pos:
        raise UsageError('"exec" requires a container id')
    c = state.load(root, pos[0])
    if f.get("process"):
        from berth.errors import InvalidArgument
        from berth.runtime import fastjson

        try:
            with open(f["process"], "rb") as fh:
                proc = fastjson.loads(fh.read())
        except (OSError, ValueError) as e:
            raise InvalidArgument(f"--process {f['process']}: {e}") from None
        if len(pos) > 1:
            raise UsageError("--process and a command are mutually exclusive")
    else:
        if len(pos) < 2:
            raise UsageError('"exec" requires a command (or --process)')
        try:
            gids = [int(x) for x in f.get("additional-gids", [])]
        except ValueError:
            raise UsageError("--additional-gids takes integers") from None
        proc = exec_process.build_process(c, pos[1:], tty=f.get("tty", False), cwd=f.get("cwd", ""),
                                          env=f.get("env", []), user=f.get("user", ""),
                                          caps=f.get("cap", []), no_new_privs=f.get("no-new-privs", False),
                                          additional_gids=gids)
    return exec_process.exec_(c, proc, detach=f.get("detach", False), pid_file=f.get("pid-file", ""),
                              console_socket=f.get("console-socket", ""),
                              preserve_fds=int(f.get("preserve-fds", 0)),
                              ignore_paused=f.get("ignore-paused", False))


_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
# flag -> (section, key, kind)
_UPDATE_FLAGS = {
    "blkio-weight": ("blockIO", "weight", "int"), "cpu-period": ("cpu", "period", "int"),
    "cpu-quota": ("cpu", "quota", "int"), "cpu-share": ("cpu", "shares", "int"),
    "cpu-rt-period": ("cpu", "realtimePeriod", "int"), "cpu-rt-runtime": ("cpu", "realtimeRuntime", "int"),
    "cpuset-cpus": ("cpu", "cpus", "str"), "cpuset-mems": ("cpu", "mems", "str"),
    "memory": ("memory", "limit", "size"), "memory-reservation": ("memory", "reservation", "size"),
    "memory-swap": ("memory", "swap", "size"), "kernel-memory": ("memory", "kernel", "size"),
    "pids-limit": ("pids", "limit", "int"),
}


def parse_size(text: str) -> int:
    """'512m', '1g', '1024', '-1' -> bytes (binary units, as runc's RAMInBytes)."""
    t = text.strip().lower()
    if t == "-1":
        return -1
    num = t.rstrip("bkmgti")
    unit = t[len(num):].rstrip("ib")[:1] if t[len(num):] not in ("b", "") else ""
    if not num.replace(".", "", 1).isdigit() or unit not in _SIZE_UNITS:
        raise UsageError(f"invalid size {text!r}")
    return int(float(num) * _SIZE_UNITS[unit])


def _update(root: str, f: dict, pos: list[str]) -> int:
    from berth.runtime import container, state

    c = state.load(root, _one_id(pos, "update"))
    if c.status() == "stopped":
        from berth.errors import Conflict

        raise Conflict("container not running")
    res: dict = {}
    if f.get("resources"):
        from berth.errors import InvalidArgument
        from berth.runtime import fastjson

        try:
            if f["resources"] == "-":
                data = sys.stdin.buffer.read()
            else:
                with open(f["resources"], "rb") as fh:
                    data = fh.read()
            res = fastjson.loads(data)
        except (OSError, ValueError) as e:
            raise InvalidArgument(f"--resources {f['resources']}: {e}") from None
        if not isinstance(res, dict):
            raise InvalidArgument("--resources: must be a JSON object (linux.resources)")
    for flag, (section, key, kind) in _UPDATE_FLAGS.items():
        if flag in f:
            v = f[flag]
            try:
                val = parse_size(v) if kind == "size" else int(v) if kind == "int" else v
            except ValueError:
                raise UsageError(f"--{flag}: invalid value {v!r}") from None
            res.setdefault(section, {})[key] = val
    mgr = container.cgroup_manager(c.spec, c.id, c.data.get("systemd_cgroup", False))
    (getattr(mgr, "update", None) or mgr.apply)(res)
    lres = c.spec.setdefault("linux", {}).setdefault("resources", {})
    for section, vals in res.items():
        if isinstance(vals, dict) and isinstance(lres.get(section), dict):
            lres[section].update(vals)
        else:
            lres[section] = vals
    c.save()
    return 0


def _spec(f: dict) -> int:
    import json

    from berth.errors import AlreadyExists
    from berth.oci.spec import default_spec

    bundle = f.get("bundle", ".")
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise AlreadyExists(f"File {path} exists. Remove it first")
    spec = default_spec(["sh"], terminal=True)
    tmp = path + f".{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump(spec, fh, indent="\t")
    os.rename(tmp, path)
    return 0


def features() -> dict:
    from berth.runtime import mountopts
    from berth.runtime.config import CAPABILITIES, HOOK_NAMES, NAMESPACE_TYPES
    from berth.runtime.process import apparmor_enabled

    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": SPEC_VERSION,
        "hooks": list(HOOK_NAMES),
        "mountOptions": sorted(set(mountopts.FLAGS) | set(mountopts.PROPAGATION) | set(mountopts.REC_ATTRS)
                               | set(mountopts.IGNORED)),
        "linux": {
            "namespaces": list(NAMESPACE_TYPES),
            "capabilities": ["CAP_" + c for c in CAPABILITIES],
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": True, "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                                                     "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                                                     "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"]},
            "apparmor": {"enabled": apparmor_enabled()},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
        },
        "annotations": {"org.opencontainers.runc.version": "berth-runtime " + VERSION},
    }
