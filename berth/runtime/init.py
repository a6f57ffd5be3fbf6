"""Container init: the linear set-up sequence run in the forked child, ending in execve.

Everything the sequence needs is imported (and libseccomp loaded) *before* pivot_root, and the
import system is then disabled, so no Python code or library is ever loaded from the container.
"""

from __future__ import annotations

import os
import sys

from berth.runtime.sync import Channel, ChildError

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 1


class InitContext:
    """What init needs from the runtime process (inherited across fork)."""

    def __init__(self, spec: dict, bundle: str, cid: str, chan: Channel, *, fifo_fd: int = -1,
                 console_fd: int = -1, preserve_fds: int = 0, no_pivot: bool = False,
                 double_fork: bool = False, state: dict | None = None, seccomp_bpf=None) -> None:
        self.spec = spec
        self.bundle = bundle
        self.id = cid
        self.chan = chan
        self.fifo_fd = fifo_fd
        self.console_fd = console_fd
        self.preserve_fds = preserve_fds
        self.no_pivot = no_pivot
        self.double_fork = double_fork
        self.state = state or {}
        self.seccomp_bpf = seccomp_bpf


def preload(spec: dict, compiled: bool = False, *, seal: bool = True) -> None:
    """Import every module the post-pivot steps use, then (seal) turn the import system off."""
    import _socket  # noqa: F401
    import fcntl  # noqa: F401
    import resource  # noqa: F401
    import struct  # noqa: F401

    from berth.runtime import fastjson, hooks, process, tty  # noqa: F401
    from berth.sys import linux

    linux.libc()
    process.apparmor_enabled()  # the host's answer, cached before pivot_root
    proc = spec.get("process") or {}
    if proc.get("capabilities") is not None:
        from berth.runtime import caps

        caps._lib()
        caps.last_cap()
    if (spec.get("linux") or {}).get("seccomp") is not None and not compiled:
        from berth.runtime import seccomp

        seccomp._libseccomp()
    if seal:
        seal_imports()


def seal_imports() -> None:
    """No further imports from any path (builtin and frozen modules only)."""
    sys.path[:] = []
    sys.path_hooks[:] = []
    sys.path_importer_cache.clear()
    sys.meta_path[:] = [m for m in sys.meta_path if getattr(m, "__name__", "") in
                        ("BuiltinImporter", "FrozenImporter")]


def loopback_up() -> None:
    import _socket
    import fcntl
    import struct

    s = _socket.socket(2, 2)  # AF_INET, SOCK_DGRAM
    try:
        req = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))
    finally:
        s.close()


def write_id_maps(pid: int, linux_cfg: dict) -> None:
    """Write uid_map/gid_map of pid (runs in the runtime, the parent user namespace)."""
    for key, fname in (("uidMappings", "uid_map"), ("gidMappings", "gid_map")):
        lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in linux_cfg[key])
        with open(f"/proc/{pid}/{fname}", "w") as f:
            f.write(lines)


def write_time_offsets(linux_cfg: dict) -> None:
    offs = linux_cfg.get("timeOffsets") or {}
    if not offs:
        return
    text = "".join(f"{k} {v.get('secs', 0)} {v.get('nanosecs', 0)}\n" for k, v in offs.items())
    with open("/proc/self/timens_offsets", "w") as f:
        f.write(text)


def join_order(ns: dict[str, str]) -> list[tuple[str, str]]:
    """Namespaces with a path, user first and mount last (as runc's nsexec)."""
    order = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")
    return [(t, ns[t]) for t in order if ns.get(t)]


def join_namespaces(ns: dict[str, str], skip: tuple[str, ...] = ()) -> None:
    from berth.sys import linux

    fds = []
    try:
        for t, path in join_order(ns):
            if t not in skip:
                fds.append((t, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
        for t, fd in fds:
            try:
                linux.setns(fd, linux.NAMESPACE_FLAGS[t])
            except OSError as e:
                raise ChildError(f"cannot join {t} namespace {ns[t]}: {e.strerror}") from None
    finally:
        for _, fd in fds:
            os.close(fd)


def child(ctx: InitContext) -> None:
    """Entry of the forked child; never returns."""
    code = 1
    try:
        _stage(ctx)
    except ChildError as e:
        code = e.code
        _report(ctx, code, str(e))
    except OSError as e:
        _report(ctx, 1, f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
    except BaseException as e:  # noqa: BLE001 - report anything to the runtime
        _report(ctx, 1, f"{type(e).__name__}: {e}")
    os._exit(code)


def _report(ctx: InitContext, code: int, msg: str) -> None:
    try:
        ctx.chan.send(f"error {code} {msg}")
    except OSError:
        try:
            os.write(2, f"berth-runtime init: {msg}\n".encode())
        except OSError:
            pass


def _stage(ctx: InitContext) -> None:
    from berth.runtime import config
    from berth.sys import linux

    spec = ctx.spec
    lcfg = spec.get("linux") or {}
    ns = config.namespaces(spec)
    if ctx.double_fork:
        ctx.chan.expect("go")
        if ns.get("user"):
            join_namespaces({"user": ns["user"]})
        elif "user" in ns:
            linux.unshare(linux.CLONE_NEWUSER)
            ctx.chan.send("userns")
            ctx.chan.expect("mapped")
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        join_namespaces({k: v for k, v in ns.items() if k != "user"})
        flags = 0
        for t, p in ns.items():
            if not p and t != "user":
                flags |= linux.NAMESPACE_FLAGS[t]
        linux.unshare(flags)
        if "time" in ns and not ns["time"]:
            write_time_offsets(lcfg)
        pid = os.fork()
        if pid:
            ctx.chan.send(f"pid {pid}")
            os._exit(0)
    else:
        # the runtime already entered/created the pid and time namespaces for us, and places us in
        # the cgroup while we unshare the rest; "go" says it is done (the cgroup ns comes after)
        join_namespaces(ns, skip=("pid", "time"))
        flags = 0
        for t, p in ns.items():
            if not p and t not in ("pid", "time", "user", "cgroup"):
                flags |= linux.NAMESPACE_FLAGS[t]
        linux.unshare(flags)
        if "network" in ns and not ns["network"]:
            loopback_up()
        preload(spec, ctx.seccomp_bpf is not None, seal=False)  # while the runtime fills the cgroup
        ctx.chan.expect("go")
        if "cgroup" in ns and not ns["cgroup"]:
            linux.unshare(linux.CLONE_NEWCGROUP)
    _init(ctx, ns)


def _init(ctx: InitContext, ns: dict[str, str]) -> None:
    from berth.runtime import hooks, process, rootfs
    from berth.sys import linux

    spec = ctx.spec
    lcfg = spec.get("linux") or {}
    proc = spec["process"]
    os.setsid()
    os.umask(0)
    setup = rootfs.RootfsSetup(spec, ctx.bundle, userns="user" in ns, cgroupns="cgroup" in ns)
    setup.prepare()
    if ctx.double_fork and "network" in ns and not ns["network"]:
        loopback_up()
    hk = spec.get("hooks") or {}
    if hk.get("prestart") or hk.get("createRuntime") or hk.get("createContainer"):
        ctx.chan.send("hooks")
        ctx.state["pid"] = int(ctx.chan.expect("ok") or 0)
    if hk.get("createContainer"):
        hooks.run(hk["createContainer"], _hook_state(ctx, "creating"), "createContainer")
    preload(spec, ctx.seccomp_bpf is not None)
    rootfs.pivot(setup.rootfs, no_pivot=ctx.no_pivot)
    os.close(setup.rootfd)
    for k, v in (lcfg.get("sysctl") or {}).items():
        try:
            with open("/proc/sys/" + k.replace(".", "/"), "w") as f:
                f.write(v)
        except OSError as e:
            raise ChildError(f"sysctl {k}={v}: {e.strerror}") from None
    rootfs.readonly_paths(lcfg.get("readonlyPaths") or [])
    if lcfg.get("maskedPaths"):
        devnull = rootfs.open_devnull()
        rootfs.mask_paths(lcfg["maskedPaths"], devnull)
        os.close(devnull)
    if proc.get("terminal"):
        from berth.runtime import tty

        if ctx.console_fd < 0:
            raise ChildError("process.terminal is set but no --console-socket was given")
        tty.setup(ctx.console_fd, proc.get("consoleSize"))
    elif ctx.console_fd >= 0:
        os.close(ctx.console_fd)
    if (spec.get("root") or {}).get("readonly"):
        rootfs.readonly_root()
    if spec.get("hostname") and "uts" in ns:
        linux.sethostname(spec["hostname"])
    if spec.get("domainname") and "uts" in ns:
        linux.setdomainname(spec["domainname"])
    process.set_rlimits(proc.get("rlimits") or [])
    env = process.env_dict(proc.get("env") or [])
    fin = process.Finalizer(proc, lcfg.get("seccomp"), ctx.seccomp_bpf)
    fin.before_user()
    fin.user_and_caps()
    process.chdir_checked(proc.get("cwd") or "/")
    if "HOME" not in env:
        env["HOME"] = process.home_of((proc.get("user") or {}).get("uid", 0))
    path = process.lookup(proc["args"][0], env)
    process.close_fds(3 + ctx.preserve_fds)
    ctx.chan.send("ready")
    ctx.chan.close()
    fifo = os.open(f"/proc/self/fd/{ctx.fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(fifo, b"0")
    os.close(fifo)
    os.close(ctx.fifo_fd)
    if hk.get("startContainer"):
        hooks.run(hk["startContainer"], _hook_state(ctx, "running"), "startContainer")
    fin.apparmor()
    fin.last()
    try:
        os.execve(path, proc["args"], env)
    except OSError as e:
        os.write(2, f"berth-runtime init: exec {path}: {e.strerror}\n".encode())
        os._exit(126 if e.errno in (13, 8) else 127)


def _hook_state(ctx: InitContext, status: str) -> dict:
    st = dict(ctx.state)
    st["status"] = status
    st["pid"] = ctx.state.get("pid") or os.getpid()
    return st
