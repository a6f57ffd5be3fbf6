"""The per-container monitor: holds the container's stdio, writes its log, records its exit.

A monitor is a single-threaded process, detached from berthd (own session, reparented away),
so the daemon can die or restart while containers keep running. It drives an OCI runtime with
runc's command-line contract (``create``/``start``/``exec``/``kill``/``delete``): berth's own
runtime in-process (a forked child calls ``berth.runtime.cli.main``), or any runc-compatible
binary by path. It is a child subreaper, so the container's init is reparented to it and its
exit status is collected here.

Files in the container's state directory:
  ``monitor.json``  pid and start time of the monitor (written at start)
  ``init.pid``      the init's pid (written by the runtime)
  ``monitor.sock``  control socket (protocol below)
  ``exit.json``     exit code, FinishedAt and OOM flag, written atomically when init exits

Control protocol: a client sends one JSON line; the reply is one JSON line, then, for streaming
operations, frames ``[stream u8][0 0 0][len u32 BE][payload]`` (1 stdout, 2 stderr, 3 error
text, 4 exit JSON). Raw bytes sent by an attached client after its request are stdin; its
half-close is stdin EOF.
  {"op":"start"}                                  run the runtime's start; reply ok/error
  {"op":"attach","stdin":b,"stdout":b,"stderr":b}  stream output (and take stdin) until exit
  {"op":"wait"}                                   reply when the container has exited
  {"op":"resize","h":H,"w":W}                     set the pty size (tty containers/execs)
  {"op":"exec","id":X,"process":{..},"tty":b,"stdin":b}  run a process, stream it, end with 4
  {"op":"state"}                                  {"status","pid"}
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

STDOUT, STDERR, ERRTEXT, EXIT = 1, 2, 3, 4
PR_SET_CHILD_SUBREAPER = 36


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxI", stream, len(data)) + data


@dataclass
class Job:
    """What a monitor is asked to run."""

    id: str
    bundle: str
    state_dir: str
    runtime: str = "berth"  # "berth" = in-process berth runtime, else a runc-compatible binary
    runtime_root: str = "/run/berth-runtime"
    runtime_args: list[str] = field(default_factory=list)  # global flags for the runtime
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    log_driver: str = "json-file"
    log_path: str = ""
    log_max_size: int = 0
    log_max_file: int = 1
    cgroup_oom: str = ""  # path of memory.oom_control / memory.events to read the OOM count
    delete_on_exit: bool = True

    @classmethod
    def from_dict(cls, d: dict) -> Job:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})


class _Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = b""
        self.request: dict | None = None
        self.out = bytearray()
        self.streams: set[int] = set()
        self.stdin = False
        self.exec_id: str | None = None
        self.close_after_flush = False
        self.read_closed = False


class _Proc:
    """A process the monitor holds the stdio of (the init, or an exec)."""

    def __init__(self, key: str, tty: bool) -> None:
        self.key = key
        self.tty = tty
        self.pid = 0
        self.stdin_fd = -1
        self.out_fds: dict[int, int] = {}  # fd -> stream
        self.master_fd = -1
        self.exit_code: int | None = None
        self.clients: list[_Client] = []


class Monitor:
    def __init__(self, job: Job) -> None:
        self.job = job
        self.sel = selectors.DefaultSelector()
        self.log = None
        self.init = _Proc("init", job.tty)
        self.procs: dict[str, _Proc] = {"init": self.init}
        self.by_pid: dict[int, _Proc] = {}
        self.waiters: list[_Client] = []
        self.started = False
        self.exited = False
        self.finished_at = 0.0
        self.oom_before = 0
        self.pending_status: dict[int, int] = {}

    # -- runtime invocation ------------------------------------------------------------
    def _runtime(self, args: list[str], stdio: tuple[int, int, int] | None = None,
                 wait: bool = True) -> tuple[int, str]:
        """Run one runtime command with the given stdio; return (exit status, error text).

        Errors are read from the runtime's JSON log (runc's ``--log``), so that they never go
        into the container's own stderr pipe.
        """
        logf = os.path.join(self.job.state_dir, "runtime.log")
        try:
            offset = os.path.getsize(logf)
        except OSError:
            offset = 0
        err_r, err_w = os.pipe()
        argv = ["--root", self.job.runtime_root, "--log", logf, "--log-format", "json",
                *self.job.runtime_args, *args]
        pid = os.fork()
        if pid == 0:  # child: becomes the runtime command
            try:
                if stdio is None:
                    null = os.open(os.devnull, os.O_RDWR)
                    stdio = (null, null, err_w)
                for i, fd in enumerate(stdio):
                    os.dup2(fd, i)
                # the container's init may be forked from this process: it must not inherit the
                # monitor's sockets, pipes or log file (an open err pipe would block our read)
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.closerange(3, 65536)
                if self.job.runtime == "berth":
                    from berth.runtime.cli import main

                    sys.argv = ["berth-runtime", *argv]
                    os._exit(main(argv) or 0)
                os.execv(self.job.runtime, [self.job.runtime, *argv])
            except SystemExit as e:
                os._exit(e.code if isinstance(e.code, int) else 1)
            except BaseException as e:  # noqa: BLE001
                try:
                    os.write(2, f"{e}\n".encode())
                finally:
                    os._exit(1)
        os.close(err_w)
        if not wait:
            os.close(err_r)
            return pid, ""
        chunks = []
        while True:
            b = os.read(err_r, 65536)
            if not b:
                break
            chunks.append(b)
        os.close(err_r)
        status = self._waitpid(pid)
        text = b"".join(chunks).decode("utf-8", "replace").strip()
        if status != 0:
            text = _log_errors(logf, offset) or text
        return status, text

    def _waitpid(self, pid: int) -> int:
        """Wait for one specific child, keeping statuses of other children reaped meanwhile."""
        if pid in self.pending_status:
            return self.pending_status.pop(pid)
        while True:
            try:
                _, st = os.waitpid(pid, 0)
                return os.waitstatus_to_exitcode(st)
            except ChildProcessError:
                return self.pending_status.pop(pid, -1)
            except InterruptedError:
                continue

    # -- set-up ------------------------------------------------------------------------
    def create(self) -> None:
        """Create the container through the runtime, with pipes (or a pty) as its stdio."""
        j = self.job
        if j.log_driver == "json-file" and j.log_path:
            from berth.engine.jsonlog import JSONLogWriter

            self.log = JSONLogWriter(j.log_path, j.log_max_size, j.log_max_file)
        args = ["create", "--bundle", j.bundle, "--pid-file", os.path.join(j.state_dir, "init.pid")]
        console = None
        if j.tty:
            path = "console.sock"  # relative: the monitor's cwd is the state dir (sun_path is short)
            if os.path.exists(path):
                os.unlink(path)
            console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            console.bind(path)
            console.listen(1)
            args += ["--console-socket", path]
            null = os.open(os.devnull, os.O_RDWR)
            stdio = (null, null, null)
            child_ends = [null]
        else:
            in_r, in_w = os.pipe() if j.open_stdin else (os.open(os.devnull, os.O_RDONLY), -1)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            stdio = (in_r, out_w, err_w)
            child_ends = [in_r, out_w, err_w]
            self.init.stdin_fd = in_w
            self.init.out_fds = {out_r: STDOUT, err_r: STDERR}
        args.append(j.id)
        if console is not None:
            pid, _ = self._runtime(args, stdio, wait=False)
            console.settimeout(30)
            try:
                conn, _ = console.accept()
                self.init.master_fd = _recv_fd(conn)
                conn.close()
            except OSError:
                pass
            console.close()
            status = self._waitpid(pid)
            errtext = "" if status == 0 else (
                _log_errors(os.path.join(j.state_dir, "runtime.log"), 0) or "runtime create failed")
            os.unlink(os.path.join(j.state_dir, "console.sock"))
        else:
            status, errtext = self._runtime(args, stdio)
        for fd in child_ends:
            os.close(fd)
        if status != 0:
            raise RuntimeError(errtext or f"runtime create exited {status}")
        with open(os.path.join(j.state_dir, "init.pid")) as f:
            self.init.pid = int(f.read().strip())
        self.by_pid[self.init.pid] = self.init
        for fd in list(self.init.out_fds):
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ, ("out", self.init, fd))
        if self.init.master_fd >= 0:
            os.set_blocking(self.init.master_fd, False)
            self.init.out_fds = {self.init.master_fd: STDOUT}
            self.sel.register(self.init.master_fd, selectors.EVENT_READ, ("out", self.init,
                                                                          self.init.master_fd))
        self.oom_before = self._oom_count()

    def _oom_count(self) -> int:
        path = self.job.cgroup_oom
        if not path:
            return 0
        try:
            with open(path) as f:
                for line in f:
                    k, _, v = line.partition(" ")
                    if k == "oom_kill":
                        return int(v)
        except OSError:
            pass
        return 0

    # -- main loop ---------------------------------------------------------------------
    def serve(self, listener: socket.socket) -> None:
        listener.setblocking(False)
        self.sel.register(listener, selectors.EVENT_READ, ("listen", None, None))
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wfd)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.sel.register(rfd, selectors.EVENT_READ, ("signal", None, None))
        self._reap()
        while True:
            if self.exited and not self._busy():
                break
            for key, mask in self.sel.select(timeout=1.0):
                kind, obj, fd = key.data
                if kind == "listen":
                    self._accept(listener)
                elif kind == "signal":
                    try:
                        os.read(rfd, 4096)
                    except BlockingIOError:
                        pass
                    self._reap()
                elif kind == "out":
                    self._pump(obj, fd)
                elif kind == "client":
                    if mask & selectors.EVENT_READ:
                        self._client_read(obj)
                    if mask & selectors.EVENT_WRITE:
                        self._client_write(obj)
            self._reap()

    def _busy(self) -> bool:
        if any(p.out_fds for p in self.procs.values()):
            return True
        return any(c.out for p in self.procs.values() for c in p.clients)

    def _reap(self) -> None:
        while True:
            try:
                pid, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(st)
            if code < 0:
                code = 128 - code
            proc = self.by_pid.pop(pid, None)
            if proc is None:
                self.pending_status[pid] = code
                continue
            proc.exit_code = code
            if proc is self.init:
                self._init_exited(code)
            else:
                self._maybe_finish_exec(proc)

    def _init_exited(self, code: int) -> None:
        self.finished_at = time.time()
        oom = self._oom_count() > self.oom_before
        j = self.job
        record = {"exit_code": code, "finished_at": self.finished_at, "oom_killed": oom,
                  "pid": self.init.pid}
        # drain whatever is still buffered in the pipes, then close them
        for fd in list(self.init.out_fds):
            self._pump(self.init, fd, drain=True)
        if self.init.stdin_fd >= 0:
            _close(self.init.stdin_fd)
            self.init.stdin_fd = -1
        tmp = os.path.join(j.state_dir, ".exit.json.tmp")
        with open(tmp, "w") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(j.state_dir, "exit.json"))
        self.exited = True
        if j.delete_on_exit:
            self._runtime(["delete", "--force", j.id])
        payload = json.dumps({"StatusCode": code, "OOMKilled": oom}).encode()
        for c in list(self.init.clients):
            c.close_after_flush = True
            self._send(c, frame(EXIT, payload))
        for c in self.waiters:
            c.close_after_flush = True
            self._send(c, (json.dumps(record) + "\n").encode())
        self.waiters.clear()

    def _maybe_finish_exec(self, proc: _Proc) -> None:
        if proc.exit_code is None:
            return
        for fd in list(proc.out_fds):
            self._pump(proc, fd, drain=True)
        if proc.stdin_fd >= 0:
            _close(proc.stdin_fd)
            proc.stdin_fd = -1
        payload = json.dumps({"ExitCode": proc.exit_code}).encode()
        for c in list(proc.clients):
            c.close_after_flush = True
            self._send(c, frame(EXIT, payload))
        self.procs.pop(proc.key, None)

    def _pump(self, proc: _Proc, fd: int, drain: bool = False) -> None:
        stream = proc.out_fds.get(fd)
        if stream is None:
            return
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError as e:  # EIO on a pty whose slave side is gone
                if e.errno != errno.EIO:
                    raise
                data = b""
            if not data:
                self.sel.unregister(fd)
                proc.out_fds.pop(fd, None)
                if fd != proc.master_fd:
                    os.close(fd)
                return
            if proc is self.init and self.log is not None:
                self.log.write("stderr" if stream == STDERR else "stdout", data)
            for c in proc.clients:
                if stream in c.streams:
                    self._send(c, frame(stream, data))
            if not drain:
                return

    # -- clients -----------------------------------------------------------------------
    def _accept(self, listener: socket.socket) -> None:
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        c = _Client(sock)
        self.sel.register(sock, selectors.EVENT_READ, ("client", c, None))

    def _client_read(self, c: _Client) -> None:
        try:
            data = c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if c.request is None:
            if not data:
                self._drop(c)
                return
            c.inbuf += data
            if b"\n" not in c.inbuf:
                if len(c.inbuf) > 1 << 20:
                    self._drop(c)
                return
            line, _, rest = c.inbuf.partition(b"\n")
            c.inbuf = b""
            try:
                c.request = json.loads(line)
            except ValueError:
                self._reply(c, {"ok": False, "error": "bad request"}, close=True)
                return
            self._handle(c, c.request)
            data = rest
            if not data:
                return
        if not data:
            c.read_closed = True
            self._stdin_eof(c)
            self._update_events(c)
            return
        self._stdin(c, data)

    def _proc_of(self, c: _Client) -> _Proc | None:
        return self.procs.get(c.exec_id or "init")

    def _stdin(self, c: _Client, data: bytes) -> None:
        proc = self._proc_of(c)
        if not c.stdin or proc is None:
            return
        fd = proc.master_fd if proc.tty else proc.stdin_fd
        if fd < 0:
            return
        try:
            os.set_blocking(fd, True)
            os.write(fd, data)
        except OSError:
            pass

    def _stdin_eof(self, c: _Client) -> None:
        proc = self._proc_of(c)
        if not c.stdin or proc is None or proc.tty:
            return
        once = self.job.stdin_once if proc is self.init else True
        if once and proc.stdin_fd >= 0:
            _close(proc.stdin_fd)
            proc.stdin_fd = -1

    def _handle(self, c: _Client, req: dict) -> None:
        op = req.get("op")
        if op == "start":
            self._op_start(c)
        elif op == "attach":
            c.streams = {s for s, on in ((STDOUT, req.get("stdout", True)),
                                         (STDERR, req.get("stderr", True))) if on}
            c.stdin = bool(req.get("stdin")) and (self.job.open_stdin or self.job.tty)
            self._reply(c, {"ok": True})
            if self.exited:
                c.close_after_flush = True
                self._send(c, frame(EXIT, json.dumps({"StatusCode": self.init.exit_code}).encode()))
            else:
                self.init.clients.append(c)
        elif op == "wait":
            if self.exited:
                self._reply(c, {"exit_code": self.init.exit_code, "finished_at": self.finished_at},
                            close=True)
            else:
                self.waiters.append(c)
        elif op == "resize":
            proc = self.procs.get(req.get("exec") or "init")
            if proc is not None and proc.master_fd >= 0:
                _set_winsize(proc.master_fd, int(req.get("h", 0)), int(req.get("w", 0)))
            self._reply(c, {"ok": True}, close=True)
        elif op == "exec":
            self._op_exec(c, req)
        elif op == "state":
            status = "exited" if self.exited else ("running" if self.started else "created")
            self._reply(c, {"status": status, "pid": self.init.pid, "exit_code": self.init.exit_code},
                        close=True)
        else:
            self._reply(c, {"ok": False, "error": f"unknown op {op!r}"}, close=True)

    def _op_start(self, c: _Client) -> None:
        if self.started:
            self._reply(c, {"ok": True}, close=True)
            return
        status, err = self._runtime(["start", self.job.id])
        if status != 0:
            self._reply(c, {"ok": False, "error": err or f"runtime start exited {status}"}, close=True)
            return
        self.started = True
        self._reply(c, {"ok": True}, close=True)

    def _op_exec(self, c: _Client, req: dict) -> None:
        eid = str(req.get("id") or "")
        if self.exited or not eid or eid in self.procs:
            self._reply(c, {"ok": False, "error": "container is not running" if self.exited
                            else "bad exec id"}, close=True)
            return
        tty = bool(req.get("tty"))
        proc = _Proc(eid, tty)
        pfile = os.path.join(self.job.state_dir, f"exec-{eid}.json")
        with open(pfile, "w") as f:
            json.dump(req.get("process") or {}, f)
        pidfile = os.path.join(self.job.state_dir, f"exec-{eid}.pid")
        args = ["exec", "--process", pfile, "--detach", "--pid-file", pidfile]
        child_ends: list[int] = []
        console = None
        if tty:
            cpath = f"exec-{eid[:16]}.sock"
            console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            console.bind(cpath)
            console.listen(1)
            args += ["--console-socket", cpath]
            null = os.open(os.devnull, os.O_RDWR)
            stdio = (null, null, null)
            child_ends = [null]
        else:
            in_r, in_w = os.pipe() if req.get("stdin") else (os.open(os.devnull, os.O_RDONLY), -1)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            stdio = (in_r, out_w, err_w)
            child_ends = [in_r, out_w, err_w]
            proc.stdin_fd = in_w
            proc.out_fds = {out_r: STDOUT, err_r: STDERR}
        args.append(self.job.id)
        if console is not None:
            pid, _ = self._runtime(args, stdio, wait=False)
            console.settimeout(10)
            try:
                conn, _ = console.accept()
                proc.master_fd = _recv_fd(conn)
                conn.close()
                proc.out_fds = {proc.master_fd: STDOUT}
            except OSError:
                pass
            console.close()
            os.unlink(cpath)
            status, err = self._waitpid(pid), ""
        else:
            status, err = self._runtime(args, stdio)
        for fd in child_ends:
            os.close(fd)
        if status != 0:
            for fd in proc.out_fds:
                _close(fd)
            _close(proc.stdin_fd)
            code = 127 if "not found" in err or "no such file" in err.lower() else (
                126 if "permission denied" in err.lower() else 126)
            self._reply(c, {"ok": False, "error": err or "exec failed", "exit_code": code}, close=True)
            return
        with open(pidfile) as f:
            proc.pid = int(f.read().strip())
        self.by_pid[proc.pid] = proc
        self.procs[eid] = proc
        c.exec_id = eid
        c.streams = {STDOUT, STDERR}
        c.stdin = bool(req.get("stdin"))
        proc.clients.append(c)
        for fd in proc.out_fds:
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ, ("out", proc, fd))
        self._reply(c, {"ok": True, "pid": proc.pid})
        if proc.pid in self.pending_status:  # exited before we registered it
            proc.exit_code = self.pending_status.pop(proc.pid)
            self.by_pid.pop(proc.pid, None)
            self._maybe_finish_exec(proc)

    def _reply(self, c: _Client, obj: dict, close: bool = False) -> None:
        if close:
            c.close_after_flush = True
        self._send(c, (json.dumps(obj) + "\n").encode())

    def _send(self, c: _Client, data: bytes) -> None:
        c.out += data
        self._client_write(c)

    def _client_write(self, c: _Client) -> None:
        while c.out:
            try:
                n = c.sock.send(c.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(c)
                return
            del c.out[:n]
        if not c.out and c.close_after_flush:
            self._drop(c)
            return
        self._update_events(c)

    def _update_events(self, c: _Client) -> None:
        ev = 0 if c.read_closed else selectors.EVENT_READ
        if c.out:
            ev |= selectors.EVENT_WRITE
        try:
            if ev:
                self.sel.modify(c.sock, ev, ("client", c, None))
            else:
                self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            if ev:
                self.sel.register(c.sock, ev, ("client", c, None))

    def _drop(self, c: _Client) -> None:
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
        c.out.clear()
        for p in self.procs.values():
            if c in p.clients:
                p.clients.remove(c)
        if c in self.waiters:
            self.waiters.remove(c)


def _log_errors(path: str, offset: int) -> str:
    """The error messages a runtime logged (runc's JSON log lines) after offset."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(1 << 20)
    except OSError:
        return ""
    msgs = []
    for line in data.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("level") in ("error", "fatal") and rec.get("msg"):
            msgs.append(str(rec["msg"]))
    return "; ".join(msgs[-2:])


def _close(fd: int) -> None:
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


def _recv_fd(conn: socket.socket) -> int:
    _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
    if not fds:
        raise OSError(errno.EBADMSG, "no fd received on the console socket")
    return fds[0]


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    import fcntl
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def run(job: Job, ready_fd: int = -1) -> int:
    """Monitor main: create the container, report readiness on ready_fd, serve until exit.

    ready_fd receives one JSON line: {"ok": true, "pid": init_pid} or {"ok": false, "error": ...}.
    """
    os.setsid()
    from berth.sys import linux

    linux.prctl(PR_SET_CHILD_SUBREAPER, 1)
    os.makedirs(job.state_dir, exist_ok=True)
    os.chdir(job.state_dir)  # sockets are bound by relative name: state dirs can be long
    sock_path = "monitor.sock"
    if os.path.exists(sock_path):
        os.unlink(sock_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    os.chmod(sock_path, 0o600)
    listener.listen(64)
    start = linux.proc_start_time(os.getpid())
    tmp = os.path.join(job.state_dir, ".monitor.json.tmp")
    with open(tmp, "w") as f:
        json.dump({"pid": os.getpid(), "start_time": start}, f)
    os.replace(tmp, os.path.join(job.state_dir, "monitor.json"))
    mon = Monitor(job)
    try:
        mon.create()
    except Exception as e:  # noqa: BLE001
        _report(ready_fd, {"ok": False, "error": str(e)})
        listener.close()
        os.unlink(sock_path)
        return 1
    _report(ready_fd, {"ok": True, "pid": mon.init.pid})
    mon.serve(listener)
    listener.close()
    try:
        os.unlink(sock_path)
    except OSError:
        pass
    return 0


def _report(fd: int, obj: dict) -> None:
    if fd < 0:
        return
    try:
        os.write(fd, (json.dumps(obj) + "\n").encode())
    finally:
        os.close(fd)


def spawn(job: Job, *, python: str | None = None) -> dict:
    """Start a detached monitor for job (from a single-threaded caller) and wait until it is ready.

    Forks twice so that the monitor is not the caller's child; returns the monitor's first
    report ({"ok": true, "pid": init_pid} or {"ok": false, "error": ...}).
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            if os.fork() != 0:
                os._exit(0)
            null = os.open(os.devnull, os.O_RDWR)
            for i in range(3):
                os.dup2(null, i)
            os.closerange(3, w)
            os.closerange(w + 1, 65536)
            os._exit(run(job, w))
        except BaseException as e:  # noqa: BLE001
            try:
                import traceback

                with open(os.path.join(job.state_dir, "monitor.err"), "a") as f:
                    traceback.print_exc(file=f)
                os.write(w, (json.dumps({"ok": False, "error": f"monitor: {e}"}) + "\n").encode())
            finally:
                os._exit(1)
    os.close(w)
    os.waitpid(pid, 0)
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(r, 4096)
        if not chunk:
            break
        data += chunk
    os.close(r)
    if not data:
        return {"ok": False, "error": "monitor died before it was ready"}
    return json.loads(data)


def main(argv: list[str] | None = None) -> int:
    """``python -I -S -m berth.engine.monitor JOB.json``: spawn a monitor and print its report."""
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        job = Job.from_dict(json.load(f))
    report = spawn(job)
    print(json.dumps(report))
    return 0 if report.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
