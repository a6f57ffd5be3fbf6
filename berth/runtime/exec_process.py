"""`exec`: start another process inside a running container (every namespace + the cgroup)."""

from __future__ import annotations

import os

from berth.errors import Conflict
from berth.runtime import state as state_mod
from berth.runtime.sync import Channel, ChildError

TYPE_CHECKING = False

if TYPE_CHECKING:
    from berth.runtime.init import InitContext

JOIN_ORDER = ("user", "ipc", "uts", "network", "cgroup", "time", "mount")


def build_process(c: state_mod.Container, args: list[str], *, tty: bool = False, cwd: str = "",
                  env: list[str] = (), user: str = "", caps: list[str] = (), no_new_privs: bool = False,
                  additional_gids: list[int] = ()) -> dict:
    """runc's rule: the container's process object with the command-line overrides applied."""
    import copy

    base = copy.deepcopy(c.spec.get("process") or {})
    base["args"] = list(args)
    base["terminal"] = tty
    base.pop("consoleSize", None)
    if cwd:
        base["cwd"] = cwd
    if env:
        base["env"] = list(base.get("env") or []) + list(env)
    if user:
        u, _, g = user.partition(":")
        try:
            base["user"] = {"uid": int(u), "gid": int(g or 0)}
        except ValueError:
            from berth.errors import InvalidArgument

            raise InvalidArgument(f"--user must be uid[:gid], got {user!r}") from None
    if additional_gids:
        base.setdefault("user", {})["additionalGids"] = list(additional_gids)
    if caps:
        cs = base.setdefault("capabilities", {})
        for k in ("bounding", "effective", "permitted", "ambient"):
            cs[k] = list(dict.fromkeys(list(cs.get(k) or []) + list(caps)))
    if no_new_privs:
        base["noNewPrivileges"] = True
    return base


def exec_(c: state_mod.Container, proc: dict, *, detach: bool = False, pid_file: str = "",
          console_socket: str = "", preserve_fds: int = 0, ignore_paused: bool = False) -> int:
    """Run proc in the container; returns its exit status (0 at once when detached)."""
    from berth.runtime import cgwarm, container
    from berth.runtime.config import validate_process
    from berth.runtime.init import InitContext
    from berth.runtime.sync import pair
    from berth.sys import linux

    validate_process(proc, "process")
    st = c.status()
    if st == "stopped":
        raise Conflict("cannot exec in a stopped container")
    if st == "paused" and not ignore_paused:
        raise Conflict("cannot exec in a paused container")
    foreground_tty = bool(proc.get("terminal")) and not console_socket
    if foreground_tty and detach:
        from berth.errors import InvalidArgument

        raise InvalidArgument("--tty with --detach needs --console-socket")
    spec = c.spec
    ns_types = [n["type"] for n in (spec.get("linux") or {}).get("namespaces") or []]
    fds: dict[str, int] = {}
    opened: list[int] = []
    chan = None
    try:
        for t in ns_types:
            fd = os.open(f"/proc/{c.pid}/ns/{linux.NAMESPACE_PROC_NAMES[t]}", os.O_RDONLY | os.O_CLOEXEC)
            opened.append(fd)
            fds[t] = fd
        if not c.alive():
            raise Conflict("cannot exec in a stopped container")
        cg_paths = sorted(set((c.data.get("cgroup_paths") or {}).values()))
        mgr = None if cg_paths else container.cgroup_manager(spec, c.id, c.data.get("systemd_cgroup", False))
        console_fd = ours = master = -1
        if foreground_tty:
            from berth.runtime import tty

            ours, console_fd = tty.socketpair()
            opened += [ours, console_fd]
        if console_socket:
            from berth.runtime import tty

            console_fd = tty.connect(console_socket)
            os.set_inheritable(console_fd, False)
            opened.append(console_fd)
        pchan, cchan = pair()
        chan = pchan
        ctx = InitContext(spec, c.data.get("bundle", ""), c.id, cchan, console_fd=console_fd,
                          preserve_fds=preserve_fds, seccomp_bpf=container.seccomp_filter(spec, c.root))
        linux.prctl(container.PR_SET_DUMPABLE, 0)
        back = -1
        if "pid" in fds:
            back = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            linux.setns(fds["pid"], linux.CLONE_NEWPID)
        try:
            pid = os.fork()
            if pid == 0:
                cgwarm.in_child()
                pchan.close()
                _child(ctx, proc, fds)
        finally:
            if back >= 0:
                linux.setns(back, linux.CLONE_NEWPID)
                os.close(back)
        cchan.close()
        try:
            try:
                if mgr is not None:
                    mgr.add(pid)
                else:
                    join_cgroups(cg_paths, pid)
            except OSError:
                if os.waitpid(pid, os.WNOHANG)[0] == 0:
                    raise
                msg = pchan.recv()  # the child is gone: its own error explains why
                raise ChildError(msg.split(" ", 2)[-1] if msg.startswith("error ") else
                                 "exec process exited before joining the cgroup",
                                 int(msg.split(" ")[1]) if msg.startswith("error ") else 1) from None
            try:
                pchan.send("go")
            except BrokenPipeError:
                pass  # the child failed already: its message is waiting
            msg = pchan.recv()
            if not msg and ours >= 0:
                master = tty.recv_fd(ours)
        except BaseException:
            try:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            raise
        if msg:
            container.wait_exit(pid)
            word, _, arg = msg.partition(" ")
            code, _, text = arg.partition(" ")
            raise ChildError(text if word == "error" else msg, int(code) if code.isdigit() else 1)
    finally:
        cgwarm.wait()
        if chan is not None:
            chan.close()
        for fd in opened:
            os.close(fd)
    if pid_file:
        container.write_pid_file(pid_file, pid)
    if detach:
        return 0
    container.forward_signals(pid)
    if master >= 0:
        tty.proxy(master)
        os.close(master)
    return container.wait_exit(pid)


def join_cgroups(paths: list[str], pid: int) -> None:
    """Put pid into the container's cgroups, by the directories recorded at create time."""
    for d in paths:
        fd = os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(pid).encode())
        finally:
            os.close(fd)


def _child(ctx: InitContext, proc: dict, fds: dict[str, int]) -> None:
    code = 1
    try:
        _setup(ctx, proc, fds)
    except ChildError as e:
        code = e.code
        _send(ctx.chan, f"error {code} {e}")
    except OSError as e:
        _send(ctx.chan, f"error 1 {e.strerror or e}")
    except BaseException as e:  # noqa: BLE001
        _send(ctx.chan, f"error 1 {type(e).__name__}: {e}")
    os._exit(code)


def _send(chan: Channel, msg: str) -> None:
    try:
        chan.send(msg)
    except OSError:
        pass


def _setup(ctx: InitContext, proc: dict, fds: dict[str, int]) -> None:
    from berth.runtime import process
    from berth.runtime.init import preload
    from berth.sys import linux

    spec = dict(ctx.spec, process=proc)
    preload(spec, ctx.seccomp_bpf is not None)
    for t in JOIN_ORDER:
        if t in fds:
            try:
                linux.setns(fds[t], linux.NAMESPACE_FLAGS[t])
            except OSError as e:
                raise ChildError(f"cannot join the container's {t} namespace: {e.strerror}") from None
    os.chdir("/")
    if proc.get("terminal"):
        from berth.runtime import tty

        os.setsid()
        tty.setup(ctx.console_fd, proc.get("consoleSize"), mount_console=False)
    elif ctx.console_fd >= 0:
        os.close(ctx.console_fd)
    process.set_rlimits(proc.get("rlimits") or [])
    env = process.env_dict(proc.get("env") or [])
    fin = process.Finalizer(proc, (ctx.spec.get("linux") or {}).get("seccomp"), ctx.seccomp_bpf)
    fin.before_user()
    fin.user_and_caps()
    process.chdir_checked(proc.get("cwd") or "/")
    if "HOME" not in env:
        env["HOME"] = process.home_of((proc.get("user") or {}).get("uid", 0))
    path = process.lookup(proc["args"][0], env)
    process.close_fds(3 + ctx.preserve_fds)
    ctx.chan.expect("go")  # the runtime has put us in the container's cgroups meanwhile
    fin.apparmor()
    fin.last()
    try:
        os.execve(path, proc["args"], env)
    except OSError as e:
        raise ChildError(f"exec {path}: {e.strerror}", 126 if e.errno in (13, 8) else 127) from None
