"""berth network, volume, events and system prune verbs end to end: the berth CLI (a subprocess)
against a private berthd, containers made with docker-py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
import uuid

import pytest

from tests.e2e.daemon_fixture import ROOT, Daemon
from tests.helpers import mounts_under

pytestmark = pytest.mark.root
docker = pytest.importorskip("docker")
BERTH = os.path.join(ROOT, ".venv", "berth-bin", "berth")


def berth(d: Daemon, *args: str, input: bytes | None = None,
          check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "BERTH_HOST")}
    p = subprocess.run([BERTH, "-H", d.url, *args], input=input, capture_output=True, env=env, timeout=120)
    if check:
        assert p.returncode == 0, (args, p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    return p


def out(p: subprocess.CompletedProcess) -> str:
    return p.stdout.decode()


def uniq(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli-netvol")
    d = Daemon(str(base))
    d.start()
    berth(d, "image", "bootstrap", "busybox")
    yield d
    try:  # networks and volumes a failed test left behind, then the daemon's own sweep
        c = docker.DockerClient(base_url=d.url, version="1.44", timeout=60)
        for ctr in c.containers.list(all=True):
            ctr.remove(force=True)
        for n in c.networks.list():
            if n.name not in ("bridge", "host", "none"):
                n.remove()
        c.close()
    finally:
        d.cleanup()
    assert mounts_under(str(base)) == []


@pytest.fixture
def client(daemon):
    c = docker.DockerClient(base_url=daemon.url, version="1.44", timeout=60)
    yield c
    c.close()


def test_network_lifecycle(daemon, client):
    name = uniq("h4n")
    net_id = out(berth(daemon, "network", "create", "--subnet", "10.213.7.0/24", "--gateway", "10.213.7.1",
                       "--ip-range", "10.213.7.128/25", "--label", "h4=yes", "-o", "com.example.x=1",
                       name)).strip()
    assert len(net_id) == 64
    p = berth(daemon, "network", "create", name, check=False)
    assert p.returncode == 1 and f"network with name {name} already exists".encode() in p.stderr
    lines = out(berth(daemon, "network", "ls")).splitlines()
    assert lines[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert f"{net_id[:12]}   {name}" in out(berth(daemon, "network", "ls"))
    p = berth(daemon, "network", "ls", "-q", "--no-trunc", "--filter", f"name={name}")
    assert out(p) == net_id + "\n"
    p = berth(daemon, "network", "ls", "--filter", "label=h4=yes", "--format", "{{.Name}}")
    assert out(p) == name + "\n"
    info = json.loads(out(berth(daemon, "network", "inspect", name)))[0]
    assert info["Id"] == net_id and info["Labels"] == {"h4": "yes"}
    assert info["IPAM"]["Config"][0]["Subnet"] == "10.213.7.0/24"
    assert info["IPAM"]["Config"][0]["Gateway"] == "10.213.7.1"
    p = berth(daemon, "network", "inspect", name, "h4-nosuch", check=False)
    assert p.returncode == 1 and b"network h4-nosuch not found" in p.stderr
    assert json.loads(out(p))[0]["Name"] == name

    ctr = client.containers.run("busybox", ["sleep", "60"], detach=True, name=uniq("h4c"))
    try:
        berth(daemon, "network", "connect", "--alias", "web", "--ip", "10.213.7.200", name, ctr.name)
        members = json.loads(out(berth(daemon, "network", "inspect", "-f", "{{json .Containers}}", name)))
        assert members[ctr.id]["IPv4Address"] == "10.213.7.200/24"
        code, addrs = ctr.exec_run(["ip", "-4", "addr"])
        assert code == 0 and b"10.213.7.200/24" in addrs
        p = berth(daemon, "network", "rm", name, check=False)  # in use
        assert p.returncode == 1 and p.stderr.startswith(b"Error response from daemon: ")
        berth(daemon, "network", "disconnect", name, ctr.name)
        code, addrs = ctr.exec_run(["ip", "-4", "addr"])
        assert b"10.213.7.200" not in addrs
        assert out(berth(daemon, "network", "inspect", "-f", "{{len .Containers}}", name)) == "0\n"
        p = berth(daemon, "network", "disconnect", name, ctr.name, check=False)
        assert p.returncode == 1
    finally:
        ctr.remove(force=True)
    bridge = info["Options"].get("com.docker.network.bridge.name") or f"br-{net_id[:12]}"
    assert link_exists(bridge)
    assert out(berth(daemon, "network", "rm", name)) == name + "\n"
    assert not link_exists(bridge)
    p = berth(daemon, "network", "rm", name, check=False)
    assert p.returncode == 1 and f"network {name} not found".encode() in p.stderr
    assert berth(daemon, "network", "rm", "-f", name).stdout == b""


def test_network_internal_and_prune(daemon, client):
    internal, unused, labelled = uniq("h4i"), uniq("h4u"), uniq("h4l")
    since = f"{time.time() - 1:.3f}"
    berth(daemon, "network", "create", "--internal", internal)
    berth(daemon, "network", "create", unused)
    berth(daemon, "network", "create", "--label", "keep=1", labelled)
    assert out(berth(daemon, "network", "inspect", "-f", "{{.Internal}}", internal)) == "true\n"
    ctr = client.containers.run("busybox", ["sleep", "60"], detach=True, network=internal, name=uniq("h4c"))
    try:
        p = berth(daemon, "network", "prune", input=b"n\n")
        assert out(p).endswith("Are you sure you want to continue? [y/N] ")
        assert unused in out(berth(daemon, "network", "ls", "--format", "{{.Name}}"))
        p = berth(daemon, "network", "prune", "-f", "--filter", "label!=keep")
        deleted = out(p).splitlines()
        assert deleted[0] == "Deleted Networks:" and unused in deleted and internal not in deleted
        assert labelled not in deleted
        events = out(berth(daemon, "events", "--since", since, "--until", f"{time.time() + 1:.3f}",
                           "--filter", "type=network", "--format", "{{.Action}} {{.Actor.Attributes.name}}"))
        assert f"destroy {unused}" in events.splitlines() and "prune <no value>" in events.splitlines()
    finally:
        ctr.remove(force=True)
    berth(daemon, "network", "rm", internal, labelled)


def test_events(daemon, client):
    since = f"{time.time() - 1:.3f}"
    repo = uniq("h4ev")
    name = uniq("h4c")
    client.containers.run("busybox", ["true"], name=name, remove=True)
    berth(daemon, "tag", "busybox", f"{repo}:1")
    until = f"{time.time() + 0.5:.3f}"
    lines = out(berth(daemon, "events", "--since", since, "--until", until)).splitlines()
    assert any(" container start " in ln and f"name={name}" in ln for ln in lines), lines
    die = [ln for ln in lines if " container die " in ln and f"name={name}" in ln]
    assert die and "exitCode=0" in die[0] and die[0][:4].isdigit() and die[0][29:31] in ("Z ", "+0", "-0")
    assert any(" image tag " in ln and repo in ln for ln in lines), lines
    filtered = out(berth(daemon, "system", "events", "--since", since, "--until", until, "--filter",
                         "type=image", "--format", "{{.Type}} {{.Action}}")).splitlines()
    assert "image tag" in filtered and all(ln.startswith("image ") for ln in filtered)
    as_json = [json.loads(ln) for ln in out(berth(daemon, "events", "--since", since, "--until", until,
                                                  "--format", "{{json .}}")).splitlines()]
    assert any(e["Type"] == "container" and e["Action"] == "start" for e in as_json)
    berth(daemon, "rmi", f"{repo}:1")


def test_system_prune(daemon, client, tmp_path):
    ctr = client.containers.run("busybox", ["true"], detach=True, name=uniq("h4c"))
    ctr.wait()
    net = uniq("h4p")
    berth(daemon, "network", "create", net)
    tar = tmp_path / "rootfs.tar"
    with tarfile.open(tar, "w") as t:
        t.add("/bin/busybox", "bin/busybox")
    dangling = out(berth(daemon, "import", str(tar))).strip()
    p = berth(daemon, "system", "prune", input=b"\n")
    assert out(p).startswith("WARNING! This will remove:\n  - all stopped containers\n")
    assert "Total reclaimed space" not in out(p)
    text = out(berth(daemon, "system", "prune", "-f"))
    assert f"Deleted Containers:\n{ctr.id}\n" in text
    assert "Deleted Networks:\n" in text and f"\n{net}\n" in text
    assert f"deleted: {dangling}" in text
    assert text.splitlines()[-1].startswith("Total reclaimed space: ")
    assert dangling[7:19] not in out(berth(daemon, "images", "-a", "-q"))
    assert "busybox" in out(berth(daemon, "images", "--format", "{{.Repository}}")).splitlines()


@pytest.fixture
def volumes(daemon):
    from berth.client.transport import Transport
    resp = Transport(daemon.url).send("GET", "/volumes")
    body = resp.read()
    if resp.status in (404, 500):
        pytest.skip(f"the engine does not serve volumes yet (GET /volumes → {resp.status}: {body[:120]!r})")
    return daemon


def test_volumes(volumes, client):
    daemon = volumes
    name = uniq("h4v")
    assert out(berth(daemon, "volume", "create", "--label", "h4=yes", name)) == name + "\n"
    anon = out(berth(daemon, "volume", "create")).strip()
    assert anon and anon != name
    lines = out(berth(daemon, "volume", "ls")).splitlines()
    assert lines[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert f"local     {name}" in lines
    assert out(berth(daemon, "volume", "ls", "-q", "--filter", f"name={name}")) == name + "\n"
    assert out(berth(daemon, "volume", "ls", "-q", "--filter", "label=h4=yes")) == name + "\n"
    info = json.loads(out(berth(daemon, "volume", "inspect", name)))[0]
    assert info["Name"] == name and info["Driver"] == "local" and info["Labels"] == {"h4": "yes"}
    p = berth(daemon, "volume", "inspect", "h4-nosuch", check=False)
    assert p.returncode == 1 and out(p) == "[]\n" and b"h4-nosuch" in p.stderr
    ctr = client.containers.run("busybox", ["sh", "-c", "echo kept > /data/f"],
                                volumes={name: {"bind": "/data", "mode": "rw"}}, detach=True)
    ctr.wait()
    assert name in out(berth(daemon, "volume", "ls", "-q", "--filter", "dangling=false"))
    p = berth(daemon, "volume", "rm", name, check=False)  # in use by a (stopped) container
    assert p.returncode == 1 and p.stderr.startswith(b"Error response from daemon: ")
    ctr.remove()
    assert name in out(berth(daemon, "volume", "ls", "-q", "--filter", "dangling=true"))
    p = berth(daemon, "volume", "prune", "-f")  # anonymous only: the named volume stays
    assert name in out(berth(daemon, "volume", "ls", "-q"))
    assert out(p).splitlines()[-1].startswith("Total reclaimed space: ")
    assert out(berth(daemon, "volume", "rm", name)) == name + "\n"
    berth(daemon, "volume", "create", name)
    p = berth(daemon, "volume", "prune", "-a", "-f")
    assert "Deleted Volumes:\n" in out(p) and name in out(p).splitlines()
    assert name not in out(berth(daemon, "volume", "ls", "-q"))
    p = berth(daemon, "volume", "rm", name, check=False)
    assert p.returncode == 1
    berth(daemon, "volume", "rm", "-f", anon, check=False)


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI on this machine")
def test_same_output_as_docker_cli(daemon, client):
    """berth and the docker CLI, against the same engine, print the same tables, JSON and errors."""
    net = uniq("h4cmp")
    berth(daemon, "network", "create", "--label", "h4=cmp", net)
    since = f"{time.time() - 1:.3f}"
    client.containers.run("busybox", ["true"], name=uniq("h4c"), remove=True)
    until = f"{time.time() + 0.5:.3f}"
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "BERTH_HOST")}

    def both(*args: str) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
        d = subprocess.run(["docker", "-H", daemon.url, *args], capture_output=True, env=env, timeout=60)
        return berth(daemon, *args, check=False), d

    for args in (("network", "ls"), ("network", "ls", "-q", "--no-trunc"),
                 ("network", "ls", "--format", "{{json .}}"), ("network", "inspect", net),
                 ("network", "inspect", "h4-nosuch"), ("history", "busybox"),
                 ("history", "--no-trunc", "--format", "table {{.ID}}\t{{.CreatedAt}}\t{{.Size}}", "busybox"),
                 ("events", "--since", since, "--until", until),
                 ("events", "--since", since, "--until", until, "--format", "{{json .}}"),
                 ("rmi", "h4-nosuch"), ("network", "connect", "h4-nosuch", "x")):
        b, d = both(*args)
        assert (b.returncode, b.stdout, b.stderr.strip()) == (d.returncode, d.stdout, d.stderr.strip()), args
    berth(daemon, "network", "rm", net)
    from berth.client.transport import Transport
    resp = Transport(daemon.url).send("GET", "/volumes")
    resp.read()
    if resp.status == 200:
        vol = uniq("h4cmpv")
        berth(daemon, "volume", "create", "--label", "h4=cmp", vol)
        for args in (("volume", "ls"), ("volume", "ls", "--format", "{{json .}}"), ("volume", "inspect", vol),
                     ("volume", "inspect", "h4-nosuch"), ("volume", "rm", "h4-nosuch")):
            b, d = both(*args)
            assert (b.returncode, b.stdout, b.stderr.strip()) == \
                (d.returncode, d.stdout, d.stderr.strip()), args
        berth(daemon, "volume", "rm", vol)
