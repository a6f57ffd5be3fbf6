"""berth image verbs end to end: the berth CLI (a subprocess) against a private berthd.

bootstrap, tag/rmi/history, save/load round trip, import of a rootfs tar then a run of it,
image prune, pull/push of what the engine has (and the clear errors for what it has not).
"""

from __future__ import annotations

import os
import pty
import subprocess
import tarfile
import uuid

import pytest

from tests.e2e.daemon_fixture import ROOT, Daemon
from tests.helpers import mounts_under

pytestmark = pytest.mark.root
docker = pytest.importorskip("docker")
BERTH = os.path.join(ROOT, ".venv", "berth-bin", "berth")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli-images")
    d = Daemon(str(base))
    d.start()
    yield d
    d.cleanup()
    assert mounts_under(str(base)) == []


def berth(d: Daemon, *args: str, input: bytes | None = None, check: bool = True,
          **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "BERTH_HOST")}
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    p = subprocess.run([BERTH, "-H", d.url, *args], input=input, env=env, timeout=120, **kw)
    if check:
        assert p.returncode == 0, (args, p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    return p


def out(p: subprocess.CompletedProcess) -> str:
    return p.stdout.decode()


@pytest.fixture(scope="module")
def busybox(daemon):
    p = berth(daemon, "image", "bootstrap", "busybox")
    lines = out(p).splitlines()
    assert lines[0] == "Bootstrapped image: busybox:latest" and lines[-1].startswith("sha256:")
    return lines[-1]


def listed(d: Daemon) -> list[str]:
    return out(berth(d, "images", "--format", "{{.Repository}} {{.Tag}} {{.ID}}")).splitlines()


def uniq(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def test_bootstrap_tag_history_rmi(daemon, busybox):
    repo = uniq("h4tag")
    assert out(berth(daemon, "image", "bootstrap", "-q", "busybox")) == busybox + "\n"
    berth(daemon, "tag", "busybox", f"{repo}/bb:v1")
    assert f"{repo}/bb v1 {busybox[7:19]}" in listed(daemon)
    hist = out(berth(daemon, "history", f"{repo}/bb:v1")).splitlines()
    assert hist[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert hist[1].startswith(busybox[7:19]) and hist[-1].startswith("<missing>")
    assert out(berth(daemon, "history", "-q", "--no-trunc", "busybox")).splitlines()[0] == busybox
    p = berth(daemon, "tag", "busybox", "Bad:Name:x", check=False)
    assert p.returncode == 1 and b"is not a valid repository/tag" in p.stderr
    p = berth(daemon, "rmi", f"{repo}/bb:v1", f"{repo}/nosuch", check=False)
    assert p.returncode == 1 and out(p) == f"Untagged: {repo}/bb:v1\n"
    assert f"No such image: {repo}/nosuch:latest".encode() in p.stderr
    assert not any(line.startswith(f"{repo}/") for line in listed(daemon))


def test_save_load_round_trip(daemon, busybox, tmp_path):
    name = uniq("h4save") + ":v2"
    berth(daemon, "tag", "busybox", name)
    tar = tmp_path / "img.tar"
    berth(daemon, "save", "-o", str(tar), name)
    with tarfile.open(tar) as t:
        assert "manifest.json" in t.getnames()
    piped = berth(daemon, "image", "save", name).stdout
    assert len(piped) == tar.stat().st_size
    master, slave = pty.openpty()  # docker refuses to write a tar to a terminal
    try:
        p = berth(daemon, "save", name, stdout=slave, check=False)
    finally:
        os.close(slave)
        os.close(master)
    assert p.returncode == 1 and b"cowardly refusing to save to a terminal" in p.stderr
    assert out(berth(daemon, "rmi", name)) == f"Untagged: {name}\n"  # busybox:latest keeps the image
    assert out(berth(daemon, "load", "-i", str(tar))) == f"Loaded image: {name}\n"
    assert f"{name.replace(':', ' ')} {busybox[7:19]}" in listed(daemon)
    berth(daemon, "rmi", name)
    assert out(berth(daemon, "image", "load", input=piped)) == f"Loaded image: {name}\n"
    berth(daemon, "rmi", name)
    p = berth(daemon, "load", "-i", str(tmp_path / "missing.tar"), check=False)
    assert p.returncode == 1 and b"no such file or directory" in p.stderr


def _rootfs_tar(path: str) -> None:
    with tarfile.open(path, "w") as t:
        t.add("/bin/busybox", "bin/busybox")
        for d in ("tmp", "etc"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            t.addfile(info)


def test_import_then_run(daemon, tmp_path):
    tar = str(tmp_path / "rootfs.tar")
    _rootfs_tar(tar)
    name = uniq("h4imp") + ":v1"
    p = berth(daemon, "import", "-c", 'CMD ["/bin/busybox", "echo", "imported-ok"]', "-c", "ENV H4=yes",
              "-m", "from a tarball", tar, name)
    image_id = out(p).strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    c = docker.DockerClient(base_url=daemon.url, version="1.44", timeout=60)
    try:
        assert c.containers.run(name, remove=True) == b"imported-ok\n"
        assert c.containers.run(name, ["/bin/busybox", "sh", "-c", "echo $H4"], remove=True) == b"yes\n"
    finally:
        c.close()
    hist = out(berth(daemon, "history", "--format", "{{.Comment}}", name))
    assert "from a tarball" in hist
    with open(tar, "rb") as f:  # from stdin, no name
        p = berth(daemon, "image", "import", "-", input=f.read())
    assert out(p).startswith("sha256:")
    p = berth(daemon, "import", "-c", "RUN true", tar, check=False)
    assert p.returncode == 1 and b"RUN is not a valid change command" in p.stderr
    p = berth(daemon, "import", "http://example.invalid/rootfs.tar", check=False)
    assert p.returncode == 1 and b"importing from a URL is not supported" in p.stderr
    berth(daemon, "rmi", name)


def test_image_prune(daemon, busybox, tmp_path):
    tar = str(tmp_path / "rootfs.tar")
    _rootfs_tar(tar)
    dangling = out(berth(daemon, "import", "-c", "LABEL h4=dangling", tar)).strip()
    p = berth(daemon, "image", "prune", input=b"n\n")
    assert out(p) == ("WARNING! This will remove all dangling images.\n"
                      "Are you sure you want to continue? [y/N] ")
    assert dangling[7:19] in out(berth(daemon, "images", "-a", "-q"))
    p = berth(daemon, "image", "prune", "-f")
    assert f"deleted: {dangling}" in out(p) and "Total reclaimed space:" in out(p)
    assert dangling[7:19] not in out(berth(daemon, "images", "-a", "-q"))
    assert busybox[7:19] in out(berth(daemon, "images", "-q"))  # tagged: kept without -a


def test_pull_push(daemon, busybox):
    p = berth(daemon, "pull", "busybox")
    assert out(p).splitlines()[0] == "Using default tag: latest"
    assert "Status: Image is up to date for busybox:latest" in out(p)
    assert out(p).splitlines()[-1] == "docker.io/library/busybox:latest"
    assert out(berth(daemon, "image", "pull", "-q", "busybox:latest")) == "docker.io/library/busybox:latest\n"
    missing = uniq("h4missing")
    p = berth(daemon, "pull", f"{missing}:1", check=False)
    assert p.returncode == 1 and f"pull access denied for {missing}".encode() in p.stderr
    p = berth(daemon, "push", "busybox", check=False)
    assert p.returncode == 1 and p.stderr.strip(), p.stderr
    assert b"Traceback" not in p.stderr
