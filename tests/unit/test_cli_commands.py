"""berth CLI commands against the API server with the fake engine; start-up time of `berth version`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from berth.cli.main import main
from tests.unit.fake_engine import FakeEngine, ServerThread

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def srv(tmp_path, monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    with ServerThread(FakeEngine(), str(tmp_path / "api.sock")) as s:
        monkeypatch.setenv("BERTH_HOST", s.url)
        yield s


def berth(capsys, *args):
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def start(srv, name, cmd, **cfg):
    cid = srv.engine.create_container(name, {"Image": "busybox", "Cmd": cmd, **cfg})["Id"]
    srv.call(srv.engine.start(cid))
    return cid


def test_version_and_info(srv, capsys):
    rc, out, err = berth(capsys, "version")
    assert rc == 0 and out.startswith("Client:\n Version:           0.1.0\n")
    assert "Server:\n Engine:\n  Version:          0.1.0\n" in out
    assert "  API version:      1.44 (minimum version 1.24)" in out
    rc, out, _ = berth(capsys, "version", "--format", "{{.Client.APIVersion}}/{{.Server.Os}}")
    assert out == "1.44/linux\n"
    rc, out, _ = berth(capsys, "info")
    assert rc == 0 and " Server Version: 0.1.0" in out and " Swarm: inactive" in out
    rc, out, _ = berth(capsys, "info", "--format", "{{.Name}}")
    assert out == "fakehost\n"


def test_ps_table_filters_quiet_format(srv, capsys):
    a = start(srv, "web", ["sleep", "5"], Labels={"tier": "front"}, ExposedPorts={"80/tcp": {}})
    b = srv.engine.create_container("db", {"Image": "busybox",
                                           "Cmd": ["echo", "a long command line here"]})["Id"]
    rc, out, _ = berth(capsys, "ps")
    lines = out.splitlines()
    assert lines[0].startswith("CONTAINER ID   IMAGE     COMMAND     CREATED                  STATUS")
    assert lines[0].rstrip().endswith("PORTS                  NAMES")
    assert len(lines) == 2 and lines[1].startswith(a[:12] + "   busybox   \"sleep 5\"")
    assert "0.0.0.0:8080->80/tcp" in lines[1] and lines[1].endswith("web")
    rc, out, _ = berth(capsys, "ps", "-aq")
    assert out.split() == [b[:12], a[:12]]
    rc, out, _ = berth(capsys, "ps", "-a", "--no-trunc", "-q", "--filter", "label=tier=front")
    assert out.split() == [a]
    rc, out, _ = berth(capsys, "ps", "-a", "--format", "{{.Names}}:{{.Command}}:{{.State}}")
    assert out.splitlines() == ['db:"echo a long command…":created', 'web:"sleep 5":running']
    rc, out, _ = berth(capsys, "ps", "-a", "--format", "json", "-f", "name=web")
    assert json.loads(out)["Names"] == "web" and json.loads(out)["Status"] == "Up 2 seconds"
    rc, out, err = berth(capsys, "ps", "--bogus")
    assert rc == 125 and "unknown flag: --bogus" in err
    rc, out, err = berth(capsys, "ps", "-a", "-f", "novalue")
    assert rc == 125


def test_images(srv, capsys):
    rc, out, _ = berth(capsys, "images")
    lines = out.splitlines()
    assert lines[0].startswith("REPOSITORY   TAG       IMAGE ID       CREATED   ")
    assert lines[0].endswith("   SIZE")
    assert lines[1].split()[:3] == ["busybox", "latest", srv.engine.images[0]["Id"][7:19]]
    assert lines[1].endswith("4.26MB")
    rc, out, _ = berth(capsys, "images", "-q")
    assert out.strip() == srv.engine.images[0]["Id"][7:19]
    rc, out, _ = berth(capsys, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "busybox")
    assert out == "busybox:latest\n"


def test_inspect(srv, capsys):
    cid = start(srv, "insp", ["sleep", "5"])
    rc, out, _ = berth(capsys, "inspect", "insp")
    assert rc == 0 and json.loads(out)[0]["Id"] == cid and out.startswith("[\n    {\n")
    rc, out, _ = berth(capsys, "inspect", "-f", "{{.State.Status}} {{.Name}}", "insp", "busybox")
    assert out.splitlines() == ["running /insp", "<no value> <no value>"]
    rc, out, _ = berth(capsys, "inspect", "--type", "image", "-f", "{{.Os}}", "busybox")
    assert out == "linux\n"
    rc, out, err = berth(capsys, "inspect", "nothing")
    assert rc == 1 and err.strip() == "Error: No such object: nothing" and out.strip() == "[]"


def test_rm_stop_kill_wait_logs(srv, capsys):
    start(srv, "k1", ["sleep", "5"])
    start(srv, "s1", ["sleep", "5"])
    start(srv, "l1", ["lines", "3"])
    srv.engine.create_container("e1", {"Image": "busybox", "Cmd": ["err", "oops"]})
    srv.call(srv.engine.start("e1"))
    time.sleep(0.1)
    rc, out, err = berth(capsys, "rm", "k1")
    assert rc == 1 and "container is running" in err
    rc, out, _ = berth(capsys, "kill", "k1")
    assert (rc, out) == (0, "k1\n")
    rc, out, err = berth(capsys, "kill", "k1")
    assert rc == 1 and "is not running" in err
    rc, out, _ = berth(capsys, "stop", "-t", "1", "s1")
    assert (rc, out) == (0, "s1\n")
    rc, out, _ = berth(capsys, "stop", "s1")  # already stopped: 304 counts as success
    assert (rc, out) == (0, "s1\n")
    rc, out, _ = berth(capsys, "wait", "s1", "l1")
    assert out.split() == ["137", "0"]
    rc, out, err = berth(capsys, "logs", "--tail", "2", "l1")
    assert out == "line 1\nline 2\n"
    rc, out, err = berth(capsys, "logs", "e1")
    assert (out, err) == ("", "oops\n")
    rc, out, err = berth(capsys, "rm", "-f", "k1", "gone")
    assert rc == 0 and out == "k1\n" and "No such container: gone" in err
    rc, out, err = berth(capsys, "rm", "gone")
    assert rc == 1 and err.strip() == "Error response from daemon: No such container: gone"
    rc, out, err = berth(capsys, "rm")
    assert rc == 1 and '"berth rm" requires at least 1 argument.' in err
    rc, out, err = berth(capsys, "frobnicate")
    assert rc == 1 and "'frobnicate' is not a berth command" in err


def test_version_without_daemon_is_fast(tmp_path):
    """`berth version` prints the client block, then the connection error, exit 1, well under 100 ms."""
    site = [p for p in sys.path if p.endswith("site-packages")]
    code = (f"import sys; sys.path[:0] = [{ROOT!r}]; sys.path += {site!r}; "
            "from berth.cli.main import main; sys.exit(main())")
    env = {"PATH": "/usr/bin:/bin", "BERTH_HOST": f"unix://{tmp_path}/nodaemon.sock"}
    cmd = [sys.executable, "-I", "-S", "-c", code, "version"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert p.stdout.startswith("Client:\n Version:") and "Server:" not in p.stdout
    assert "Cannot connect to the berth daemon" in p.stderr
    best = min(_timed(cmd, env) for _ in range(5))
    baseline = min(_timed([sys.executable, "-I", "-S", "-c", "pass"], env) for _ in range(5))
    assert best - baseline < 0.1, (best, baseline)


def _timed(cmd, env) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, capture_output=True, timeout=30)
    return time.perf_counter() - t0


@pytest.mark.skipif(not os.path.exists("/usr/bin/openssl"), reason="openssl not installed")
def test_cli_over_mutual_tls(tmp_path, capsys, monkeypatch):
    from berth.api.server import tls_context
    from tests.unit.fake_engine import make_test_certs
    for k in ("BERTH_HOST", "DOCKER_HOST", "BERTH_TLS_VERIFY", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(k, raising=False)
    d = make_test_certs(str(tmp_path))
    with ServerThread(FakeEngine(), str(tmp_path / "s.sock")) as srv:
        ctx = tls_context(f"{d}/server.pem", f"{d}/server-key.pem", f"{d}/ca.pem", verify=True)
        port = srv.call(srv.server.listen_tcp("127.0.0.1", 0, ctx))
        host = f"tcp://127.0.0.1:{port}"
        rc, out, err = berth(capsys, "-H", host, "--tlsverify", "--tlscacert", f"{d}/ca.pem",
                             "--tlscert", f"{d}/client.pem", "--tlskey", f"{d}/client-key.pem",
                             "version", "-f", "{{.Server.ApiVersion}}")
        assert (rc, out) == (0, "1.44\n"), err
        # the same through the environment: BERTH_CERT_PATH holds ca.pem, cert.pem, key.pem
        for src, dst in (("client.pem", "cert.pem"), ("client-key.pem", "key.pem")):
            os.link(f"{d}/{src}", f"{d}/{dst}")
        monkeypatch.setenv("BERTH_TLS_VERIFY", "1")
        monkeypatch.setenv("BERTH_CERT_PATH", d)
        rc, out, err = berth(capsys, "-H", host, "info", "-f", "{{.OSType}}")
        assert (rc, out) == (0, "linux\n"), err
        monkeypatch.delenv("BERTH_TLS_VERIFY")
        rc, out, err = berth(capsys, "-H", host, "info")
        assert rc == 1 and "closed the connection" in err  # plain HTTP to a TLS port


def test_help_version_flag_and_follow(srv, capsys):
    rc, out, _ = berth(capsys, "--help")
    assert rc == 0 and "Usage:  berth [OPTIONS] COMMAND" in out and "-H, --host list" in out
    rc, out, _ = berth(capsys, "ps", "--help")
    assert rc == 0 and "Usage:  berth ps [OPTIONS]" in out and "-q, --quiet" in out
    rc, out, _ = berth(capsys, "-v")
    assert out == "berth version 0.1.0\n"
    rc, out, err = berth(capsys, "-H", "ftp://x", "ps")
    assert rc == 1 and err.startswith("invalid host 'ftp://x'")
    cid = start(srv, "fol", ["sleep", "0.3"])
    srv.call(_emit_later(srv.engine, cid))
    t0 = time.monotonic()
    rc, out, _ = berth(capsys, "logs", "-f", "fol")
    assert rc == 0 and out == "later\n" and time.monotonic() - t0 < 5  # returns when the container exits
    rc, out, _ = berth(capsys, "ps", "-n", "1", "--format", "{{.Names}}")
    assert out == "fol\n"


async def _emit_later(engine, cid):
    import asyncio

    async def later():
        await asyncio.sleep(0.1)
        engine._emit(engine._get(cid), 1, b"later\n")
    asyncio.get_running_loop().create_task(later())
