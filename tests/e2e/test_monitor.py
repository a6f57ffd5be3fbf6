"""The per-container monitor drives a runc-compatible runtime and holds the container's stdio."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import time
import uuid

import pytest

from berth.engine import jsonlog
from berth.engine.monitor import Job, spawn
from tests.helpers import make_busybox_rootfs

pytestmark = pytest.mark.root

RUNTIMES = []
if shutil.which("runc"):
    RUNTIMES.append(shutil.which("runc"))


def _bundle(tmp_path, args, terminal=False):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    make_busybox_rootfs(str(bundle / "rootfs"))
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["args"] = args
    spec["process"]["terminal"] = terminal
    spec["root"]["readonly"] = False
    (bundle / "config.json").write_text(json.dumps(spec))
    return str(bundle)


def _request(path, req, read_frames=False, send=b"", shut=False, timeout=20):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    from berth.engine.monclient import short_path

    with short_path(path) as p:
        s.connect(p)
    s.sendall((json.dumps(req) + "\n").encode() + send)
    if shut:
        s.shutdown(socket.SHUT_WR)
    return s


def _read_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        b = s.recv(1)
        if not b:
            break
        buf += b
    return json.loads(buf)


def _read_frames(s):
    out = {1: b"", 2: b""}
    exit_info = None
    buf = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        buf += b
    while buf:
        stream, n = struct.unpack(">BxxxI", buf[:8])
        payload, buf = buf[8:8 + n], buf[8 + n:]
        if stream == 4:
            exit_info = json.loads(payload)
        else:
            out[stream] = out.get(stream, b"") + payload
    return out, exit_info


@pytest.fixture
def job_env(tmp_path):
    rt_root = tmp_path / "rt"
    state = tmp_path / "state"
    state.mkdir()
    cid = "berth-mon-" + uuid.uuid4().hex[:8]
    yield rt_root, state, cid
    for rt in RUNTIMES:
        subprocess.run([rt, "--root", str(rt_root), "delete", "--force", cid], capture_output=True)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_attach_start_wait_and_log(tmp_path, job_env, runtime):
    rt_root, state, cid = job_env
    bundle = _bundle(tmp_path, ["sh", "-c", "echo out; echo err >&2; read x; echo got $x; exit 3"])
    job = Job(id=cid, bundle=bundle, state_dir=str(state), runtime=runtime, runtime_root=str(rt_root),
              open_stdin=True, stdin_once=True, log_path=str(state / "log.json"))
    report = spawn(job)
    assert report["ok"], report
    sock = str(state / "monitor.sock")
    att = _request(sock, {"op": "attach", "stdin": True, "stdout": True, "stderr": True},
                   send=b"hello\n", shut=True)
    assert _read_line(att) == {"ok": True}
    waiter = _request(sock, {"op": "wait"})
    st = _request(sock, {"op": "start"})
    assert _read_line(st)["ok"]
    out, exit_info = _read_frames(att)
    assert out[1] == b"out\ngot hello\n"
    assert out[2] == b"err\n"
    assert exit_info["StatusCode"] == 3
    w = _read_line(waiter)
    assert w["exit_code"] == 3
    rec = json.loads((state / "exit.json").read_text())
    assert rec["exit_code"] == 3 and rec["finished_at"] > 0
    logs = jsonlog.read_records(str(state / "log.json"))
    assert [(r.stream, r.data) for r in logs] == [("stdout", b"out\n"), ("stderr", b"err\n"),
                                                  ("stdout", b"got hello\n")] or \
        sorted((r.stream, r.data) for r in logs) == [("stderr", b"err\n"), ("stdout", b"got hello\n"),
                                                     ("stdout", b"out\n")]
    # the monitor exits by itself once the container is gone and clients are served
    mon = json.loads((state / "monitor.json").read_text())
    for _ in range(100):
        if not os.path.exists(f"/proc/{mon['pid']}"):
            break
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{mon['pid']}")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_exec_and_monitor_survives_without_clients(tmp_path, job_env, runtime):
    rt_root, state, cid = job_env
    bundle = _bundle(tmp_path, ["sleep", "30"])
    job = Job(id=cid, bundle=bundle, state_dir=str(state), runtime=runtime, runtime_root=str(rt_root),
              log_path=str(state / "log.json"))
    assert spawn(job)["ok"]
    sock = str(state / "monitor.sock")
    assert _read_line(_request(sock, {"op": "start"}))["ok"]
    proc = {"args": ["sh", "-c", "echo in-exec; exit 7"], "cwd": "/", "env": ["PATH=/bin"],
            "user": {"uid": 0, "gid": 0}}
    ex = _request(sock, {"op": "exec", "id": "e1", "process": proc})
    assert _read_line(ex)["ok"]
    out, info = _read_frames(ex)
    assert out[1] == b"in-exec\n" and info == {"ExitCode": 7}
    assert _read_line(_request(sock, {"op": "state"}))["status"] == "running"
    init_pid = int((state / "init.pid").read_text())
    os.kill(init_pid, 9)
    w = _read_line(_request(sock, {"op": "wait"}))
    assert w["exit_code"] == 137


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_fork_server_starts_detached_monitors(tmp_path, job_env, runtime):
    from dataclasses import asdict

    from berth.engine.forkserver import ForkServerClient

    rt_root, state, cid = job_env
    bundle = _bundle(tmp_path, ["sh", "-c", "echo via-forkserver"])
    job = Job(id=cid, bundle=bundle, state_dir=str(state), runtime=runtime, runtime_root=str(rt_root),
              log_path=str(state / "log.json"))
    fs = ForkServerClient()
    try:
        report = fs.spawn_sync(asdict(job))
        assert report["ok"], report
        server_pid = fs._proc.pid
    finally:
        fs.close()
    # the monitor outlives the fork server and is not its child
    mon = json.loads((state / "monitor.json").read_text())
    assert mon["pid"] != server_pid and os.path.exists(f"/proc/{mon['pid']}")
    sock = str(state / "monitor.sock")
    att = _request(sock, {"op": "attach", "stdout": True, "stderr": True})
    assert _read_line(att)["ok"]
    assert _read_line(_request(sock, {"op": "start"}))["ok"]
    out, info = _read_frames(att)
    assert out[1] == b"via-forkserver\n" and info["StatusCode"] == 0
