"""Runtime-side lifecycle: create, start, run, kill, delete, pause/resume, ps, stats.

create forks the container init (see init.py) and talks to it over a line channel:

    runtime                          init (or stage 1 when a user namespace is involved)
    add child to cgroup, "go"  ->
                               <-    "userns"  (stage 1 unshared CLONE_NEWUSER)
    write uid/gid maps, "mapped" ->
                               <-    "pid N"   (stage 1 forked init into the new pid namespace)
                               <-    "hooks"   (namespaces + mounts ready, before pivot_root)
    prestart/createRuntime, "ok <pid>" ->
                               <-    "ready" | "error <code> <message>"

then init blocks opening the exec fifo for writing until `start` opens it for reading.
"""

from __future__ import annotations

import os
import time

from berth.errors import Conflict, InvalidArgument
from berth.runtime import state as state_mod
from berth.runtime.sync import ChildError

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36


class Options:
    """Flags shared by create/run."""

    def __init__(self, *, bundle: str = ".", pid_file: str = "", console_socket: str = "",
                 preserve_fds: int = 0, no_pivot: bool = False, systemd: bool = False,
                 detach: bool = False, keep: bool = False, foreground: bool = False) -> None:
        self.bundle = os.path.abspath(bundle)
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.preserve_fds = preserve_fds
        self.no_pivot = no_pivot
        self.systemd = systemd
        self.detach = detach
        self.keep = keep
        self.foreground = foreground  # run -t without --console-socket: we hold the pty master
        self.master = -1


def write_pid_file(path: str, pid: int) -> None:
    """Write pid to path atomically (temp file + rename)."""
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def cgroup_manager(spec: dict, cid: str, systemd: bool):
    from berth.runtime.cgroups import manager_for

    return manager_for((spec.get("linux") or {}).get("cgroupsPath") or "", cid, systemd=systemd)


def _resources(spec: dict) -> dict:
    from berth.runtime.cgroups import DEFAULT_ALLOWED_DEVICES

    lcfg = spec.get("linux") or {}
    res = dict(lcfg.get("resources") or {})
    rules = list(res.get("devices") or [])
    for d in lcfg.get("devices") or []:
        if d["type"] in ("c", "b"):
            rules.append({"allow": True, "type": d["type"], "major": d["major"], "minor": d["minor"],
                          "access": "rwm"})
    res["devices"] = rules + list(DEFAULT_ALLOWED_DEVICES)
    return res


def seccomp_filter(spec: dict, root: str):
    """The container's seccomp profile compiled to BPF (cached under <root>/.seccomp-cache), or None.

    A cache hit means this exact profile was validated and compiled before; otherwise it is
    validated here (InvalidArgument naming linux.seccomp)."""
    from berth.runtime.config import validate_seccomp

    profile = (spec.get("linux") or {}).get("seccomp")
    if profile is None:
        return None
    if not isinstance(profile, dict):
        validate_seccomp(profile)
    from berth.runtime.process import compile_seccomp

    try:
        compiled = compile_seccomp(profile, os.path.join(root, ".seccomp-cache"))
    except InvalidArgument as e:
        raise InvalidArgument(f"config.json: linux.seccomp: {e}") from None
    if compiled is None:
        validate_seccomp(profile)
    return compiled


def create(root: str, cid: str, opts: Options) -> state_mod.Container:
    """Set up the container up to the exec fifo; returns its record (status `created`)."""
    from berth.runtime import cgwarm, config
    from berth.runtime.init import InitContext, child, write_id_maps
    from berth.runtime.sync import pair
    from berth.sys import linux

    state_mod.check_id(cid)
    spec = config.load(opts.bundle, check_seccomp=False)
    bpf = seccomp_filter(spec, root)
    lcfg = spec.get("linux") or {}
    if (lcfg.get("resources") or {}):
        try:
            from berth.runtime.cgroups import resources as res_mod
        except ImportError:
            res_mod = None
        if res_mod is not None and hasattr(res_mod, "validate"):
            res_mod.validate(lcfg["resources"])
    proc = spec["process"]
    if proc.get("terminal") and not opts.console_socket and not opts.foreground:
        raise InvalidArgument("process.terminal is set: --console-socket is required")
    mgr = cgroup_manager(spec, cid, opts.systemd)  # InvalidArgument for --systemd-cgroup here
    ns = config.namespaces(spec)
    double = "user" in ns
    d = state_mod.create_dir(root, cid)
    pid = stage1 = 0
    fds: list[int] = []
    chan = None
    cg_created = False
    try:
        fifo = os.path.join(d, state_mod.FIFO)
        os.mkfifo(fifo, 0o622)
        os.chmod(fifo, 0o622)  # not reduced by the umask: init may run as another (host) uid
        fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
        fds.append(fifo_fd)
        console_fd = ours = -1
        if proc.get("terminal") and not opts.console_socket:
            from berth.runtime import tty

            ours, console_fd = tty.socketpair()
            fds += [ours, console_fd]
        if opts.console_socket:
            from berth.runtime import tty

            console_fd = tty.connect(opts.console_socket)
            os.set_inheritable(console_fd, False)
            fds.append(console_fd)
        created = state_mod.rfc3339()
        st = {"ociVersion": spec.get("ociVersion"), "id": cid, "status": "creating",
              "bundle": opts.bundle, "rootfs": spec["root"]["path"], "created": created,
              "annotations": spec.get("annotations") or {}, "pid": 0}
        pchan, cchan = pair()
        chan = pchan
        ctx = InitContext(spec, opts.bundle, cid, cchan, fifo_fd=fifo_fd, console_fd=console_fd,
                          preserve_fds=opts.preserve_fds, no_pivot=opts.no_pivot, double_fork=double,
                          state=st, seccomp_bpf=bpf)
        if "time" in ns and not double:
            cgwarm.wait()  # setns(CLONE_NEWTIME) needs a single-threaded caller
        linux.prctl(PR_SET_DUMPABLE, 0)
        restore = _enter_pid_time(ns, lcfg) if not double else []
        try:
            child_pid = os.fork()
            if child_pid == 0:
                cgwarm.in_child()
                pchan.close()
                child(ctx)
        finally:
            for t, fd in restore:
                linux.setns(fd, linux.NAMESPACE_FLAGS[t])
                os.close(fd)
        cchan.close()
        if double:
            stage1 = child_pid
        else:
            pid = child_pid
        # the cgroup is made, filled and joined while the child unshares its namespaces and imports
        # what it needs after pivot_root; it waits for "go" before anything else
        cg_created = True
        mgr.create()
        mgr.apply(_resources(spec))
        try:
            mgr.add(child_pid)
            oom = proc.get("oomScoreAdj")
            if oom is not None:
                try:
                    with open(f"/proc/{child_pid}/oom_score_adj", "w") as f:
                        f.write(str(oom))
                except OSError as e:
                    raise InvalidArgument(f"process.oomScoreAdj={oom}: {e.strerror}") from None
            pchan.send("go")
        except OSError:
            if not os.waitpid(child_pid, os.WNOHANG)[0]:
                raise
            pid = stage1 = 0  # reaped; init failed already and its message is waiting
            msg = pchan.recv()
            if msg.startswith("error "):
                _, code, text = msg.split(" ", 2)
                raise ChildError(text, int(code)) from None
            raise
        while True:
            msg = pchan.recv()
            word, _, arg = msg.partition(" ")
            if word == "userns":
                try:
                    write_id_maps(child_pid, lcfg)
                except OSError as e:
                    raise ChildError(f"writing uid/gid maps: {e.strerror}") from None
                pchan.send("mapped")
            elif word == "pid":
                pid = int(arg)
                os.waitpid(stage1, 0)
                stage1 = 0
            elif word == "hooks":
                from berth.runtime import hooks

                st["pid"] = pid
                hk = spec.get("hooks") or {}
                hooks.run(hk.get("prestart") or [], st, "prestart")
                hooks.run(hk.get("createRuntime") or [], st, "createRuntime")
                pchan.send(f"ok {pid}")
            elif word == "ready":
                if ours >= 0:
                    opts.master = tty.recv_fd(ours)
                break
            else:
                if word == "error":
                    code, _, text = arg.partition(" ")
                    raise ChildError(text, int(code))
                raise ChildError("container init exited unexpectedly during set-up" if not msg
                                 else f"unexpected message from init: {msg!r}")
        data = {"id": cid, "pid": pid, "start_time": linux.proc_start_time(pid), "bundle": opts.bundle,
                "rootfs": spec["root"]["path"], "created": created, "config": spec,
                "systemd_cgroup": opts.systemd, "cgroup_paths": mgr.paths(),
                "namespaces": {t: p or f"/proc/{pid}/ns/{_proc_ns(t)}" for t, p in ns.items()},
                "own_pidns": "pid" in ns and not ns["pid"]}
        c = state_mod.Container(root, cid, data)
        c.save()
        c.mgr = mgr
        if opts.pid_file:
            write_pid_file(opts.pid_file, pid)
        return c
    except BaseException:
        for p in (stage1, pid):
            if p:
                try:
                    os.kill(p, 9)
                except ProcessLookupError:
                    pass
        for p in (stage1, pid):
            if p:
                _reap(p)
        if cg_created:
            try:
                mgr.destroy()
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
        state_mod.remove_dir(root, cid)
        raise
    finally:
        cgwarm.wait()
        if chan is not None:
            chan.close()
        for fd in fds:
            os.close(fd)


def _proc_ns(t: str) -> str:
    from berth.sys.linux import NAMESPACE_PROC_NAMES

    return NAMESPACE_PROC_NAMES[t]


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        deadline = time.monotonic() + 5
        from berth.sys.linux import process_alive

        while process_alive(pid, None) and time.monotonic() < deadline:
            time.sleep(0.01)


def _enter_pid_time(ns: dict[str, str], lcfg: dict) -> list[tuple[str, int]]:
    """Make our next child land in the container's pid/time namespaces; returns fds to go back."""
    from berth.runtime.init import write_time_offsets
    from berth.sys import linux

    restore = []
    for t in ("pid", "time"):
        if t not in ns:
            continue
        restore.append((t, os.open(f"/proc/self/ns/{_proc_ns(t)}", os.O_RDONLY | os.O_CLOEXEC)))
        if ns[t]:
            fd = os.open(ns[t], os.O_RDONLY | os.O_CLOEXEC)
            try:
                linux.setns(fd, linux.NAMESPACE_FLAGS[t])
            finally:
                os.close(fd)
        else:
            linux.unshare(linux.NAMESPACE_FLAGS[t])
            if t == "time":
                write_time_offsets(lcfg)
    return restore


def start(c: state_mod.Container) -> None:
    """Release the init blocked on the exec fifo; run poststart hooks."""
    import select

    st = c.status()
    if st != "created":
        raise Conflict(f"cannot start a container that is {st}" if st != "stopped"
                       else "cannot start a container that has stopped")
    try:
        fd = os.open(c.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Conflict("cannot start an already running container") from None
    try:
        while True:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                data = os.read(fd, 1)
                if data:
                    break
            if not c.alive():
                raise Conflict("container init exited before start")
    finally:
        os.close(fd)
    try:
        os.unlink(c.fifo)
    except FileNotFoundError:
        pass
    hk = (c.spec.get("hooks") or {}).get("poststart")
    if hk:
        from berth.runtime import hooks

        try:
            hooks.run(hk, c.oci_state("running"), "poststart")
        except hooks.HookError as e:
            import sys

            sys.stderr.write(f"berth-runtime: warning: {e}\n")


def parse_signal(sig: str) -> int:
    import _signal

    s = sig.upper()
    if s.isdigit():
        n = int(s)
    else:
        if not s.startswith("SIG"):
            s = "SIG" + s
        n = getattr(_signal, s, None)
        if not isinstance(n, int):
            raise InvalidArgument(f"unknown signal {sig!r}")
    if not 0 < n < 65:
        raise InvalidArgument(f"invalid signal {sig!r}")
    return n


def kill(c: state_mod.Container, sig: int, *, all_: bool = False) -> None:
    st = c.status()
    if st == "stopped":
        raise Conflict("container not running")
    if all_:
        mgr = cgroup_manager(c.spec, c.id, c.data.get("systemd_cgroup", False))
        for p in mgr.pids():
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        if st == "paused" and sig == 9:
            mgr.freeze(False)
        return
    os.kill(c.pid, sig)
    if st == "paused" and sig == 9:
        cgroup_manager(c.spec, c.id, c.data.get("systemd_cgroup", False)).freeze(False)


def delete(c: state_mod.Container, *, force: bool = False) -> None:
    """Remove a stopped (or created) container; --force kills a running one first."""
    st = c.status()
    if st in ("running", "paused") and not force:
        raise Conflict(f"cannot delete container {c.id} that is not stopped: {st}")
    mgr = c.mgr
    if mgr is None:
        try:
            mgr = cgroup_manager(c.spec, c.id, c.data.get("systemd_cgroup", False))
        except Exception:  # noqa: BLE001 - a record without a usable cgroup can still be removed
            mgr = None
    if st != "stopped":
        try:
            os.kill(c.pid, 9)
        except ProcessLookupError:
            pass
        if st == "paused" and mgr is not None:
            mgr.freeze(False)
        deadline = time.monotonic() + 10
        while c.alive() and time.monotonic() < deadline:
            time.sleep(0.005)
    if mgr is not None and mgr.exists():
        if not c.data.get("own_pidns"):
            # init did not own a pid namespace: nothing killed the rest for us
            for p in mgr.pids():
                try:
                    os.kill(p, 9)
                except ProcessLookupError:
                    pass
        if mgr.frozen():
            mgr.freeze(False)
        mgr.destroy()
    hk = (c.spec.get("hooks") or {}).get("poststop")
    if hk:
        from berth.runtime import hooks

        try:
            hooks.run(hk, c.oci_state("stopped"), "poststop")
        except hooks.HookError as e:
            import sys

            sys.stderr.write(f"berth-runtime: warning: {e}\n")
    state_mod.remove_dir(c.root, c.id)


def pause(c: state_mod.Container, frozen: bool) -> None:
    st = c.status()
    if frozen and st != "running":
        raise Conflict(f"container not running (status {st})")
    if not frozen and st != "paused":
        raise Conflict(f"container not paused (status {st})")
    cgroup_manager(c.spec, c.id, c.data.get("systemd_cgroup", False)).freeze(frozen)


def pids(c: state_mod.Container) -> list[int]:
    return sorted(cgroup_manager(c.spec, c.id, c.data.get("systemd_cgroup", False)).pids())


def stats(c: state_mod.Container) -> dict:
    if c.status() == "stopped":
        raise Conflict("container not running")
    mgr = cgroup_manager(c.spec, c.id, c.data.get("systemd_cgroup", False))
    data = dict(mgr.stats())
    try:
        oom = mgr.oom_kill_count()
    except Exception:  # noqa: BLE001
        oom = 0
    data.setdefault("memory", {})
    if isinstance(data["memory"], dict):
        data["memory"].setdefault("oom_kill", oom)
    return {"type": "stats", "id": c.id, "data": data}


def wait_exit(pid: int) -> int:
    """Wait for our child pid; its exit status as a shell reports it (128+signal)."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return 255
        if os.WIFEXITED(status):
            return os.WEXITSTATUS(status)
        if os.WIFSIGNALED(status):
            return 128 + os.WTERMSIG(status)


FORWARD = (1, 2, 3, 10, 12, 15, 28)  # HUP INT QUIT USR1 USR2 TERM WINCH


def forward_signals(pid: int) -> None:
    import _signal

    def handler(sig, _frame):  # noqa: ANN001
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    for s in FORWARD:
        _signal.signal(s, handler)


def run(root: str, cid: str, opts: Options) -> int:
    """create + start; unless detached wait for the process, delete, return its status."""
    from berth.sys import linux

    if not opts.detach:
        linux.prctl(PR_SET_CHILD_SUBREAPER, 1)
    opts.foreground = not opts.detach
    c = create(root, cid, opts)
    master = opts.master
    try:
        start(c)
    except BaseException:
        delete(c, force=True)
        raise
    if opts.detach:
        return 0
    forward_signals(c.pid)
    if master >= 0:
        from berth.runtime import tty

        tty.proxy(master)
        os.close(master)
    code = wait_exit(c.pid)
    if not opts.keep:
        delete(c, force=True)
    return code
