"""json-file log rotation (max-size, max-file) and the `none` driver, set through the Engine API.

Containers are created with docker-py's low-level API and a raw ``HostConfig.LogConfig``; logs are
read back with the docker CLI (``docker logs``) and docker-py, the files checked on disk via ``LogPath``.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess

import pytest

from tests.e2e.daemon_fixture import Daemon
from tests.helpers import mounts_under

pytestmark = pytest.mark.root
docker = pytest.importorskip("docker")

DOCKER = shutil.which("docker", path="/usr/local/bin:/usr/bin")
PAD = "x" * 80
# one write per line would be slow in sh; awk buffers, so the monitor gets big chunks (many lines per read)
AWK = "awk -v s=%s -v n=%s 'BEGIN { for (i = s; i < s + n; i++) printf \"line %%05d " + PAD + "\\n\", i }'"


def writer(n: int) -> str:
    return AWK % (0, n)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    base = tmp_path_factory.mktemp("logrot")
    d = Daemon(str(base))
    d.start()
    try:
        import http.client

        class Conn(http.client.HTTPConnection):
            def connect(self):
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(d.sock)

        conn = Conn("localhost", timeout=120)
        conn.request("POST", "/berth/images/bootstrap?name=busybox")
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        resp.read()
        yield d
    finally:
        d.cleanup()
    assert mounts_under(str(base)) == []


@pytest.fixture
def client(daemon):
    c = docker.DockerClient(base_url=daemon.url, version="1.44", timeout=60)
    yield c
    for ctr in c.containers.list(all=True):
        ctr.remove(force=True)
    c.close()


def _create(c, cmd: str, log_config: dict) -> str:
    """POST /containers/create with HostConfig = {"LogConfig": log_config}, sent as is."""
    return c.api.create_container("busybox", ["sh", "-c", cmd], host_config={"LogConfig": log_config})["Id"]


def _docker_logs(daemon: Daemon, *args: str) -> subprocess.CompletedProcess:
    if not DOCKER:
        pytest.skip("no docker CLI")
    env = {"DOCKER_HOST": daemon.url, "DOCKER_CONFIG": daemon.base, "HOME": daemon.base,
           "PATH": "/usr/bin:/bin"}
    return subprocess.run([DOCKER, "logs", *args], env=env, capture_output=True, text=True, timeout=60)


def _line(i: int) -> str:
    return f"line {i:05d} {PAD}"


def _check_consecutive(lines: list[str], last: int) -> int:
    """lines are `line N ...` for consecutive N ending at `last`; returns the first N."""
    assert lines, "no lines"
    first = int(lines[0].split()[1])
    assert lines == [_line(i) for i in range(first, last + 1)], (lines[:3], lines[-3:])
    return first


def test_rotation_keeps_max_files_and_reads_the_tail(daemon, client):
    n = 2000  # ~190 KB of output, ~300 KB of json-file records
    cid = _create(client, writer(n), {"Type": "json-file", "Config": {"max-size": "10k", "max-file": "3"}})
    client.api.start(cid)
    assert client.api.wait(cid, timeout=60)["StatusCode"] == 0
    info = client.api.inspect_container(cid)
    want = {"Type": "json-file", "Config": {"max-size": "10k", "max-file": "3"}}
    assert info["HostConfig"]["LogConfig"] == want
    log_path = info["LogPath"]
    assert log_path.endswith(f"{cid}-json.log") and os.path.exists(log_path)
    files = sorted(glob.glob(glob.escape(log_path) + "*"))
    assert files == [log_path, log_path + ".1", log_path + ".2"], files
    longest = max(len(ln) for f in files for ln in open(f, "rb"))
    for f in files:
        assert os.path.getsize(f) <= 10 * 1024 + longest, (f, os.path.getsize(f))
        assert all(re.match(rb'^\{"log":"line \d{5} x+\\n","stream":"stdout","time":"[^"]+"\}\n$', ln)
                   for ln in open(f, "rb")), f
    r = _docker_logs(daemon, cid)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    first = _check_consecutive(lines, n - 1)  # the most recent lines, in order, the last one present
    assert first > 0 and len(lines) >= 2 * 10 * 1024 // longest  # older files rotated away, 2+ files kept
    r = _docker_logs(daemon, "--tail", "5", cid)
    assert r.stdout.splitlines() == [_line(i) for i in range(n - 5, n)]
    r = _docker_logs(daemon, "--tail", str(len(lines) - 3), cid)  # a tail that reaches into .2
    assert r.stdout.splitlines() == lines[3:]
    assert client.api.logs(cid, tail=5).decode().splitlines() == [_line(i) for i in range(n - 5, n)]


def test_follow_across_rotations(daemon, client):
    """`logs -f` from the start of a container that rotates many times: every line once, in order."""
    n = 3000
    cmd = f"i=0; while [ $i -lt {n} ]; do {AWK % ('$i', 300)}; i=$((i+300)); sleep 0.05; done"
    cid = _create(client, cmd, {"Type": "json-file", "Config": {"max-size": "10k", "max-file": "100"}})
    client.api.start(cid)
    r = _docker_logs(daemon, "-f", cid)
    assert r.returncode == 0, r.stderr
    _check_consecutive(r.stdout.splitlines(), n - 1)
    assert r.stdout.splitlines()[0] == _line(0)
    assert client.api.wait(cid, timeout=60)["StatusCode"] == 0
    assert len(glob.glob(client.api.inspect_container(cid)["LogPath"] + ".*")) > 10  # it did rotate


def test_max_file_1_truncates(daemon, client):
    cid = _create(client, writer(500), {"Type": "json-file", "Config": {"max-size": "10k", "max-file": "1"}})
    client.api.start(cid)
    assert client.api.wait(cid, timeout=60)["StatusCode"] == 0
    log_path = client.api.inspect_container(cid)["LogPath"]
    assert glob.glob(glob.escape(log_path) + "*") == [log_path]
    lines = _docker_logs(daemon, cid).stdout.splitlines()
    assert _check_consecutive(lines, 499) > 0


def test_log_driver_none_writes_no_file(daemon, client):
    cid = _create(client, "echo gone; echo gone >&2", {"Type": "none"})
    client.api.start(cid)
    assert client.api.wait(cid, timeout=60)["StatusCode"] == 0
    info = client.api.inspect_container(cid)
    assert info["HostConfig"]["LogConfig"] == {"Type": "none", "Config": {}}
    assert not info["LogPath"] or not os.path.exists(info["LogPath"])
    assert glob.glob(os.path.join(daemon.data, "**", f"{cid}*json.log*"), recursive=True) == []


@pytest.mark.xfail(strict=True, reason="api/routes/containers.py logs(): the stream starts before "
                   "engine.logs() raises for the none driver, so clients see a cut stream ('unexpected "
                   "EOF') instead of Docker's 501 error; inspect also shows a LogPath (Docker: '')")
def test_log_driver_none_logs_error(daemon, client):
    cid = _create(client, "echo gone", {"Type": "none"})
    client.api.start(cid)
    assert client.api.wait(cid, timeout=60)["StatusCode"] == 0
    r = _docker_logs(daemon, cid)
    assert r.returncode == 1 and r.stdout == ""
    want = "Error response from daemon: configured logging driver does not support reading"
    assert want in r.stderr, r.stderr
    with pytest.raises(docker.errors.APIError) as ei:
        client.api.logs(cid)
    assert ei.value.status_code == 501 and "does not support reading" in str(ei.value)
    assert client.api.inspect_container(cid)["LogPath"] == ""
