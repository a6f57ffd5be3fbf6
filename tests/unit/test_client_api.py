"""berth.client against the real API server with the fake engine (unix socket and mutual TLS)."""

from __future__ import annotations

import shutil
import threading

import pytest

from berth.client.api import Client
from berth.client.transport import ConnectionFailed, TLSConfig, parse_host, resolve_host, tls_from_env
from berth.errors import Conflict, InvalidArgument, NotFound
from tests.unit.fake_engine import FakeEngine, ServerThread, make_test_certs


@pytest.fixture
def srv(tmp_path):
    with ServerThread(FakeEngine(), str(tmp_path / "api.sock")) as s:
        yield s


def test_host_resolution():
    assert resolve_host(None, {}) == "unix:///run/berth/berth.sock"
    assert resolve_host(None, {"DOCKER_HOST": "unix:///d"}) == "unix:///d"
    assert resolve_host(None, {"DOCKER_HOST": "unix:///d", "BERTH_HOST": "unix:///b"}) == "unix:///b"
    assert resolve_host("tcp://h:1", {"BERTH_HOST": "unix:///b"}) == "tcp://h:1"
    assert parse_host("unix:///x/y.sock") == ("unix", "/x/y.sock")
    assert parse_host("tcp://10.0.0.1:2376") == ("tcp", ("10.0.0.1", 2376))
    assert parse_host("tcp://[::1]:5") == ("tcp", ("::1", 5))
    for bad in ("ssh://x", "unix://", "tcp://h:port"):
        with pytest.raises(InvalidArgument):
            parse_host(bad)
    assert tls_from_env({}) is None
    cfg = tls_from_env({"BERTH_TLS_VERIFY": "1", "BERTH_CERT_PATH": "/c"})
    assert cfg == TLSConfig(True, "/c/ca.pem", "/c/cert.pem", "/c/key.pem")


def test_no_daemon_is_connection_failed(tmp_path):
    c = Client("unix://" + str(tmp_path / "none.sock"))
    with pytest.raises(ConnectionFailed, match="Cannot connect to the berth daemon"):
        c.ping()


def test_containers_lifecycle(srv):
    c = Client(srv.url)
    hs = c.ping()
    assert hs["api-version"] == "1.44"
    assert c.version()["Os"] == "linux" and c.info()["Name"] == "fakehost"
    cfg = {"Image": "busybox", "Cmd": ["lines", "3"], "Labels": {"x": "1"}}
    cid = c.containers.create(cfg, name="cl1")["Id"]
    with pytest.raises(Conflict, match="already in use"):
        c.containers.create({"Image": "busybox"}, name="cl1")
    with pytest.raises(NotFound, match="No such image"):
        c.containers.create({"Image": "nope"})
    assert c.containers.start("cl1") is True
    assert c.containers.wait("cl1") == {"StatusCode": 0, "Error": None}
    assert list(c.containers.logs("cl1", tail=2)) == [(1, b"line 1\n"), (1, b"line 2\n")]
    assert [x["Id"] for x in c.containers.list(all=True, filters={"label": ["x=1"]})] == [cid]
    assert c.containers.list() == []
    assert c.containers.inspect(cid[:10])["Name"] == "/cl1"
    c.containers.remove("cl1")
    with pytest.raises(NotFound, match="No such container: cl1"):
        c.containers.inspect("cl1")


def test_attach_and_exec_hijack(srv):
    c = Client(srv.url)
    c.containers.create({"Image": "busybox", "Cmd": ["cat"], "OpenStdin": True, "StdinOnce": True}, name="a1")
    from berth.client.streams import demux
    with c.containers.attach("a1", stdin=True) as sock:
        assert sock.content_type == "application/vnd.docker.multiplexed-stream"
        sock.send(b"via attach\n")
        c.containers.start("a1")
        sock.close_write()
        assert list(demux(sock)) == [(1, b"via attach\n")]
    c.containers.create({"Image": "busybox", "Cmd": ["sleep", "5"]}, name="a2")
    c.containers.start("a2")
    eid = c.exec.create("a2", ["echo", "exec", "out"])
    with c.exec.start(eid) as sock:
        assert list(demux(sock)) == [(1, b"exec out\n")]
    assert c.exec.inspect(eid)["ExitCode"] == 0
    eid = c.exec.create("a2", ["exit", "7"])
    assert c.exec.start(eid, detach=True) is None
    assert c.exec.inspect(eid)["ExitCode"] == 7
    with pytest.raises(NotFound, match="No such exec instance"):
        c.exec.inspect("nope")
    c.containers.kill("a2")
    with pytest.raises(Conflict, match="is not running"):
        c.exec.create("a2", ["echo"])


def test_images_and_streams(srv):
    c = Client(srv.url)
    assert [i["RepoTags"] for i in c.images.list()] == [["busybox:latest"]]
    c.images.tag("busybox", "docker.io/library/myrepo", "v1")
    assert c.images.inspect("myrepo:v1")["Id"].startswith("sha256:")
    assert c.images.remove("myrepo:v1") == [{"Untagged": "myrepo:v1"}]
    msgs = list(c.images.pull("docker.io/library/busybox", "latest"))
    assert msgs[-1]["status"].startswith("Status: Image is up to date")
    from berth.errors import BerthError
    with pytest.raises(BerthError, match="pull access denied"):
        list(c.images.pull("missing", "latest"))
    out = list(c.images.load(iter([b"a" * 70000, b"b" * 30000])))
    assert out == [{"stream": "Loaded image: busybox:latest (100000 bytes)\n"}]
    assert b"".join(c.images.save(["busybox"])) == b"".join(bytes([i]) * 1024 for i in range(4))
    with pytest.raises(NotFound):
        list(c.images.save(["nothing"]))


def test_events_stream(srv):
    c = Client(srv.url)
    got = []

    def reader():
        for ev in c.events(filters={"type": ["container"]}):
            got.append(ev)
            if len(got) == 2:
                return

    t = threading.Thread(target=reader)
    t.start()
    import time
    time.sleep(0.2)
    srv.call(_create(srv.engine, "e1"))
    srv.call(_create(srv.engine, "e2"))
    t.join(5)
    assert [e["Actor"]["Attributes"]["name"] for e in got] == ["e1", "e2"]


async def _create(engine, name):
    return engine.create_container(name, {"Image": "busybox"})


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed")
def test_mutual_tls_over_tcp(tmp_path):
    d = make_test_certs(str(tmp_path))
    from berth.api.server import tls_context
    with ServerThread(FakeEngine(), str(tmp_path / "s.sock")) as srv:
        ctx = tls_context(f"{d}/server.pem", f"{d}/server-key.pem", f"{d}/ca.pem", verify=True)
        port = srv.call(srv.server.listen_tcp("127.0.0.1", 0, ctx))
        good = Client(f"tcp://127.0.0.1:{port}", TLSConfig(True, f"{d}/ca.pem", f"{d}/client.pem",
                                                           f"{d}/client-key.pem"))
        assert good.version()["ApiVersion"] == "1.44"
        no_cert = Client(f"tcp://127.0.0.1:{port}", TLSConfig(True, f"{d}/ca.pem"))
        with pytest.raises(ConnectionFailed):
            no_cert.version()
        plain = Client(f"tcp://127.0.0.1:{port}")
        with pytest.raises(ConnectionFailed):
            plain.version()
        with pytest.raises(InvalidArgument, match="without TLS"):
            srv.call(srv.server.listen_tcp("127.0.0.1", 0))
        insecure = srv.call(srv.server.listen_tcp("127.0.0.1", 0, insecure=True))
        assert Client(f"tcp://127.0.0.1:{insecure}").ping()["ostype"] == "linux"

