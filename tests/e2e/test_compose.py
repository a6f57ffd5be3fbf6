"""docker-compose 1.29 (Engine API through docker-py) against a private berthd: a two-service
project with a user network, a published port on 127.0.0.1 and a named volume."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from tests.e2e.daemon_fixture import Daemon
from tests.e2e.test_daemon import _bootstrap
from tests.helpers import mounts_under

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed"),
]
docker = pytest.importorskip("docker")

COMPOSE = """\
version: "3.7"
services:
  web:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo hello-compose > /www/index.html && echo seeded > /data/seed
              && echo web-up && exec httpd -f -p 8080 -h /www"]
    ports: ["127.0.0.1:{port}:8080"]
    volumes: ["webdata:/data"]
    networks: [appnet]
  client:
    image: busybox
    command: ["sh", "-c", "for i in $$(seq 1 100); do wget -q -O - http://web:8080/ && break; sleep 0.2; done;
              exec sleep 300"]
    depends_on: [web]
    networks: [appnet]
networks:
  appnet: {{}}
volumes:
  webdata: {{}}
"""


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(str(tmp_path))
    d.start()
    yield d
    d.cleanup()
    assert mounts_under(str(tmp_path)) == []


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _compose(d: Daemon, project: str, path: str, *args: str, timeout: float = 120) -> str:
    env = {**os.environ, "DOCKER_HOST": d.url, "COMPOSE_INTERACTIVE_NO_CLI": "1"}
    env.pop("DOCKER_CONTEXT", None)
    r = subprocess.run(["docker-compose", "--no-ansi", "-p", project, "-f", path, *args], env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"docker-compose {' '.join(args)}:\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


def _until(fn, timeout: float = 20):
    deadline = time.time() + timeout
    while True:
        try:
            v = fn()
            if v:
                return v
        except Exception:  # noqa: BLE001
            if time.time() > deadline:
                raise
        if time.time() > deadline:
            return fn()
        time.sleep(0.2)


def test_compose_up_ps_logs_down(daemon, tmp_path):
    _bootstrap(daemon)
    port = _free_port()
    project = f"bt{daemon.tag}"
    path = str(tmp_path / "docker-compose.yml")
    with open(path, "w") as f:
        f.write(COMPOSE.format(port=port))
    cli = docker.DockerClient(base_url=daemon.url, version="1.44", timeout=60)
    try:
        _compose(daemon, project, path, "up", "-d")
        ps = _compose(daemon, project, path, "ps")
        assert f"{project}_web_1" in ps and f"{project}_client_1" in ps and "Up" in ps
        # the published port answers on the host's loopback
        body = _until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read())
        assert body == b"hello-compose\n"
        # the client reached the web service by its name on the project network
        logs = _until(lambda: (lambda s: "hello-compose" in s and s)(_compose(daemon, project, path, "logs")))
        assert "web-up" in logs and "hello-compose" in logs
        vols = [v.name for v in cli.volumes.list()]
        assert f"{project}_webdata" in vols
        vol = cli.volumes.get(f"{project}_webdata")
        with open(os.path.join(vol.attrs["Mountpoint"], "seed")) as f:
            assert f.read() == "seeded\n"
        assert f"{project}_appnet" in [n.name for n in cli.networks.list()]
        _compose(daemon, project, path, "down", "-v", "-t", "1")
        assert cli.containers.list(all=True) == []
        assert [n.name for n in cli.networks.list() if n.name.startswith(project)] == []
        assert [v.name for v in cli.volumes.list()] == []
    finally:
        cli.close()
        subprocess.run(["docker-compose", "-p", project, "-f", path, "down", "-v"], capture_output=True,
                       env={**os.environ, "DOCKER_HOST": daemon.url}, timeout=120)
