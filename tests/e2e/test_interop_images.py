"""Interoperability of save/load with Docker, Podman, skopeo and umoci (skipped when missing).

A private dockerd runs with its own data root, exec root, pid file and unix socket, no bridge and
no iptables; it is stopped by pid afterwards.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from berth.content import ContentStore
from berth.images.bootstrap import busybox_image, make_busybox_rootfs
from berth.images.saveload import load, save
from berth.images.store import ImageStore
from berth.metadata.db import Database
from berth.mount import mount_all, unmount_all
from berth.snapshots import open_snapshotter

pytestmark = [pytest.mark.root, pytest.mark.slow]


def _unmount_under(path: str) -> None:
    with open("/proc/self/mountinfo") as f:
        mps = [line.split()[4] for line in f]
    for mp in sorted((m for m in mps if m == path or m.startswith(path + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)


class Dockerd:
    def __init__(self, base: str) -> None:
        self.base = base
        self.sock = os.path.join(base, "d.sock")
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(os.path.join(self.base, "dockerd.log"), "wb")
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", os.path.join(self.base, "data"), "--exec-root",
             os.path.join(self.base, "exec"), "--pidfile", os.path.join(self.base, "dockerd.pid"),
             "-H", f"unix://{self.sock}", "--bridge", "none", "--iptables=false", "--ip6tables=false"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if os.path.exists(self.sock) and self.docker("version", check=False).returncode == 0:
                return
            time.sleep(0.3)
        tail = self.log_tail()
        self.stop()
        pytest.skip(f"dockerd cannot start in this sandbox: {tail}")

    def log_tail(self) -> str:
        with open(os.path.join(self.base, "dockerd.log"), errors="replace") as f:
            return " | ".join(f.read().strip().splitlines()[-3:])

    def docker(self, *args: str, check: bool = True,
               input: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", *args], env=self.env, capture_output=True, input=input, timeout=120,
                              check=check)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        _unmount_under(self.base)


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory):
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        pytest.skip("docker is not installed")
    base = str(tmp_path_factory.mktemp("dockerd"))
    d = Dockerd(base)
    d.start()
    yield d
    d.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def store(tmp_path):
    base = tmp_path / "berth"
    base.mkdir()
    db = Database(str(base / "meta.db"))
    snap = open_snapshotter(str(base / "snap"), db, "overlay")
    s = ImageStore(db, ContentStore(str(base / "content")), snap)
    yield s
    for info in sorted(s.snapshotter.walk(), key=lambda i: i.parent == ""):
        with contextlib.suppress(Exception):
            s.snapshotter.remove(info.key)
    db.close()


@contextlib.contextmanager
def mounted(store: ImageStore, chain: str, tmp_path):
    """A read-only view of a committed chain, mounted on a tmp dir (unmounted and removed after)."""
    key = f"view-{secrets.token_hex(4)}"
    target = tmp_path / key
    target.mkdir()
    mount_all(store.snapshotter.view(key, chain), str(target))
    try:
        yield str(target)
    finally:
        unmount_all(str(target))
        store.snapshotter.remove(key)


def saved(store: ImageStore, refs: list[str]) -> bytes:
    buf = io.BytesIO()
    save(store, refs, buf)
    return buf.getvalue()


def rootfs_tar(tmp_path) -> str:
    root = tmp_path / "rootfs"
    root.mkdir()
    make_busybox_rootfs(str(root))
    out = str(tmp_path / "rootfs.tar")
    subprocess.run(["tar", "-C", str(root), "-cf", out, "."], check=True)
    return out


def test_docker_loads_and_runs_berth_saved_image(dockerd, store):
    img = busybox_image(store)
    tag = f"berth-bb-{secrets.token_hex(4)}:latest"
    store.tag(img.id, tag)
    out = dockerd.docker("load", input=saved(store, [tag])).stdout.decode()
    assert f"Loaded image: {tag}" in out
    try:
        ident = dockerd.docker("image", "inspect", "-f", "{{.Id}}", tag).stdout.decode().strip()
        assert ident == img.id
        run = dockerd.docker("run", "--rm", "--network", "none", tag, "sh", "-c",
                             "head -1 /etc/passwd; echo ok", check=False)
        if run.returncode != 0 and b"cgroup" in run.stderr:
            pytest.skip(f"docker cannot run containers here: {run.stderr.decode()[-200:]}")
        assert run.returncode == 0, run.stderr
        assert run.stdout.decode().splitlines() == ["root:x:0:0:root:/root:/bin/sh", "ok"]
    finally:
        dockerd.docker("rmi", "-f", tag, check=False)


def test_berth_loads_what_docker_saves(dockerd, store, tmp_path):
    tag = f"dk-src-{secrets.token_hex(4)}"
    dockerd.docker("import", "--change", 'CMD ["sh"]', "--change", "ENV FROM_DOCKER=1", rootfs_tar(tmp_path),
                   f"{tag}:base")
    name = f"dk-run-{secrets.token_hex(4)}"
    try:
        run = dockerd.docker("run", "--name", name, "--network", "none", f"{tag}:base", "sh", "-c",
                             "echo made-in-docker > /hello; rm /bin/ls", check=False)
        if run.returncode != 0:
            pytest.skip(f"docker cannot run containers here: {run.stderr.decode()[-200:]}")
        dockerd.docker("commit", name, f"{tag}:two")
        docker_id = dockerd.docker("image", "inspect", "-f", "{{.Id}}", f"{tag}:two").stdout.decode().strip()
        archive = dockerd.docker("save", f"{tag}:two").stdout
    finally:
        dockerd.docker("rm", "-f", name, check=False)
        dockerd.docker("rmi", "-f", f"{tag}:two", f"{tag}:base", check=False)
    res = load(store, io.BytesIO(archive))
    assert res.messages == [f"Loaded image: {tag}:two"]
    img = store.get(f"{tag}:two")
    assert img.id == docker_id
    assert "FROM_DOCKER=1" in store.inspect(img.id)["Config"]["Env"]
    top = store.unpack(img.id)
    with mounted(store, top, tmp_path) as root:
        with open(os.path.join(root, "hello")) as f:
            assert f.read() == "made-in-docker\n"
        assert os.path.isfile(os.path.join(root, "bin/busybox"))
        assert not os.path.lexists(os.path.join(root, "bin/ls"))   # the whiteout applied
        assert os.path.lexists(os.path.join(root, "bin/cat"))
    # and what berth saves of it, Docker loads again with the same ID
    again = dockerd.docker("load", input=saved(store, [f"{tag}:two"])).stdout.decode()
    assert f"{tag}:two" in again
    again_id = dockerd.docker("image", "inspect", "-f", "{{.Id}}", f"{tag}:two").stdout.decode().strip()
    assert again_id == docker_id
    dockerd.docker("rmi", "-f", f"{tag}:two", check=False)


@pytest.fixture
def podman(tmp_path):
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    base = tmp_path / "podman"
    base.mkdir()
    runroot = tempfile.mkdtemp(prefix="berth-pm-", dir="/tmp")   # podman wants a runroot under 50 chars
    cmd = ["podman", "--root", str(base / "root"), "--runroot", runroot, "--storage-driver", "vfs",
           "--cgroup-manager", "cgroupfs", "--events-backend", "none"]

    def run(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([*cmd, *args], capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()[-500:]
        return proc

    yield run
    with contextlib.suppress(Exception):
        subprocess.run([*cmd, "system", "reset", "-f"], capture_output=True, timeout=60)
    _unmount_under(str(base))
    _unmount_under(runroot)
    shutil.rmtree(base, ignore_errors=True)
    shutil.rmtree(runroot, ignore_errors=True)


@pytest.mark.parametrize("fmt", ["oci-archive", "docker-archive"])
def test_berth_loads_podman_save(podman, store, tmp_path, fmt):
    out = podman("import", "--change", "CMD [\"sh\"]", rootfs_tar(tmp_path), "localhost/pm:1").stdout
    pm_id = out.decode().strip().splitlines()[-1]
    archive = str(tmp_path / "pm.tar")
    podman("save", "--format", fmt, "-o", archive, "localhost/pm:1")
    with open(archive, "rb") as f:
        res = load(store, f)
    assert res.messages == ["Loaded image: localhost/pm:1"]
    img = store.get("localhost/pm:1")
    assert img.id == pm_id
    top = store.unpack(img.id)
    with mounted(store, top, tmp_path) as root:
        assert os.path.isfile(os.path.join(root, "bin/busybox"))
        assert os.readlink(os.path.join(root, "bin/sh")) == "/bin/busybox"


def _layout_dir(store: ImageStore, tmp_path, ref: str) -> str:
    layout = str(tmp_path / "layout")
    os.mkdir(layout)
    subprocess.run(["tar", "-xf", "-", "-C", layout], input=saved(store, [ref]), check=True, timeout=60)
    return layout


def test_skopeo_accepts_berth_oci_layout(store, tmp_path):
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    img = busybox_image(store)
    layout = _layout_dir(store, tmp_path, "busybox:latest")
    info = json.loads(subprocess.run(["skopeo", "inspect", f"oci:{layout}:latest"], capture_output=True,
                                     check=True, timeout=60).stdout)
    assert info["Digest"] == img.manifest.digest
    assert info["Layers"] == [d.digest for d in store.read_manifest(img).layers]
    out = str(tmp_path / "copied")
    subprocess.run(["skopeo", "copy", f"oci:{layout}:latest", f"dir:{out}"], capture_output=True, check=True,
                   timeout=60)
    assert os.path.isfile(os.path.join(out, "manifest.json"))
    assert os.path.isfile(os.path.join(out, img.id[7:]))
    # the tar itself is an oci-archive as well
    tar = str(tmp_path / "bb.tar")
    with open(tar, "wb") as f:
        f.write(saved(store, ["busybox:latest"]))
    info = json.loads(subprocess.run(["skopeo", "inspect", f"oci-archive:{tar}"], capture_output=True,
                                     check=True, timeout=60).stdout)
    assert info["Digest"] == img.manifest.digest


def test_umoci_unpacks_berth_layout(store, tmp_path):
    if shutil.which("umoci") is None:
        pytest.skip("umoci is not installed")
    busybox_image(store)
    layout = _layout_dir(store, tmp_path, "busybox:latest")
    bundle = str(tmp_path / "bundle")
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:latest", bundle], capture_output=True,
                   check=True, timeout=60)
    assert os.path.isfile(os.path.join(bundle, "rootfs/bin/busybox"))
    assert os.path.islink(os.path.join(bundle, "rootfs/bin/sh"))
    with open(os.path.join(bundle, "config.json")) as f:
        assert json.load(f)["process"]["args"] == ["sh"]
