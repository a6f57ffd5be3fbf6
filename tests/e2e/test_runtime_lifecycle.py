"""berth-runtime lifecycle verbs: create/start/state/kill/delete, exec, tty over a console
socket, pause/resume, cgroup limits (memory OOM, pids), list/ps/events."""

from __future__ import annotations

import array
import json
import os
import socket
import subprocess
import time

import pytest
from test_runtime_support import make_bundle, new_id, runtime_fixture, write_spec  # noqa: F401

pytestmark = pytest.mark.root


def _wait_status(runtime, cid: str, status: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = runtime.state(cid)
        if st["status"] == status or time.monotonic() > deadline:
            return st
        time.sleep(0.02)


class ConsoleSocket:
    """A listening unix socket that receives a pty master the way conmon does."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.sock.settimeout(10)

    def receive(self) -> tuple[bytes, int]:
        conn, _ = self.sock.accept()
        with conn:
            fds = array.array("i")
            msg, anc, _, _ = conn.recvmsg(64, socket.CMSG_LEN(fds.itemsize))
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: fds.itemsize])
        return msg, fds[0]

    def close(self) -> None:
        self.sock.close()


def _read_all(fd: int, timeout: float = 10) -> bytes:
    import select

    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the slave side is closed
                break
            if not chunk:
                break
            out += chunk
    return out


def test_create_start_state_kill_delete(tmp_path, busybox_rootfs_template, runtime):
    bundle, spec = make_bundle(tmp_path, busybox_rootfs_template, ["sleep", "300"])
    spec["annotations"] = {"org.example": "yes"}
    write_spec(bundle, spec)
    cid = runtime.track(new_id())
    pidfile = tmp_path / "init.pid"
    runtime("create", "--bundle", bundle, "--pid-file", str(pidfile), cid, check=True)
    st = runtime.state(cid)
    assert st["status"] == "created" and st["id"] == cid and st["bundle"] == bundle
    assert st["annotations"] == {"org.example": "yes"}
    assert int(pidfile.read_text()) == st["pid"] > 1
    with open(f"/proc/{st['pid']}/cmdline", "rb") as f:
        assert b"sleep" not in f.read()            # still our init, waiting on the exec fifo
    assert runtime("delete", cid).returncode == 0  # a created container can be deleted
    runtime("create", "--bundle", bundle, cid, check=True)
    runtime("start", cid, check=True)
    st = _wait_status(runtime, cid, "running")
    assert st["status"] == "running"
    time.sleep(0.1)
    with open(f"/proc/{st['pid']}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[0] == b"sleep"
    assert runtime("start", cid).returncode != 0
    listed = json.loads(runtime("list", "--format", "json", check=True).stdout)
    assert [c["id"] for c in listed] == [cid] and listed[0]["status"] == "running"
    assert cid in runtime("list", check=True).stdout
    assert runtime("delete", cid).returncode != 0   # running: needs --force
    runtime("kill", cid, "KILL", check=True)
    assert _wait_status(runtime, cid, "stopped")["status"] == "stopped"
    assert runtime("kill", cid, "KILL").returncode != 0
    runtime("delete", cid, check=True)
    assert runtime("state", cid).returncode != 0


def test_delete_force_running(tmp_path, busybox_rootfs_template, runtime):
    bundle, _ = make_bundle(tmp_path, busybox_rootfs_template, ["sleep", "300"])
    cid = runtime.track(new_id())
    runtime("run", "-d", "-b", bundle, cid, check=True)
    pid = runtime.state(cid)["pid"]
    runtime("delete", "--force", cid, check=True)
    assert not os.path.exists(f"/proc/{pid}/cmdline") or open(f"/proc/{pid}/stat").read().split()[2] in "ZX"


def test_exec_joins_everything(tmp_path, busybox_rootfs_template, runtime):
    bundle, _ = make_bundle(tmp_path, busybox_rootfs_template, ["sleep", "300"])
    cid = runtime.track(new_id())
    runtime("run", "-d", "-b", bundle, cid, check=True)
    p = runtime("exec", "--env", "FOO=bar", "--cwd", "/tmp", "--user", "1000:1000", cid, "sh", "-c",
                "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; echo pid=$$; id -u; pwd; echo $FOO;"
                " grep memory /proc/self/cgroup;"
                " grep -E '^(CapEff|Seccomp):' /proc/self/status | tr -d '\\t';"
                " ls /proc/self/fd | tr '\\n' ' '")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "berth-test"
    assert lines[1].strip() == "sleep 300"
    assert lines[2].startswith("pid=") and int(lines[2][4:]) > 1
    assert lines[3:6] == ["1000", "/tmp", "bar"]
    assert lines[6].endswith("/" + cid)
    assert "CapEff:0000000000000000" in lines  # non-root user: no effective caps
    assert "Seccomp:2" in lines
    assert lines[-1].split() == ["0", "1", "2", "3"]
    assert runtime("exec", cid, "sh", "-c", "exit 5").returncode == 5
    p = runtime("exec", cid, "nosuchcmd")
    assert p.returncode == 127 and "nosuchcmd" in p.stderr
    # --process JSON and --detach with a pid file
    proc = {"args": ["sleep", "100"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}
    pf = tmp_path / "proc.json"
    pf.write_text(json.dumps(proc))
    pidfile = tmp_path / "exec.pid"
    runtime("exec", "--process", str(pf), "--detach", "--pid-file", str(pidfile), cid, check=True)
    epid = int(pidfile.read_text())
    assert json.loads(runtime("ps", "--format", "json", cid, check=True).stdout).count(epid) == 1
    assert "sleep 100" in runtime("ps", cid, check=True).stdout


def test_tty_through_console_socket(tmp_path, busybox_rootfs_template, runtime):
    bundle, spec = make_bundle(tmp_path, busybox_rootfs_template,
                               ["sh", "-c", "tty; stty size; ls -l /dev/console | cut -c1"], terminal=True)
    spec["process"]["consoleSize"] = {"height": 30, "width": 100}
    write_spec(bundle, spec)
    cs = ConsoleSocket(str(tmp_path / "console.sock"))
    try:
        cid = runtime.track(new_id())
        runtime("create", "--console-socket", cs.path, "-b", bundle, cid, check=True)
        name, master = cs.receive()
        try:
            runtime("start", cid, check=True)
            out = _read_all(master).decode().replace("\r", "")
        finally:
            os.close(master)
    finally:
        cs.close()
    assert out.splitlines()[:3] == ["/dev/pts/0", "30 100", "c"], out
    assert name


def test_exec_tty(tmp_path, busybox_rootfs_template, runtime):
    bundle, _ = make_bundle(tmp_path, busybox_rootfs_template, ["sleep", "300"])
    cid = runtime.track(new_id())
    runtime("run", "-d", "-b", bundle, cid, check=True)
    cs = ConsoleSocket(str(tmp_path / "exec.sock"))
    try:

        proc = subprocess.Popen([runtime.path, "--root", runtime.root, "exec", "--tty", "--console-socket",
                                 cs.path, cid, "sh", "-c", "tty; echo hi"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        _, master = cs.receive()
        out = _read_all(master).decode().replace("\r", "")
        os.close(master)
        assert proc.wait(10) == 0
    finally:
        cs.close()
    assert out.split() == ["/dev/pts/0", "hi"]


def test_pause_resume(tmp_path, busybox_rootfs_template, runtime):
    bundle, _ = make_bundle(tmp_path, busybox_rootfs_template, ["sleep", "300"])
    cid = runtime.track(new_id())
    runtime("run", "-d", "-b", bundle, cid, check=True)
    runtime("pause", cid, check=True)
    assert runtime.state(cid)["status"] == "paused"
    assert runtime("exec", cid, "true").returncode != 0
    runtime("resume", cid, check=True)
    assert runtime.state(cid)["status"] == "running"
    runtime("pause", cid, check=True)
    runtime("delete", "--force", cid, check=True)   # --force on a paused container


def test_memory_limit_oom_is_reported(tmp_path, busybox_rootfs_template, runtime):
    bundle, spec = make_bundle(tmp_path, busybox_rootfs_template,
                               ["sh", "-c", "head -c 400m /dev/zero | tail > /dev/null; echo status=$?;"
                                " sleep 300"])
    # swap pinned to the limit: on a host with swap the process would page out instead of dying
    spec["linux"]["resources"]["memory"] = {"limit": 32 * 1024 * 1024, "swap": 32 * 1024 * 1024}
    write_spec(bundle, spec)
    cid = runtime.track(new_id())
    log = tmp_path / "out"
    with open(log, "w") as out:

        subprocess.run([runtime.path, "--root", runtime.root, "run", "-d", "-b", bundle, cid], stdout=out,
                       stderr=out, check=True, timeout=30)
    deadline = time.monotonic() + 60
    while "status=" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "status=137" in log.read_text(), runtime("events", "--stats", cid).stdout
    ev = json.loads(runtime("events", "--stats", cid, check=True).stdout)
    assert ev["type"] == "stats" and ev["id"] == cid
    assert ev["data"]["memory"]["oom_kill"] >= 1


def test_pids_limit_stops_fork_bomb(tmp_path, busybox_rootfs_template, runtime):
    bundle, spec = make_bundle(tmp_path, busybox_rootfs_template,
                               ["sh", "-c", "sh -c 'i=0; while [ $i -lt 40 ]; do sleep 30 & i=$((i+1));"
                                " done'; set -- /proc/[0-9]*; echo n=$#"])
    spec["linux"]["resources"]["pids"] = {"limit": 10}
    write_spec(bundle, spec)
    p = runtime("run", "-b", bundle, runtime.track(new_id()), timeout=60)
    assert "can't fork" in p.stderr or "Resource temporarily unavailable" in p.stderr
    n = int(p.stdout.split("n=")[1].split()[0])
    assert 1 < n <= 10


def test_join_namespaces_by_path_and_time_namespace(tmp_path, busybox_rootfs_template, runtime):
    bundle_a, _ = make_bundle(tmp_path, busybox_rootfs_template, ["sleep", "300"], name="a")
    a = runtime.track(new_id())
    runtime("run", "-d", "-b", bundle_a, a, check=True)
    pid = runtime.state(a)["pid"]
    bundle_b, spec = make_bundle(tmp_path, busybox_rootfs_template,
                                 ["sh", "-c", "readlink /proc/self/ns/net; readlink /proc/self/ns/pid;"
                                  " echo pid=$$; cut -d. -f1 /proc/uptime"], name="b")
    for n in spec["linux"]["namespaces"]:
        if n["type"] in ("network", "pid"):
            n["path"] = f"/proc/{pid}/ns/" + ("net" if n["type"] == "network" else "pid")
    if os.path.exists("/proc/self/ns/time"):
        spec["linux"]["namespaces"].append({"type": "time"})
        spec["linux"]["timeOffsets"] = {"boottime": {"secs": 10 * 365 * 86400, "nanosecs": 0}}
    write_spec(bundle_b, spec)
    p = runtime("run", "-b", bundle_b, runtime.track(new_id()))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == os.readlink(f"/proc/{pid}/ns/net")
    assert lines[1] == os.readlink(f"/proc/{pid}/ns/pid")
    assert lines[2] != "pid=1"                       # a second process in A's pid namespace
    if os.path.exists("/proc/self/ns/time"):
        assert int(lines[3]) > 10 * 365 * 86400
    assert runtime.state(a)["status"] == "running"   # deleting B left A alone


def test_preserve_fds_and_kill_all(tmp_path, busybox_rootfs_template, runtime):
    bundle, _ = make_bundle(tmp_path, busybox_rootfs_template,
                            ["sh", "-c", "cat <&3; sleep 300 & sleep 300"])
    r, w = os.pipe()
    os.write(w, b"through fd 3\n")
    os.close(w)
    cid = runtime.track(new_id())
    out = tmp_path / "out"

    with open(out, "w") as f:
        subprocess.run([runtime.path, "--root", runtime.root, "run", "-d", "--preserve-fds", "1",
                        "-b", bundle, cid], stdout=f, stderr=f, pass_fds=(3,),
                       preexec_fn=lambda: os.dup2(r, 3), check=True)
    os.close(r)
    deadline = time.monotonic() + 5
    while "through fd 3" not in out.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "through fd 3" in out.read_text()
    deadline = time.monotonic() + 5
    while len(json.loads(runtime("ps", "--format", "json", cid, check=True).stdout)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    runtime("kill", "--all", cid, "KILL", check=True)
    assert _wait_status(runtime, cid, "stopped")["status"] == "stopped"


def test_waiting_init_is_not_reachable_from_the_container(tmp_path, busybox_rootfs_template, runtime):
    """Before execve, init is the host's Python: /proc/1/exe must not be reachable from inside."""
    bundle, _ = make_bundle(tmp_path, busybox_rootfs_template, ["true"])
    cid = runtime.track(new_id())
    runtime("create", "-b", bundle, cid, check=True)
    p = runtime("exec", cid, "sh", "-c", "readlink /proc/1/exe || echo denied; cat /proc/1/exe > /dev/null"
                " 2>&1 || echo denied; readlink /proc/1/fd/0 || echo denied; ls /proc/self/fd | tr '\\n' ' '")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines.count("denied") == 3, p.stdout
    assert "python" not in p.stdout
    assert lines[-1].split() == ["0", "1", "2", "3"]


def test_update_resources(tmp_path, busybox_rootfs_template, runtime):
    bundle, _ = make_bundle(tmp_path, busybox_rootfs_template, ["sleep", "300"])
    cid = runtime.track(new_id())
    runtime("run", "-d", "-b", bundle, cid, check=True)
    runtime("update", "--memory", "64m", "--pids-limit", "33", cid, check=True)
    res = tmp_path / "res.json"
    res.write_text(json.dumps({"cpu": {"shares": 512}}))
    runtime("update", "-r", str(res), cid, check=True)
    p = runtime("exec", cid, "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
                " /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.shares")
    assert p.stdout.split() == [str(64 << 20), "33", "512"], p.stderr
    assert runtime("update", "--memory", "lots", cid).returncode == 2


def test_foreground_terminal_without_console_socket(tmp_path, busybox_rootfs_template, runtime):
    bundle, _ = make_bundle(tmp_path, busybox_rootfs_template, ["sh", "-c", "tty; echo out; exit 4"],
                            terminal=True)
    cid = runtime.track(new_id())
    p = runtime("run", "-b", bundle, cid, stdin=subprocess.DEVNULL)
    assert p.returncode == 4, p.stderr
    assert p.stdout.replace("\r", "").split() == ["/dev/pts/0", "out"]
    bundle2, _ = make_bundle(tmp_path, busybox_rootfs_template, ["sleep", "300"], name="b2")
    cid2 = runtime.track(new_id())
    runtime("run", "-d", "-b", bundle2, cid2, check=True)
    p = runtime("exec", "-t", cid2, "sh", "-c", "tty; exit 2", stdin=subprocess.DEVNULL)
    assert p.returncode == 2 and p.stdout.replace("\r", "").split() == ["/dev/pts/0"]
