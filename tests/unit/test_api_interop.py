"""Real clients against the API server with the fake engine: docker-py 7 and the docker CLI 28."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.unit.fake_engine import FakeEngine, ServerThread

DOCKER = "/usr/local/bin/docker"


@pytest.fixture
def srv(tmp_path):
    with ServerThread(FakeEngine(), str(tmp_path / "api.sock")) as s:
        yield s


def test_docker_py_flows(srv):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=srv.url, timeout=10)
    try:
        assert client.ping() is True
        assert client.version()["ApiVersion"] == "1.44"
        cid = srv.engine.create_container("dp1", {"Image": "busybox", "Cmd": ["echo", "from-py"],
                                                  "Labels": {"a": "b"}})["Id"]
        srv.call(srv.engine.start(cid))
        c = client.containers.get("dp1")
        assert c.id == cid and c.name == "dp1"
        assert client.api.wait(cid)["StatusCode"] == 0
        assert client.containers.get(cid).logs() == b"from-py\n"
        listed = client.containers.list(all=True, filters={"label": "a=b"})
        assert [x.id for x in listed] == [cid]
        assert client.containers.list(all=True, filters={"label": "a=zzz"}) == []
        # run in the foreground: create → start → logs(follow) → wait → remove
        out = client.containers.run("busybox", ["echo", "hi", "there"], remove=True)
        assert out == b"hi there\n"
        with pytest.raises(docker.errors.ImageNotFound):
            client.containers.create("nosuchimage")
        # exec through the hijacked socket
        srv.engine.create_container("dp2", {"Image": "busybox", "Cmd": ["sleep", "5"]})
        srv.call(srv.engine.start("dp2"))
        for _ in range(5):  # the docker-py read race is handled by the server's first-output delay
            res = client.containers.get("dp2").exec_run(["echo", "exec-out"])
            assert (res.exit_code, res.output) == (0, b"exec-out\n")
        res = client.containers.get("dp2").exec_run(["nosuch"])
        assert res.exit_code == 127
        client.containers.get("dp2").remove(force=True)
        with pytest.raises(docker.errors.NotFound):
            client.containers.get("dp2")
        assert [i.tags for i in client.images.list()] == [["busybox:latest"]]
    finally:
        client.close()


def docker_cli(srv, *args, stdin=None, check=True):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DOCKER_HOST": srv.url,
           **{k: v for k, v in os.environ.items() if k == "DOCKER_API_VERSION"},
           "DOCKER_CONFIG": os.path.join(os.path.dirname(srv.path), "dockercfg"), "HOME": "/nonexistent"}
    p = subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True, timeout=30, input=stdin)
    if check:
        assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return p


@pytest.mark.skipif(not shutil.which(DOCKER), reason="docker CLI not installed")
def test_docker_cli_against_fake_engine(srv):
    p = docker_cli(srv, "version", "--format", "{{.Server.APIVersion}} {{.Server.Os}}")
    assert p.stdout.strip() == "1.44 linux"
    cid = srv.engine.create_container("cli1", {"Image": "busybox", "Cmd": ["sleep", "5"]})["Id"]
    srv.call(srv.engine.start(cid))
    p = docker_cli(srv, "ps")
    lines = p.stdout.splitlines()
    assert lines[0].split()[:3] == ["CONTAINER", "ID", "IMAGE"] and "cli1" in lines[1]
    assert lines[1].startswith(cid[:12])
    p = docker_cli(srv, "ps", "-q", "--filter", "name=cli1")
    assert p.stdout.split() == [cid[:12]]
    p = docker_cli(srv, "inspect", "cli1")
    assert json.loads(p.stdout)[0]["Id"] == cid
    p = docker_cli(srv, "inspect", "--format", "{{.State.Status}}", "cli1")
    assert p.stdout.strip() == "running"
    p = docker_cli(srv, "inspect", "nothing", check=False)
    assert p.returncode == 1 and "No such object: nothing" in p.stderr
    p = docker_cli(srv, "rm", "cli1", check=False)
    assert p.returncode == 1 and "container is running" in p.stderr
    p = docker_cli(srv, "rm", "-f", "cli1")
    assert p.stdout.strip() == "cli1" and cid not in srv.engine.containers
    p = docker_cli(srv, "images")
    assert p.stdout.splitlines()[1].split()[:2] == ["busybox", "latest"]


@pytest.mark.skipif(not shutil.which(DOCKER), reason="docker CLI not installed")
def test_docker_cli_run_exec_logs_wait(srv):
    p = docker_cli(srv, "run", "--name", "fg", "busybox", "echo", "hello", "cli")
    assert p.stdout == "hello cli\n"
    p = docker_cli(srv, "run", "--rm", "busybox", "exit", "3", check=False)
    assert p.returncode == 3
    p = docker_cli(srv, "run", "-i", "--rm", "busybox", "cat", stdin="piped stdin\n")
    assert p.stdout == "piped stdin\n"
    p = docker_cli(srv, "logs", "fg")
    assert p.stdout == "hello cli\n"
    p = docker_cli(srv, "wait", "fg")
    assert p.stdout.strip() == "0"
    p = docker_cli(srv, "run", "-d", "--name", "bg", "busybox", "sleep", "5")
    cid = p.stdout.strip()
    assert len(cid) == 64
    p = docker_cli(srv, "exec", "bg", "echo", "in", "exec")
    assert p.stdout == "in exec\n"
    p = docker_cli(srv, "exec", "-i", "bg", "cat", stdin="exec stdin")
    assert p.stdout == "exec stdin"
    p = docker_cli(srv, "exec", "bg", "exit", "4", check=False)
    assert p.returncode == 4
    docker_cli(srv, "kill", "bg")
    p = docker_cli(srv, "kill", "bg", check=False)
    assert p.returncode == 1 and "is not running" in p.stderr


@pytest.mark.skipif(not shutil.which(DOCKER), reason="docker CLI not installed")
def test_docker_cli_events_stop_and_old_api_version(srv):
    import time
    docker_cli(srv, "create", "--name", "ev", "busybox", "sleep", "5")
    docker_cli(srv, "start", "ev")
    p = docker_cli(srv, "stop", "ev")
    assert p.stdout.strip() == "ev"
    p = docker_cli(srv, "stop", "ev")  # 304: already stopped, still success
    assert p.stdout.strip() == "ev"
    until = str(int(time.time()) + 1)
    p = docker_cli(srv, "events", "--since", "0", "--until", until,
                   "--format", "{{.Action}} {{.Actor.Attributes.name}}")
    assert p.stdout.splitlines()[:3] == ["create ev", "start ev", "die ev"]
    env_version = os.environ.get("DOCKER_API_VERSION")
    os.environ["DOCKER_API_VERSION"] = "1.41"
    try:
        p = docker_cli(srv, "run", "--rm", "busybox", "echo", "old", "api")
        assert p.stdout == "old api\n"
    finally:
        if env_version is None:
            del os.environ["DOCKER_API_VERSION"]
        else:
            os.environ["DOCKER_API_VERSION"] = env_version


@pytest.mark.skipif(not shutil.which(DOCKER), reason="docker CLI not installed")
def test_docker_cli_cp_network_stats_build(srv, tmp_path):
    docker_cli(srv, "run", "-d", "--name", "cp1", "busybox", "sleep", "5")
    src = tmp_path / "f.txt"
    src.write_text("copied in\n")
    docker_cli(srv, "cp", str(src), "cp1:/tmp/")
    assert srv.engine.files[srv.engine._get("cp1").id]["/tmp/f.txt"] == b"copied in\n"
    out = tmp_path / "back.txt"
    docker_cli(srv, "cp", "cp1:/tmp/f.txt", str(out))
    assert out.read_text() == "copied in\n"
    p = docker_cli(srv, "cp", "cp1:/nope", str(out), check=False)
    assert p.returncode == 1 and "Could not find the file /nope" in p.stderr
    p = docker_cli(srv, "network", "create", "--label", "a=b", "mynet")
    assert len(p.stdout.strip()) == 64
    p = docker_cli(srv, "network", "ls", "--format", "{{.Name}} {{.Driver}}")
    assert "mynet bridge" in p.stdout.splitlines()
    p = docker_cli(srv, "network", "create", "mynet", check=False)
    assert p.returncode == 1 and "already exists" in p.stderr
    docker_cli(srv, "network", "rm", "mynet")
    p = docker_cli(srv, "stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "cp1")
    assert p.stdout.strip() == "cp1 1"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\n")
    env = {"PATH": "/usr/bin:/bin", "DOCKER_HOST": srv.url, "DOCKER_BUILDKIT": "0",
           "DOCKER_CONFIG": str(tmp_path / "cfg"), "HOME": "/nonexistent"}
    p = subprocess.run([DOCKER, "build", "-q", "-t", "built:1", str(ctx)], capture_output=True, text=True,
                       timeout=30, env=env)
    assert p.returncode == 0, p.stderr
    assert any("built:1" in i["RepoTags"] for i in srv.engine.images)
    docker_cli(srv, "rm", "-f", "cp1")


def test_docker_py_stats_build_networks(srv, tmp_path):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=srv.url, timeout=10)
    try:
        srv.engine.create_container("st", {"Image": "busybox", "Cmd": ["sleep", "5"]})
        srv.call(srv.engine.start("st"))
        st = client.containers.get("st").stats(stream=False)
        assert st["memory_stats"]["usage"] == 4096
        streamed = list(client.api.stats("st", decode=True))
        assert len(streamed) == 2
        import io
        import tarfile
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            data = b"FROM busybox\n"
            ti = tarfile.TarInfo("Dockerfile")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        buf.seek(0)
        image, logs = client.images.build(fileobj=buf, custom_context=True, tag="pyb:2", labels={"l": "v"})
        assert "pyb:2" in image.tags
        assert any("Successfully built" in x.get("stream", "") for x in logs)
        buf.seek(0)
        with pytest.raises(docker.errors.BuildError, match="non-zero code"):
            client.images.build(fileobj=buf, custom_context=True, buildargs={"FAIL": "1"})
        net = client.networks.create("pynet", labels={"x": "y"})
        assert client.networks.get("pynet").attrs["Labels"] == {"x": "y"}
        net.remove()
        with pytest.raises(docker.errors.NotFound):
            client.networks.get("pynet")
        with pytest.raises(docker.errors.NotFound):  # no volume support in the fake engine: 404
            client.volumes.get("v")
    finally:
        client.close()


@pytest.mark.skipif(not (shutil.which(DOCKER) and shutil.which("script")), reason="needs docker, script")
def test_docker_cli_run_with_a_tty(srv):
    """`docker run -it` under a pseudo-terminal: raw stream, resize after start."""
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "DOCKER_HOST": srv.url, "HOME": "/nonexistent",
           "DOCKER_CONFIG": os.path.join(os.path.dirname(srv.path), "dockercfg"), "TERM": "xterm"}
    p = subprocess.run(["script", "-qec", f"stty rows 24 cols 80; {DOCKER} run -it --rm busybox echo tty-out",
                        "/dev/null"], env=env, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 0 and p.stdout.replace(b"\r", b"") == b"tty-out\n", p
    assert [r[1:] for r in srv.engine.resizes] == [(24, 80)]
