"""Wire-level tests of the API server over raw unix sockets (fake engine)."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from berth.api.streams import StdcopyDecoder
from tests.unit.fake_engine import FakeEngine, ServerThread


@pytest.fixture
def srv(tmp_path):
    with ServerThread(FakeEngine(), str(tmp_path / "api.sock"), header_timeout=2.0) as s:
        yield s


def connect(srv) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(srv.path)
    return s


def read_head(s: socket.socket) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def recv_all(s: socket.socket) -> bytes:
    out = b""
    while d := s.recv(65536):
        out += d
    return out


def request(srv, raw: bytes) -> tuple[int, dict, bytes]:
    with connect(srv) as s:
        s.sendall(raw)
        data = recv_all(s) if b"Connection: close" in raw else None
        if data is None:
            head, rest = read_head(s)
            data = head + b"\r\n\r\n" + rest
            hdrs = _headers(head)
            n = int(hdrs.get("content-length", "0"))
            while len(rest) < n:
                rest += s.recv(65536)
            data = head + b"\r\n\r\n" + rest
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, _headers(head), body


def _headers(head: bytes) -> dict:
    out = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.decode().partition(":")
        out[k.strip().lower()] = v.strip()
    return out


def test_ping_head_and_get(srv):
    st, h, body = request(srv, b"HEAD /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert st == 200 and body == b""
    assert h["api-version"] == "1.44" and h["ostype"] == "linux" and h["docker-experimental"] == "false"
    assert h["content-length"] == "0" and h["content-type"] == "text/plain; charset=utf-8"
    assert h["server"].startswith("Docker/") and h["server"].endswith("(linux)")
    assert h["cache-control"] == "no-cache, no-store, must-revalidate" and h["pragma"] == "no-cache"
    st, h, body = request(srv, b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (st, body) == (200, b"OK")


def test_versions_and_unversioned_paths(srv):
    for path in (b"/version", b"/v1.44/version", b"/v1.24/version", b"/v1.30/version"):
        st, h, body = request(srv, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert st == 200 and json.loads(body)["ApiVersion"] == "1.44"
    st, h, body = request(srv, b"GET /v1.99/version HTTP/1.1\r\nHost: x\r\n\r\n")
    assert st == 400 and h["content-type"] == "application/json"
    assert json.loads(body)["message"] == (
        "client version 1.99 is too new. Maximum supported API version is 1.44")
    st, _, body = request(srv, b"GET /v1.12/version HTTP/1.1\r\nHost: x\r\n\r\n")
    assert st == 400 and json.loads(body)["message"].startswith(
        "client version 1.12 is too old. Minimum supported API version is 1.24")
    st, h, body = request(srv, b"GET /v1.44/nope HTTP/1.1\r\nHost: x\r\n\r\n")
    assert st == 404 and json.loads(body) == {"message": "page not found"}
    assert h["content-type"] == "application/json"


def test_keepalive_serves_several_requests(srv):
    with connect(srv) as s:
        for _ in range(3):
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
            head, rest = read_head(s)
            while len(rest) < 2:
                rest += s.recv(10)
            assert head.startswith(b"HTTP/1.1 200") and rest == b"OK"


def test_malformed_requests_get_4xx_and_server_survives(srv):
    st, _, body = request(srv, b"THIS IS NOT HTTP\r\n\r\n")
    assert 400 <= st < 500
    big = b"GET /_ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (600 * 1024) + b"\r\n\r\n"
    with connect(srv) as s:
        try:
            s.sendall(big)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = recv_all(s)
    assert data.startswith(b"HTTP/1.1 431") or data.startswith(b"HTTP/1.1 400")
    # bad JSON, wrong JSON type
    body = b"{not json"
    st, _, resp = request(srv, b"POST /containers/create HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert st == 400 and "invalid JSON" in json.loads(resp)["message"]
    body = b"[1,2]"
    st, _, resp = request(srv, b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                          % (len(body), body))
    assert st == 400
    st, _, _ = request(srv, b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert st == 200


def test_oversized_body_is_413(srv):
    n = 5 * 1024 * 1024
    with connect(srv) as s:
        s.sendall(b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % n)
        head, rest = read_head(s)
    assert head.startswith(b"HTTP/1.1 413")
    # chunked oversize: no Content-Length, the cap applies while reading
    with connect(srv) as s:
        s.sendall(b"POST /containers/create HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        try:
            for _ in range(80):
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass
        head, _ = read_head(s)
    assert head.startswith(b"HTTP/1.1 413")


def test_chunked_request_body_is_decoded(srv):
    body = json.dumps({"Image": "busybox", "Cmd": ["echo", "hi"]}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7]) for i in range(0, len(body), 7))
    st, _, resp = request(srv, b"POST /v1.44/containers/create?name=chunky HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                          + chunks + b"0\r\n\r\n")
    assert st == 201 and len(json.loads(resp)["Id"]) == 64
    assert any(c.name == "chunky" for c in srv.engine.containers.values())


def test_wait_sends_headers_before_the_body(srv):
    cid = srv.engine.create_container("w1", {"Image": "busybox", "Cmd": ["sleep", "0.5"]})["Id"]
    with connect(srv) as s:
        s.sendall(b"POST /v1.44/containers/w1/wait?condition=next-exit HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 0\r\n\r\n")
        head, rest = read_head(s)  # must arrive before the container even starts
        assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
        assert rest == b""
        srv.call(srv.engine.start(cid))
        data = rest
        while not data.endswith(b"0\r\n\r\n"):
            data += s.recv(4096)
    payload = data.split(b"\r\n")[1]
    assert json.loads(payload) == {"StatusCode": 0, "Error": None}
    st, _, body = request(srv, b"POST /containers/w1/wait?condition=bogus HTTP/1.1\r\nHost: x\r\n\r\n")
    assert st == 400 and json.loads(body)["message"] == 'invalid condition: "bogus"'


def test_wait_client_going_away_is_harmless(srv):
    srv.engine.create_container("w2", {"Image": "busybox", "Cmd": ["sleep", "0.2"]})
    s = connect(srv)
    s.sendall(b"POST /containers/w2/wait?condition=next-exit HTTP/1.1\r\nHost: x\r\n\r\n")
    read_head(s)
    s.close()
    time.sleep(0.1)
    c = srv.engine._get("w2")
    assert all(f.cancelled() or f.done() for f in c.exit_waiters)
    assert request(srv, b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200


def test_attach_hijack_multiplexed_and_half_close(srv):
    cid = srv.engine.create_container("cat1", {"Image": "busybox", "Cmd": ["cat"], "OpenStdin": True,
                                                "StdinOnce": True})["Id"]
    with connect(srv) as s:
        s.sendall(b"POST /v1.44/containers/cat1/attach?stderr=1&stdin=1&stdout=1&stream=1 HTTP/1.1\r\n"
                  b"Host: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n"
                  b"Content-Type: text/plain\r\n\r\n")
        head, rest = read_head(s)
        assert head + b"\r\n\r\n" == (b"HTTP/1.1 101 UPGRADED\r\n"
                                       b"Content-Type: application/vnd.docker.multiplexed-stream\r\n"
                                       b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        s.sendall(b"hello before start\n")  # buffered until the process reads it
        srv.call(srv.engine.start(cid))
        s.shutdown(socket.SHUT_WR)  # half-close: output must keep coming
        out = rest + recv_all(s)
    frames = StdcopyDecoder().feed(out)
    assert frames == [(1, b"hello before start\n")]
    assert srv.engine._get(cid).status == "exited"


def test_attach_with_tty_is_raw_and_legacy_without_upgrade(srv):
    srv.engine.create_container("t1", {"Image": "busybox", "Cmd": ["echo", "raw"], "Tty": True})
    with connect(srv) as s:
        s.sendall(b"POST /containers/t1/attach?stdout=1&stream=1 HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        head, rest = read_head(s)
        assert b"Content-Type: application/vnd.docker.raw-stream" in head
        srv.call(srv.engine.start("t1"))
        assert rest + recv_all(s) == b"raw\n"
    srv.engine.create_container("l1", {"Image": "busybox", "Cmd": ["echo", "legacy"]})
    with connect(srv) as s:
        s.sendall(b"POST /v1.30/containers/l1/attach?stdout=1&stream=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        head, rest = read_head(s)
        assert head == b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream"
        srv.call(srv.engine.start("l1"))
        assert StdcopyDecoder().feed(rest + recv_all(s)) == [(1, b"legacy\n")]
    # before 1.42 an upgraded non-tty stream is labelled raw (but still framed)
    srv.engine.create_container("o1", {"Image": "busybox", "Cmd": ["echo", "x"]})
    with connect(srv) as s:
        s.sendall(b"POST /v1.41/containers/o1/attach?stdout=1&stream=1 HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        head, _ = read_head(s)
        assert b"raw-stream" in head


def test_attach_detach_keys_end_the_session(srv):
    srv.engine.create_container("d1", {"Image": "busybox", "Cmd": ["sleep", "5"], "OpenStdin": True})
    srv.call(srv.engine.start("d1"))
    with connect(srv) as s:
        s.sendall(b"POST /containers/d1/attach?stdin=1&stdout=1&stream=1&detachKeys=ctrl-x HTTP/1.1\r\n"
                  b"Host: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        read_head(s)
        s.sendall(b"abc\x18")
        assert recv_all(s) == b""  # server closed the session
    assert srv.engine._get("d1").status == "running"
    srv.call(srv.engine.kill("d1"))


def test_logs_stream_is_chunked_and_framed(srv):
    cid = srv.engine.create_container("lg", {"Image": "busybox", "Cmd": ["lines", "3"]})["Id"]
    srv.call(srv.engine.start(cid))
    time.sleep(0.1)
    st, h, body = request(srv, b"GET /containers/lg/logs?stdout=1&stderr=1&tail=2 HTTP/1.1\r\nHost: x\r\n"
                          b"Connection: close\r\n\r\n")
    assert st == 200 and h["transfer-encoding"] == "chunked"
    raw = _dechunk(body)
    assert StdcopyDecoder().feed(raw) == [(1, b"line 1\n"), (1, b"line 2\n")]
    st, _, body = request(srv, b"GET /containers/lg/logs HTTP/1.1\r\nHost: x\r\n\r\n")
    assert st == 400
    st, _, body = request(srv, b"GET /containers/lg/logs?stdout=1&since=yesterday HTTP/1.1\r\n"
                          b"Host: x\r\n\r\n")
    assert st == 400 and "invalid since" in json.loads(body)["message"]


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size, _, body = body.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        out += body[:n]
        body = body[n + 2:]
    return out


def test_events_stream_flushes_each_message(srv):
    with connect(srv) as s:
        s.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        head, rest = read_head(s)
        assert head.startswith(b"HTTP/1.1 200")
        srv.call(_create_async(srv.engine, "ev1"))
        data = rest
        while b"\r\n" not in data.partition(b"\r\n")[2]:
            data += s.recv(4096)
        msg = data.split(b"\r\n")[1]
        assert json.loads(msg)["Action"] == "create"
    time.sleep(0.1)
    assert srv.engine.event_subs == []  # subscriber gone with the client


async def _create_async(engine, name):
    return engine.create_container(name, {"Image": "busybox"})


def test_errors_map_to_status(srv):
    st, h, body = request(srv, b"GET /containers/nope/json HTTP/1.1\r\nHost: x\r\n\r\n")
    assert st == 404 and json.loads(body) == {"message": "No such container: nope"}
    assert h["content-type"] == "application/json"
    srv.engine.create_container("r1", {"Image": "busybox", "Cmd": ["sleep", "5"]})
    srv.call(srv.engine.start("r1"))
    st, _, body = request(srv, b"POST /containers/r1/start HTTP/1.1\r\nHost: x\r\n\r\n")
    assert st == 304 and body == b""
    st, _, body = request(srv, b"DELETE /containers/r1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert st == 409 and "container is running" in json.loads(body)["message"]
    st, _, body = request(srv, b"DELETE /containers/r1?force=True HTTP/1.1\r\nHost: x\r\n\r\n")
    assert st == 204


def test_handler_exception_is_500_not_a_crash(srv):
    def boom(*a, **k):
        raise RuntimeError("kaboom")
    srv.engine.info = boom
    st, _, body = request(srv, b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")
    assert st == 500 and json.loads(body) == {"message": "kaboom"}
    assert request(srv, b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200


def test_greedy_image_names_and_url_decoding(srv):
    srv.engine.images[0]["RepoTags"].append("localhost:5000/a/b:tag")
    st, _, body = request(srv, b"GET /v1.44/images/localhost:5000/a/b:tag/json HTTP/1.1\r\nHost: x\r\n\r\n")
    assert st == 200 and json.loads(body)["Id"].startswith("sha256:")
    st, _, body = request(srv, b"GET /images/localhost%3A5000%2Fa%2Fb%3Atag/json HTTP/1.1\r\nHost: x\r\n\r\n")
    assert st == 200
    st, _, body = request(srv, b"GET /images/nothere/json HTTP/1.1\r\nHost: x\r\n\r\n")
    assert st == 404 and json.loads(body)["message"] == "No such image: nothere:latest"


def test_streamed_upload_and_slow_client_timeout(srv):
    data = os.urandom(3 * 1024 * 1024)
    with connect(srv) as s:
        s.sendall(b"POST /images/load?quiet=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(data), 100000):
            part = data[i:i + 100000]
            s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        s.sendall(b"0\r\n\r\n")
        head, rest = read_head(s)
        while not rest.endswith(b"0\r\n\r\n"):
            rest += s.recv(4096)
    msg = json.loads(_dechunk(rest))
    assert msg["stream"] == f"Loaded image: busybox:latest ({len(data)} bytes)\n"
    # slowloris: a partial header is dropped after header_timeout (2 s in this fixture)
    with connect(srv) as s:
        s.sendall(b"GET /_ping HTTP/1.1\r\n")
        t0 = time.monotonic()
        s.settimeout(10)
        assert s.recv(100) == b""
        assert time.monotonic() - t0 < 5


def test_unix_socket_mode_and_stale_socket(tmp_path):
    path = str(tmp_path / "s.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    with ServerThread(FakeEngine(), path) as srv:
        assert os.stat(path).st_mode & 0o777 == 0o660
        assert request(srv, b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200
    open(path, "w").close()
    from berth.errors import InvalidArgument
    with pytest.raises(InvalidArgument):
        with ServerThread(FakeEngine(), path):
            pass


def test_keepalive_after_a_streamed_reply_and_100_continue(srv):
    srv.engine.create_container("ka", {"Image": "busybox", "Cmd": ["echo", "x"]})
    srv.call(srv.engine.start("ka"))
    time.sleep(0.05)
    with connect(srv) as s:
        s.sendall(b"GET /containers/ka/logs?stdout=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        head, rest = read_head(s)
        while not rest.endswith(b"0\r\n\r\n"):
            rest += s.recv(4096)
        assert StdcopyDecoder().feed(_dechunk(rest)) == [(1, b"x\n")]
        body = b'{"Image": "busybox"}'
        s.sendall(b"POST /containers/create HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        head, rest = read_head(s)
        assert head.startswith(b"HTTP/1.1 100")
        s.sendall(body)
        head, rest = read_head(s) if not rest else (rest.partition(b"\r\n\r\n")[0], b"")
        assert head.startswith(b"HTTP/1.1 201")


def test_client_leaving_mid_attach_is_harmless(srv):
    srv.engine.create_container("cut", {"Image": "busybox", "Cmd": ["lines", "1"], "OpenStdin": True})
    s = connect(srv)
    s.sendall(b"POST /containers/cut/attach?stdin=1&stdout=1&stream=1 HTTP/1.1\r\nHost: x\r\n"
              b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
    read_head(s)
    s.close()
    srv.call(srv.engine.start("cut"))
    time.sleep(0.1)
    assert srv.engine._get("cut").subscribers == []
    assert request(srv, b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200
