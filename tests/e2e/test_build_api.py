"""Builds through berthd: docker-py ``images.build``, ``DOCKER_BUILDKIT=0 docker build``, ``berth build``;
``system df``, ``builder prune``, ``/auth`` against a local registry stand-in."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.e2e.daemon_fixture import ROOT, Daemon
from tests.helpers import mounts_under

pytestmark = pytest.mark.root
docker = pytest.importorskip("docker")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    base = tmp_path_factory.mktemp("berthd-build")
    d = Daemon(str(base))
    d.start()
    _bootstrap(d)
    yield d
    d.cleanup()
    assert mounts_under(str(base)) == []


def _bootstrap(d: Daemon) -> None:
    r = _raw(d, "POST", "/berth/images/bootstrap?name=busybox")
    assert r[0] == 200, r


def _raw(d: Daemon, method: str, path: str, body: bytes | None = None,
         headers: dict | None = None) -> tuple[int, bytes]:
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(d.sock)

    conn = Conn("localhost", timeout=120)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def _client(d: Daemon):
    return docker.DockerClient(base_url=d.url, version="1.44", timeout=120)


def _tar(files: dict[str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            raw = data.encode() if isinstance(data, str) else data
            ti = tarfile.TarInfo(name)
            ti.size = len(raw)
            ti.mode = 0o644
            tf.addfile(ti, io.BytesIO(raw))
    return buf.getvalue()


def _berth(d: Daemon, *args: str, cwd: str | None = None, stdin: bytes | None = None,
           env: dict | None = None) -> subprocess.CompletedProcess:
    code = f"import sys; sys.path[:0] = [{ROOT!r}]; from berth.cli.main import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, "-H", d.url, *args], cwd=cwd, input=stdin,
                          capture_output=True, timeout=300, env={**os.environ, **(env or {})})


def _run(c, image: str, cmd: list[str] | None = None) -> bytes:
    """create, start, wait, logs, remove. (Not ``containers.run``: its ``logs(follow=True)`` right
    after start can end before the last output of a short container is in the log, an engine race
    reported separately.)"""
    ctr = c.containers.create(image, cmd)
    try:
        ctr.start()
        assert ctr.wait(timeout=120)["StatusCode"] == 0
        return ctr.logs()
    finally:
        ctr.remove(force=True)


def _write(root, files: dict[str, str]) -> str:
    for name, text in files.items():
        p = os.path.join(str(root), name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
    return str(root)


# -- docker-py -------------------------------------------------------------------------------------
def test_docker_py_build_buildargs_target_and_run(daemon):
    c = _client(daemon)
    df = ("FROM busybox AS base\nARG WHO=nobody\nRUN echo \"hi $WHO\" > /greeting\n"
          "FROM base AS final\nCOPY note.txt /note.txt\nCMD cat /greeting /note.txt\n"
          "FROM final AS extra\nRUN false\n")
    ctx = io.BytesIO(_tar({"Dockerfile": df, "note.txt": "from the context\n"}))
    img, logs = c.images.build(fileobj=ctx, custom_context=True, tag="pybuild:1", buildargs={"WHO": "py"},
                               target="final", rm=True)
    logs = list(logs)
    aux = [m["aux"]["ID"] for m in logs if "aux" in m]
    assert aux == [img.id]
    assert any("Successfully tagged pybuild:1" in m.get("stream", "") for m in logs)
    assert "pybuild:1" in img.tags
    out = _run(c, "pybuild:1")
    assert out == b"hi py\nfrom the context\n"
    # a failing build raises BuildError with the step's message
    bad = io.BytesIO(_tar({"Dockerfile": "FROM busybox\nRUN echo no; exit 4\n"}))
    with pytest.raises(docker.errors.BuildError) as ei:
        c.images.build(fileobj=bad, custom_context=True)
    assert "returned a non-zero code: 4" in str(ei.value)
    c.close()


def test_docker_py_gzip_context_streamed(daemon, tmp_path):
    """A large gzip context goes through the streaming extractor intact."""
    c = _client(daemon)
    blob = os.urandom(24 << 20)
    digest = hashlib.sha256(blob).hexdigest()
    data = _tar({"Dockerfile": "FROM busybox\nCOPY big.bin /big.bin\nCMD sha256sum /big.bin\n",
                 "big.bin": blob})
    ctx = io.BytesIO(gzip.compress(data, compresslevel=1))
    img, _ = c.images.build(fileobj=ctx, custom_context=True, encoding="gzip", tag="pybig:1")
    out = _run(c, "pybig:1")
    assert out.split()[0].decode() == digest
    c.images.remove("pybig:1")
    c.close()


def test_build_query_errors_and_cancel(daemon):
    st, body = _raw(daemon, "POST", "/build?remote=https://example.com/repo.git", _tar({}),
                    {"Content-Type": "application/x-tar"})
    assert st == 400 and b"remote build contexts are not supported" in body
    st, body = _raw(daemon, "POST", "/build?networkmode=container:x", _tar({"Dockerfile": "FROM busybox\n"}),
                    {"Content-Type": "application/x-tar"})
    assert st == 400 and b"network mode" in body
    st, body = _raw(daemon, "POST", "/build", b"this is not a tar" * 100,
                    {"Content-Type": "application/x-tar"})
    assert st == 200
    msgs = [json.loads(x) for x in body.split(b"\r\n") if x.strip()]
    assert "error" in msgs[-1] and "errorDetail" in msgs[-1]
    st, body = _raw(daemon, "POST", "/build/cancel?id=whatever")
    assert st == 200
    # the connection stays usable after an error that answered before the body was read
    st, _ = _raw(daemon, "GET", "/_ping")
    assert st == 200


def test_client_gone_mid_upload_leaves_no_context(daemon):
    import socket
    import time

    s = socket.socket(socket.AF_UNIX)
    s.connect(daemon.sock)
    s.sendall(b"POST /v1.44/build?t=never:1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    part = _tar({"Dockerfile": "FROM busybox\n", "big": os.urandom(4 << 20)})[: 2 << 20]
    s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
    tmp = os.path.join(daemon.data, "tmp")
    deadline = time.time() + 10
    while time.time() < deadline and not any(n.startswith("berth-build-ctx-") for n in os.listdir(tmp)):
        time.sleep(0.05)
    s.close()
    deadline = time.time() + 10
    while time.time() < deadline and any(n.startswith("berth-build-ctx-") for n in os.listdir(tmp)):
        time.sleep(0.1)
    assert not [n for n in os.listdir(tmp) if n.startswith("berth-build-ctx-")]
    assert _raw(daemon, "GET", "/_ping")[0] == 200
    c = _client(daemon)
    with pytest.raises(docker.errors.ImageNotFound):
        c.images.get("never:1")
    c.close()


# -- docker CLI ------------------------------------------------------------------------------------
def test_docker_cli_legacy_build(daemon, tmp_path):
    if not shutil.which("docker"):
        pytest.skip("no docker CLI")
    env = {**os.environ, "DOCKER_HOST": daemon.url, "DOCKER_BUILDKIT": "0",
           "DOCKER_CONFIG": str(tmp_path / "dockercfg")}
    ctx = _write(tmp_path / "ctx", {"hello.txt": "hello\n", "skip.me": "nope\n", ".dockerignore": "*.me\n"})
    outside = tmp_path / "Dockerfile.outside"
    outside.write_text("FROM busybox\nARG X=default\nCOPY . /ctx/\nRUN echo \"$X\" > /x\n"
                       "CMD cat /x /ctx/hello.txt; ls /ctx\n")
    iid = tmp_path / "iid"
    r = subprocess.run(["docker", "build", "-t", "clibuild:1", "--build-arg", "X=from-cli",
                        "-f", str(outside), "--iidfile", str(iid), "--label", "made.by=test", ctx],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "Successfully tagged clibuild:1" in r.stdout
    assert "Step 6/6 : LABEL made.by=test" in r.stdout  # --label is a step of its own, as moby's
    r = subprocess.run(["docker", "run", "--rm", "clibuild:1"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines[:2] == ["from-cli", "hello"]
    assert "skip.me" not in lines and "hello.txt" in lines
    insp = json.loads(subprocess.run(["docker", "image", "inspect", "clibuild:1"], env=env,
                                     capture_output=True, text=True, timeout=60).stdout)[0]
    assert insp["Id"] == iid.read_text()
    assert insp["Config"]["Labels"]["made.by"] == "test"
    fail = _write(tmp_path / "fail", {"Dockerfile": "FROM busybox\nRUN echo failing; exit 5\n"})
    r = subprocess.run(["docker", "build", fail], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 5
    assert "The command '/bin/sh -c echo failing; exit 5' returned a non-zero code: 5" in r.stderr


@pytest.mark.parametrize("cli_build", ["0", "1"])
def test_docker_compose_build(daemon, tmp_path, cli_build):
    """docker-compose 1.x: through docker-py's POST /build (0) or shelling out to docker build (1)."""
    if not shutil.which("docker-compose") or not shutil.which("docker"):
        pytest.skip("no docker-compose")
    proj = _write(tmp_path, {
        "docker-compose.yml": "version: '3'\nservices:\n  web:\n    build:\n      context: ./app\n"
                              "      args:\n        GREETING: compose" + cli_build + "\n"
                              "    image: compimg:" + cli_build + "\n",
        "app/Dockerfile": "FROM busybox\nARG GREETING=none\nRUN echo $GREETING > /g\nCMD cat /g\n",
    })
    env = {**os.environ, "DOCKER_HOST": daemon.url, "DOCKER_BUILDKIT": "0",
           "COMPOSE_DOCKER_CLI_BUILD": cli_build, "DOCKER_CONFIG": str(tmp_path / "dockercfg")}
    r = subprocess.run(["docker-compose", "-p", "bp" + cli_build, "build"], cwd=proj, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    c = _client(daemon)
    assert _run(c, "compimg:" + cli_build) == f"compose{cli_build}\n".encode()
    c.close()


# -- berth build -----------------------------------------------------------------------------------
def test_berth_build_cache_ignore_quiet_args(daemon, tmp_path):
    ctx = _write(tmp_path / "ctx", {
        "Dockerfile": "FROM busybox\nARG MSG=unset\nCOPY . /app/\n"
                      "RUN echo \"$MSG\" > /msg; ls -a /app > /listing\nCMD cat /msg /listing\n",
        "app.txt": "v1\n", "secret/key": "s3cr3t\n", "logs/a.log": "x\n", "logs/keep.log": "k\n",
        ".dockerignore": "secret\nlogs/*.log\n!logs/keep.log\n",
    })
    r = _berth(daemon, "build", "-t", "bb:1", "--build-arg", "MSG=first", ctx)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "Step 1/5 : FROM busybox" in out and "Using cache" not in out and "Successfully tagged bb:1" in out
    run = subprocess.run(["docker", "run", "--rm", "bb:1"], env={**os.environ, "DOCKER_HOST": daemon.url},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    listing = run.stdout.split()
    assert listing[0] == "first"
    assert "secret" not in listing and "app.txt" in listing and "Dockerfile" in listing
    # an excluded file changing does not invalidate the cache; every step is a hit
    _write(tmp_path / "ctx", {"secret/key": "changed\n", "logs/a.log": "changed\n"})
    r = _berth(daemon, "build", "-t", "bb:1", "--build-arg", "MSG=first", ctx)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().count("---> Using cache") == 4
    # -q prints only the image ID, which is the tagged image's
    r = _berth(daemon, "build", "-q", "--build-arg", "MSG=first", ctx)
    assert r.returncode == 0, r.stderr
    iid = r.stdout.decode().strip()
    assert iid.startswith("sha256:") and len(iid) == 71
    c = _client(daemon)
    assert c.images.get("bb:1").id == iid
    # KEY alone takes the environment's value; a changed arg is a miss from the RUN on
    r = _berth(daemon, "build", "-t", "bb:2", "--build-arg", "MSG", "--iidfile", str(tmp_path / "iid"), ctx,
               env={"MSG": "from-env"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().count("---> Using cache") == 2
    assert c.images.get("bb:2").id == (tmp_path / "iid").read_text()
    assert _run(c, "bb:2").split()[0] == b"from-env"
    # a kept file changing is a miss
    _write(tmp_path / "ctx", {"logs/keep.log": "k2\n"})
    r = _berth(daemon, "build", "--build-arg", "MSG=first", ctx)
    assert r.returncode == 0 and r.stdout.decode().count("---> Using cache") == 1
    c.close()


def test_berth_build_failure_stdin_and_dockerfile_flag(daemon, tmp_path):
    ctx = _write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo about to fail; exit 1\n",
                                    "alt/Build.df": "FROM busybox\nCMD [\"echo\", \"alt\"]\n"})
    r = _berth(daemon, "build", ctx)
    assert r.returncode == 1
    assert "about to fail" in r.stdout.decode()
    want = "The command '/bin/sh -c echo about to fail; exit 1' returned a non-zero code: 1"
    assert want in r.stderr.decode()
    # -f relative to the cwd, inside the context
    r = _berth(daemon, "build", "-t", "alt:1", "-f", os.path.join(ctx, "alt/Build.df"), ctx)
    assert r.returncode == 0, r.stderr
    # Dockerfile on stdin (-f -), and a whole context as a tar on stdin (-)
    r = _berth(daemon, "build", "-t", "stdin:1", "-f", "-", ctx,
               stdin=b"FROM busybox\nCMD [\"echo\", \"s1\"]\n")
    assert r.returncode == 0, r.stderr
    tar = _tar({"Dockerfile": "FROM busybox\nCOPY f /f\nCMD [\"cat\", \"/f\"]\n", "f": "tar-ctx\n"})
    r = _berth(daemon, "build", "-t", "stdin:2", "-", stdin=tar)
    assert r.returncode == 0, r.stderr
    r = _berth(daemon, "build", "-t", "stdin:3", "-", stdin=b"FROM busybox\nCMD [\"echo\", \"s3\"]\n")
    assert r.returncode == 0, r.stderr
    c = _client(daemon)
    assert _run(c, "alt:1") == b"alt\n"
    assert _run(c, "stdin:1") == b"s1\n"
    assert _run(c, "stdin:2") == b"tar-ctx\n"
    assert _run(c, "stdin:3") == b"s3\n"
    # a RUN failure keeps its container (as docker without --force-rm); clean it up
    for ctr in c.containers.list(all=True, filters={"label": "berth.build"}):
        ctr.remove(force=True)
    r = _berth(daemon, "build", "-f", "-", "-", stdin=b"")
    assert r.returncode == 1 and b"can't use stdin for both" in r.stderr
    r = _berth(daemon, "build", str(tmp_path / "missing"))
    assert r.returncode == 1 and b"unable to prepare context" in r.stderr
    c.close()


# -- system df, builder prune ------------------------------------------------------------------------
def test_system_df_and_builder_prune(daemon, tmp_path):
    ctx = _write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo $RANDOM$RANDOM > /r\nLABEL x=1\n"})
    r = _berth(daemon, "build", "--no-cache", "-t", "dfimg:1", ctx)
    assert r.returncode == 0, r.stderr
    c = _client(daemon)
    df = c.df()
    assert set(df) >= {"LayersSize", "Images", "Containers", "Volumes", "BuildCache"}
    assert df["LayersSize"] > 0
    assert any("dfimg:1" in (i["RepoTags"] or []) for i in df["Images"])
    cache = df["BuildCache"]
    assert cache and all(b["Type"] == "regular" and b["ID"].startswith("sha256:") for b in cache)
    assert any("echo $RANDOM$RANDOM" in b["Description"] for b in cache)
    tagged = {i["Id"] for i in df["Images"]}
    assert not tagged & {b["ID"] for b in cache}
    r = _berth(daemon, "system", "df")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert [ln.split()[0] for ln in lines[1:]] == ["Images", "Containers", "Local", "Build"]
    build_line = lines[4].split()
    assert build_line[2] == str(len(cache))
    r = _berth(daemon, "system", "df", "-v")
    assert r.returncode == 0 and b"Build cache usage:" in r.stdout
    # answering no to the prompt keeps everything
    r = _berth(daemon, "builder", "prune", stdin=b"n\n")
    assert r.returncode == 0 and len(c.df()["BuildCache"]) == len(cache)
    r = _berth(daemon, "builder", "prune", "-f")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.startswith("Deleted build cache objects:\n")
    assert out.splitlines()[-1].startswith("Total reclaimed space: ")
    assert {b["ID"] for b in cache} <= set(out.splitlines()[1:-1])
    assert c.df()["BuildCache"] == []
    # the tagged image survives and runs; a rebuild is a miss now (the cache was forgotten)
    assert _run(c, "dfimg:1", ["cat", "/r"]).strip()
    r = _berth(daemon, "build", "-t", "dfimg:1", ctx)
    assert r.returncode == 0 and "Using cache" not in r.stdout.decode()
    # until: only entries older than that go (none here: the rebuild's are seconds old)
    before = len(c.df()["BuildCache"])
    st, body = _raw(daemon, "POST", "/build/prune?filters=" + '{"until":["1h"]}')
    assert st == 200 and json.loads(body)["CachesDeleted"] is None
    assert len(c.df()["BuildCache"]) == before > 0
    r = _berth(daemon, "builder", "prune", "-f", "--filter", "until=0s")
    assert r.returncode == 0 and len(r.stdout.decode().splitlines()) == before + 2
    st, body = _raw(daemon, "POST", "/build/prune?filters=" + '{"type":["regular"]}')
    assert st == 400
    st, body = _raw(daemon, "GET", "/system/df?type=build-cache")
    assert st == 200 and set(json.loads(body)) == {"BuildCache"}
    c.close()


# -- /auth -----------------------------------------------------------------------------------------
class _Registry(BaseHTTPRequestHandler):
    """/v2/ with Basic auth (user "u", password "p")."""

    def do_GET(self):  # noqa: N802
        want = "Basic " + base64.b64encode(b"u:p").decode()
        if self.path == "/v2/" and self.headers.get("Authorization") == want:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="test"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def test_auth_against_a_local_registry(daemon, tmp_path):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        addr = f"127.0.0.1:{srv.server_address[1]}"
        c = _client(daemon)
        assert c.login("u", "p", registry=addr)["Status"] == "Login Succeeded"
        with pytest.raises(docker.errors.APIError) as ei:
            c.login("u", "wrong", registry=addr, reauth=True)
        assert ei.value.status_code == 401
        c.close()
        if shutil.which("docker"):
            env = {**os.environ, "DOCKER_HOST": daemon.url, "DOCKER_CONFIG": str(tmp_path / "cfg")}
            r = subprocess.run(["docker", "login", "-u", "u", "--password-stdin", addr], input="p\n", env=env,
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0 and "Login Succeeded" in r.stdout, r.stderr
            r = subprocess.run(["docker", "login", "-u", "u", "--password-stdin", addr], input="bad\n",
                               env=env, capture_output=True, text=True, timeout=60)
            assert r.returncode == 1 and "Error response from daemon" in r.stderr
    finally:
        srv.shutdown()
        srv.server_close()
    st, body = _raw(daemon, "POST", "/auth", json.dumps({"username": "u", "password": "p",
                                                          "serveraddress": addr}).encode(),
                    {"Content-Type": "application/json"})
    assert st == 500 and b"/v2/" in body   # nothing listens there any more


def test_step_images_are_intermediates(daemon, tmp_path):
    """Built step images are Docker's intermediates: hidden without -a, removed with the image."""
    ctx = _write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo $RANDOM$RANDOM > /r\nRUN cat /r\n"
                                                  "LABEL step=3\n"})
    r = _berth(daemon, "build", "--no-cache", "-q", "-t", "steps:1", ctx)
    assert r.returncode == 0, r.stderr
    final = r.stdout.decode().strip()
    c = _client(daemon)
    top = {i.id for i in c.images.list()}
    every = {i["Id"]: i for i in c.api.images(all=True)}
    steps, cur = [], every[final]["ParentId"]
    while cur and every[cur]["RepoTags"] in (None, [], ["<none>:<none>"]):
        steps.append(cur)
        cur = every[cur]["ParentId"]
    assert final in top and len(steps) == 2            # the two RUN steps; LABEL made the final image
    assert not set(steps) & top                        # hidden without all=true
    assert "busybox:latest" in every[cur]["RepoTags"]  # the chain ends at the base image
    deleted = [d.get("Deleted") for d in c.api.remove_image("steps:1") if d.get("Deleted")]
    assert final in deleted and set(steps) <= set(deleted)
    assert not {i["Id"] for i in c.api.images(all=True)} & {final, *steps}
