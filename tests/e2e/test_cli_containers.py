"""The berth CLI's container verbs end to end: a private berthd, real containers, the CLI as a
subprocess (and under a real pty for -it)."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import signal
import struct
import subprocess
import tarfile
import termios
import time

import pytest

from tests.e2e.daemon_fixture import ROOT, Daemon
from tests.helpers import mounts_under

pytestmark = pytest.mark.root
BERTH = os.path.join(ROOT, ".venv", "berth-bin", "berth")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("clid"))
    d = Daemon(base)
    d.start()
    _bootstrap(d)
    yield d
    d.cleanup()
    assert mounts_under(base) == []


def _bootstrap(d: Daemon) -> None:
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(d.sock)

    conn = Conn("localhost")
    conn.request("POST", "/berth/images/bootstrap?name=busybox")
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    resp.read()


@pytest.fixture
def berth(daemon, tmp_path):
    env = {"BERTH_HOST": daemon.url, "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)}

    def run(*args, input=None, ok=True, timeout=60, binary=False, extra_env=None):
        r = subprocess.run([BERTH, *args], env={**env, **(extra_env or {})}, input=input, capture_output=True,
                           text=not binary, timeout=timeout, cwd=str(tmp_path))
        if ok is True:
            assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r

    run.env = env
    run.cwd = str(tmp_path)
    yield run
    # each test removes what it made: leave no container behind for the next
    ids = run("ps", "-aq", "--no-trunc").stdout.split()
    if ids:
        run("rm", "-f", *ids, ok=None)


class Pty:
    """The CLI on a real terminal of a given size."""

    def __init__(self, env: dict, cwd: str, *args: str, rows: int = 33, cols: int = 101) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
                os.chdir(cwd)
                os.execve(BERTH, [BERTH, *args], env)
            finally:
                os._exit(127)
        self.out = b""

    def read_until(self, needle: bytes, timeout: float = 15) -> bytes:
        end = time.time() + timeout
        while needle not in self.out and time.time() < end:
            r, _, _ = select.select([self.fd], [], [], 0.2)
            if r:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:
                    break
                if not data:
                    break
                self.out += data
        assert needle in self.out, self.out
        return self.out

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def wait(self, timeout: float = 15) -> int:
        end = time.time() + timeout
        while time.time() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            try:  # keep draining so the child never blocks on a full pty
                r, _, _ = select.select([self.fd], [], [], 0.1)
                if r:
                    self.out += os.read(self.fd, 4096)
            except OSError:
                time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        raise AssertionError(f"the CLI did not exit: {self.out!r}")


def test_run_output_and_exit_codes(berth):
    r = berth("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", ok=None)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    r = berth("run", "--rm", "busybox", "/no/such/bin", ok=None)
    assert r.returncode == 127, r.stderr
    assert r.stderr.startswith("berth: Error response from daemon: ") and "Run 'berth run --help'" in r.stderr
    r = berth("run", "--rm", "busybox", "/etc", ok=None)
    assert r.returncode == 126, r.stderr
    r = berth("run", "--rm", "-e", "A=1", "-e", "B", "-w", "/tmp", "-u", "1000:1000", "-h", "boxy",
              "busybox", "sh", "-c", "echo $A-$B; pwd; id -u; id -g; hostname", extra_env={"B": "local"})
    assert r.stdout == "1-local\n/tmp\n1000\n1000\nboxy\n"  # -e B takes B from our environment
    assert berth("ps", "-aq").stdout == ""  # --rm left nothing, the failed starts neither


def test_run_detached_logs_name_conflict(berth):
    r = berth("run", "-d", "--name", "web", "-l", "tier=front", "busybox", "sh", "-c",
              "echo started; sleep 30")
    cid = r.stdout.strip()
    assert len(cid) == 64 and r.stderr == ""
    deadline = time.time() + 10
    while "started" not in berth("logs", "web").stdout and time.time() < deadline:
        time.sleep(0.1)
    assert berth("logs", "web").stdout == "started\n"
    r = berth("run", "--name", "web", "busybox", "true", ok=None)
    assert r.returncode == 125
    assert (f'berth: Error response from daemon: Conflict. The container name "/web" is already in use by '
            f'container "{cid}"') in r.stderr
    r = berth("inspect", "-f", "{{.Config.Labels.tier}} {{.State.Running}}", "web")
    assert r.stdout == "front true\n"
    r = berth("run", "--cpus", "x", "busybox", ok=None)
    assert r.returncode == 125 and "--cpus" in r.stderr
    r = berth("run", "nosuchimage", ok=None)
    assert r.returncode == 125 and "Unable to find image 'nosuchimage:latest' locally" in r.stderr


def test_run_create_body_reaches_the_engine(berth):
    r = berth("create", "--name", "spec", "-m", "64m", "--pids-limit", "30", "--restart", "on-failure:2",
              "--cap-drop", "NET_RAW", "--read-only", "--tmpfs", "/run", "-p", "18089:80", "--init",
              "busybox", "sleep", "5")
    assert len(r.stdout.strip()) == 64
    fmt = ("{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}:"
           "{{.HostConfig.RestartPolicy.MaximumRetryCount}} {{json .HostConfig.CapDrop}} "
           "{{.HostConfig.ReadonlyRootfs}} {{.State.Status}}")
    want = f"{64 << 20} 30 on-failure:2 [\"CAP_NET_RAW\"] true created\n"
    assert berth("inspect", "-f", fmt, "spec").stdout == want
    assert berth("start", "spec").stdout == "spec\n"
    assert berth("port", "spec").stdout == "80/tcp -> 0.0.0.0:18089\n"
    assert berth("port", "spec", "80").stdout == "0.0.0.0:18089\n"
    r = berth("port", "spec", "81/udp", ok=None)
    assert r.returncode == 1 and "No public port '81/udp' published for spec" in r.stderr


def test_run_interactive_pipe(berth):
    r = berth("run", "--rm", "-i", "busybox", "cat", input="hi\nthere\n")
    assert r.stdout == "hi\nthere\n"
    r = berth("run", "--rm", "-i", "busybox", "sh", "-c", "wc -c; exit 4", input="x" * 100000, ok=None)
    assert (r.returncode, r.stdout.strip()) == (4, "100000")
    r = berth("run", "--rm", "-it", "busybox", "true", input="", ok=None)
    assert r.returncode == 1 and "the input device is not a TTY" in r.stderr


def test_run_it_under_a_pty_and_detach(berth):
    t = Pty(berth.env, berth.cwd, "run", "-it", "--name", "term", "busybox", "sh")
    t.read_until(b"# ")
    t.write(b"tty; stty size; echo hel''lo\r")
    out = t.read_until(b"hello\r\n")
    assert b"/dev/pts/0\r\n33 101\r\n" in out  # the window size was sent at start
    assert b"echo hel''lo" in out  # typed input echoes (raw mode here, the container's tty echoes)
    t.resize(40, 120)
    time.sleep(0.3)
    t.write(b"stty size\r")
    t.read_until(b"40 120\r\n")
    t.write(b"\x10\x11")  # ctrl-p ctrl-q: detach
    assert t.wait() == 0
    assert b"\x10" not in t.out[-20:]
    assert berth("inspect", "-f", "{{.State.Running}}", "term").stdout == "true\n"
    # attach again, type, exit: the exit code comes back
    t = Pty(berth.env, berth.cwd, "attach", "term")
    time.sleep(0.5)
    t.write(b"echo back; exit 6\r")
    t.read_until(b"back\r\n")
    assert t.wait() == 6


def test_exec(berth):
    berth("run", "-d", "--name", "ex", "busybox", "sleep", "60")
    r = berth("exec", "ex", "sh", "-c", "echo in; echo err >&2; exit 4", ok=None)
    assert (r.returncode, r.stdout, r.stderr) == (4, "in\n", "err\n")
    r = berth("exec", "ex", "nonexist", ok=None)
    assert r.returncode == 127
    assert berth("exec", "-i", "ex", "cat", input="piped\n").stdout == "piped\n"
    r = berth("exec", "-e", "X=5", "-w", "/etc", "-u", "1000", "ex", "sh", "-c", "echo $X $(pwd) $(id -u)")
    assert r.stdout == "5 /etc 1000\n"
    assert berth("exec", "-d", "ex", "sh", "-c", "echo bg > /tmp/bg").stdout == ""
    deadline = time.time() + 10
    while berth("exec", "ex", "cat", "/tmp/bg", ok=None).stdout != "bg\n" and time.time() < deadline:
        time.sleep(0.1)
    assert berth("exec", "ex", "cat", "/tmp/bg").stdout == "bg\n"
    t = Pty(berth.env, berth.cwd, "exec", "-it", "ex", "sh", rows=20, cols=70)
    t.read_until(b"# ")
    t.write(b"tty >/dev/null && stty size; exit 2\r")
    t.read_until(b"20 70\r\n")
    assert t.wait() == 2
    r = berth("exec", "nosuch", "true", ok=None)
    assert r.returncode == 1 and "No such container: nosuch" in r.stderr


def test_start_attach_restart(berth):
    berth("create", "--name", "st", "busybox", "sh", "-c", "echo run-$RANDOM; exit 5")
    r = berth("start", "-a", "st", ok=None)
    assert r.returncode == 5 and r.stdout.startswith("run-")
    berth("run", "-d", "--name", "att", "busybox", "sh", "-c", "sleep 1; echo late; exit 9")
    r = berth("attach", "att", ok=None)
    assert (r.returncode, r.stdout) == (9, "late\n")
    r = berth("attach", "att", ok=None)
    assert r.returncode == 1 and "You cannot attach to a stopped container, start it first" in r.stderr
    r = berth("start", "nosuch", "att", ok=None)
    assert r.returncode == 1 and "No such container: nosuch" in r.stderr and r.stdout == "att\n"
    assert "Error: failed to start containers: nosuch" in r.stderr
    berth("run", "-d", "--name", "rs", "busybox", "sleep", "60")
    pid = berth("inspect", "-f", "{{.State.Pid}}", "rs").stdout
    assert berth("restart", "-t", "0", "rs").stdout == "rs\n"
    assert berth("inspect", "-f", "{{.State.Pid}}", "rs").stdout != pid


def test_sig_proxy(berth):
    p = subprocess.Popen([BERTH, "run", "--rm", "busybox", "sh", "-c",
                          'trap "echo got-int; exit 9" INT; echo ready; while true; do sleep 0.1; done'],
                         env=berth.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert (p.returncode, out) == (9, b"got-int\n")


def test_cp_both_ways(berth, tmp_path):
    berth("run", "-d", "--name", "cpc", "busybox", "sleep", "60")
    src = tmp_path / "srcd"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "b.txt").write_text("B")
    (tmp_path / "f.txt").write_text("F")
    berth("cp", "f.txt", "cpc:/tmp/")
    berth("cp", "f.txt", "cpc:/tmp/renamed.txt")
    berth("cp", "srcd", "cpc:/tmp/")
    berth("cp", "srcd/.", "cpc:/tmp/contents")
    r = berth("exec", "cpc", "sh", "-c",
              "cat /tmp/f.txt /tmp/renamed.txt /tmp/srcd/sub/b.txt; ls /tmp/contents")
    assert r.stdout == "FFBa.txt\nsub\n"
    berth("cp", "cpc:/tmp/srcd", "out1")
    berth("cp", "cpc:/tmp/srcd/.", "out2")
    (tmp_path / "out3").mkdir()
    berth("cp", "cpc:/tmp/srcd", "out3")
    berth("cp", "cpc:/tmp/f.txt", "got.txt")
    assert (tmp_path / "out1" / "sub" / "b.txt").read_text() == "B"
    assert (tmp_path / "out2" / "a.txt").read_text() == "A"
    assert (tmp_path / "out3" / "srcd" / "a.txt").read_text() == "A"
    assert (tmp_path / "got.txt").read_text() == "F"
    # tar on stdout / stdin
    r = berth("cp", "cpc:/tmp/srcd", "-", binary=True)
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tf:
        assert sorted(tf.getnames()) == ["srcd", "srcd/a.txt", "srcd/sub", "srcd/sub/b.txt"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("from-stdin.txt")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"STD"))
    berth("cp", "-", "cpc:/tmp", input=buf.getvalue(), binary=True)
    assert berth("exec", "cpc", "cat", "/tmp/from-stdin.txt").stdout == "STD"
    # docker's errors
    r = berth("cp", "srcd", "cpc:/tmp/f.txt", ok=None)
    assert r.returncode == 1 and "cannot copy directory" in r.stderr
    r = berth("cp", "cpc:/nonexist", "x", ok=None)
    assert r.returncode == 1 and "Could not find the file /nonexist" in r.stderr
    r = berth("cp", "f.txt", "nosuch:/tmp", ok=None)
    assert r.returncode == 1 and "No such container: nosuch" in r.stderr


def test_top_stats_pause_rename_update(berth):
    berth("run", "-d", "--name", "mon", "busybox", "sleep", "60")
    lines = berth("top", "mon").stdout.splitlines()
    assert lines[0].split()[:2] == ["UID", "PID"] and "sleep 60" in lines[1]
    r = berth("stats", "--no-stream", "mon")
    head, row = r.stdout.splitlines()
    assert re.split(r"\s{2,}", head.strip()) == ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT",
                                                 "MEM %", "NET I/O", "BLOCK I/O", "PIDS"]
    assert row.split()[1] == "mon" and row.split()[2].endswith("%") and row.split()[-1] == "1"
    r = berth("stats", "--no-stream", "--format", "{{.Name}}:{{.PIDs}}", "mon")
    assert r.stdout == "mon:1\n"
    assert berth("pause", "mon").stdout == "mon\n"
    assert berth("inspect", "-f", "{{.State.Status}}", "mon").stdout == "paused\n"
    assert berth("unpause", "mon").stdout == "mon\n"
    assert berth("inspect", "-f", "{{.State.Status}}", "mon").stdout == "running\n"
    assert berth("rename", "mon", "mon2").stdout == ""
    assert berth("ps", "--format", "{{.Names}}").stdout == "mon2\n"
    r = berth("rename", "nosuch", "x", ok=None)
    assert r.returncode == 1 and "No such container: nosuch" in r.stderr
    assert berth("update", "-m", "64m", "--pids-limit", "50", "mon2").stdout == "mon2\n"
    r = berth("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}", "mon2")
    assert r.stdout == f"{64 << 20} 50\n"
    r = berth("update", "mon2", ok=None)
    assert r.returncode == 1 and "you must provide one or more flags" in r.stderr


def test_diff_export_commit_prune(berth, daemon, tmp_path):
    berth("run", "--name", "chg", "busybox", "sh", "-c", "echo data > /newfile; rm /bin/arch")
    cid = berth("inspect", "-f", "{{.Id}}", "chg").stdout.strip()
    diff = berth("diff", "chg").stdout.splitlines()
    assert "A /newfile" in diff and "D /bin/arch" in diff and "C /bin" in diff
    berth("export", "-o", "fs.tar", "chg")
    with tarfile.open(tmp_path / "fs.tar") as tf:
        names = tf.getnames()
    assert "newfile" in names and "bin/arch" not in names
    image_id = berth("commit", "-m", "msg", "-c", 'CMD ["cat", "/newfile"]', "chg", "committed:v1").stdout
    assert image_id.strip().startswith("sha256:")
    assert berth("run", "--rm", "committed:v1").stdout == "data\n"
    berth("create", "--name", "keepme", "-l", "keep=1", "busybox")
    r = berth("container", "prune", "-f", "--filter", "label=keep=1")
    assert r.stdout.startswith("Deleted Containers:\n") and "Total reclaimed space:" in r.stdout
    assert berth("ps", "-a", "--format", "{{.Names}}").stdout == "chg\n"
    r = berth("container", "prune", input="n\n")
    assert "Are you sure you want to continue? [y/N]" in r.stdout
    assert berth("ps", "-aq").stdout != ""
    r = berth("container", "prune", "-f")
    assert r.stdout.splitlines()[:2] == ["Deleted Containers:", cid]
    assert berth("ps", "-aq").stdout == ""
    berth("rmi", "committed:v1", ok=None)
