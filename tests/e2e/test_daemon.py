"""berthd end to end with docker-py 7: run, logs, exec, and containers that survive a kill -9."""

from __future__ import annotations

import time

import pytest

from tests.e2e.daemon_fixture import Daemon
from tests.helpers import mounts_under

pytestmark = pytest.mark.root
docker = pytest.importorskip("docker")


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(str(tmp_path))
    d.start()
    yield d
    d.cleanup()
    assert mounts_under(str(tmp_path)) == []


def _client(d):
    return docker.DockerClient(base_url=d.url, version="1.44", timeout=60)


def _bootstrap(d):
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


def test_docker_py_run_logs_exec(daemon):
    _bootstrap(daemon)
    c = _client(daemon)
    assert c.ping()
    out = c.containers.run("busybox", ["sh", "-c", "echo hi; echo err >&2"], remove=True, stderr=True)
    assert b"hi" in out
    ctr = c.containers.run("busybox", ["sleep", "60"], detach=True, name="sleeper")
    ctr.reload()
    assert ctr.status == "running"
    code, output = ctr.exec_run(["sh", "-c", "echo $((1+2))"])
    assert (code, output) == (0, b"3\n")
    assert [x.name for x in c.containers.list()] == ["sleeper"]
    ctr.stop(timeout=1)
    ctr.reload()
    assert ctr.status == "exited"
    ctr.remove()


def test_containers_survive_daemon_kill9(daemon):
    _bootstrap(daemon)
    c = _client(daemon)
    keep = c.containers.run(
        "busybox",
        ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"],
        detach=True,
        name="keeper",
    )
    short = c.containers.run("busybox", ["sh", "-c", "sleep 1.5; exit 7"], detach=True, name="short")
    keep.reload()
    pid_before = keep.attrs["State"]["Pid"]
    assert pid_before > 0
    c.close()
    daemon.kill9()
    time.sleep(2.5)  # "short" exits while the daemon is down; "keeper" keeps logging
    daemon.start()
    c = _client(daemon)
    keep = c.containers.get("keeper")
    assert keep.status == "running" and keep.attrs["State"]["Pid"] == pid_before
    short = c.containers.get("short")
    assert short.status == "exited" and short.attrs["State"]["ExitCode"] == 7
    assert short.attrs["State"]["FinishedAt"] > short.attrs["State"]["StartedAt"]
    ticks = keep.logs().decode().split()
    assert len([t for t in ticks if t == "tick"]) >= 10  # logging went on while the daemon was down
    keep.kill()
    assert c.api.wait(keep.id, timeout=20)["StatusCode"] == 137


def test_docker_cli_run_missing_binary_exits_127(daemon):
    import shutil
    import subprocess

    if not shutil.which("docker"):
        pytest.skip("no docker CLI")
    _bootstrap(daemon)
    env = {"DOCKER_HOST": daemon.url, "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": daemon.base}
    r = subprocess.run(["docker", "run", "--rm", "busybox", "/no/such/bin"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 127, r.stderr
    r = subprocess.run(["docker", "run", "--rm", "busybox", "sh", "-c", "echo via-cli; exit 3"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (3, "via-cli\n")
    r = subprocess.run(["docker", "ps", "-a", "-q"], env=env, capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == ""  # --rm removed both, the failed one too
