"""Benchmark: berth image save/load vs ``docker save``/``docker load`` on a ~100 MB image.

The image (one layer of mixed files, half compressible) is imported into berth, saved, and loaded
by a private dockerd (own data root, exec root, pid file and unix socket; no bridge, no iptables;
stopped by pid at the end). Then, alternating rounds:

- save: ``berth save`` of the image vs ``docker save`` of the same image, to a file;
- load: ``berth load`` (blobs ingested and verified) + unpack into a snapshotter (as ``docker load``
  extracts into overlay2) vs ``docker load`` of the same archive into a fresh name.

Medians are printed with ratios docker/berth (>= 1.0: berth at least as fast). If dockerd cannot
start, only berth's numbers are printed.

    .venv/bin/python bench/storage/saveload.py [--mb 100] [--rounds 3] [--driver overlay]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from berth.content import ContentStore  # noqa: E402
from berth.images.importer import import_image  # noqa: E402
from berth.images.saveload import load, save  # noqa: E402
from berth.images.store import ImageStore  # noqa: E402
from berth.metadata.db import Database  # noqa: E402
from berth.snapshots import open_snapshotter  # noqa: E402


def make_rootfs_tar(path: str, total_mb: int) -> None:
    rnd = os.urandom(1 << 20)
    text = (b"berth benchmark line of fairly compressible text 0123456789\n" * 20000)[: 1 << 20]
    with tarfile.open(path, "w") as tf:
        for i in range(total_mb):
            data = rnd if i % 2 else text
            ti = tarfile.TarInfo(f"data/d{i % 10}/f{i:04d}")
            ti.size = len(data)
            ti.mode = 0o644
            tf.addfile(ti, io.BytesIO(data))


def open_store(base: str, driver: str) -> ImageStore:
    os.makedirs(base, exist_ok=True)
    db = Database(os.path.join(base, "meta.db"))
    return ImageStore(db, ContentStore(os.path.join(base, "content")),
                      open_snapshotter(os.path.join(base, "snap"), db, driver))


def drop_store(store: ImageStore, base: str) -> None:
    for info in sorted(store.snapshotter.walk(), key=lambda i: i.parent == ""):
        try:
            store.snapshotter.remove(info.key)
        except Exception:
            pass
    store.db.close()
    shutil.rmtree(base, ignore_errors=True)


class Dockerd:
    def __init__(self, base: str) -> None:
        self.base = base
        self.sock = os.path.join(base, "d.sock")
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}")
        self.proc: subprocess.Popen | None = None

    def start(self) -> str | None:
        if shutil.which("dockerd") is None:
            return "dockerd is not installed"
        with open(os.path.join(self.base, "dockerd.log"), "wb") as log:
            self.proc = subprocess.Popen(
                ["dockerd", "--data-root", os.path.join(self.base, "data"), "--exec-root",
                 os.path.join(self.base, "exec"), "--pidfile", os.path.join(self.base, "d.pid"),
                 "-H", f"unix://{self.sock}", "--bridge", "none", "--iptables=false", "--ip6tables=false"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and self.proc.poll() is None:
            if os.path.exists(self.sock) and self.docker("version", check=False).returncode == 0:
                return None
            time.sleep(0.3)
        self.stop()
        return "dockerd did not start"

    def docker(self, *args: str, check: bool = True, stdin=None) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", *args], env=self.env, stdin=stdin, capture_output=True,
                              timeout=600, check=check)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with open("/proc/self/mountinfo") as f:
            mps = [line.split()[4] for line in f]
        for mp in sorted((m for m in mps if m.startswith(self.base + "/")), key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--driver", default="overlay")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="berth-bench-saveload-")
    dockerd = Dockerd(os.path.join(work, "docker"))
    os.makedirs(dockerd.base)
    try:
        rootfs = os.path.join(work, "rootfs.tar")
        make_rootfs_tar(rootfs, args.mb)
        src = open_store(os.path.join(work, "src"), args.driver)
        with open(rootfs, "rb") as f:
            img = import_image(src, f, ref="bench/saveload:1")
        archive = os.path.join(work, "berth.tar")
        with open(archive, "wb") as f:
            save(src, ["bench/saveload:1"], f)
        print(f"image {img.id[:19]}  archive {os.path.getsize(archive) / 1e6:.1f} MB")
        why = dockerd.start()
        if why:
            print(f"docker: skipped ({why})")
        else:
            with open(archive, "rb") as f:
                dockerd.docker("load", stdin=f)
        results: dict[str, list[float]] = {k: [] for k in ("berth save", "docker save", "berth load+unpack",
                                                           "berth load", "docker load")}
        for r in range(args.rounds):
            out = os.path.join(work, f"out-{r}.tar")

            def berth_save(out=out) -> None:
                with open(out, "wb") as f:
                    save(src, ["bench/saveload:1"], f)
                    f.flush()
                    os.fsync(f.fileno())

            results["berth save"].append(timed(berth_save))
            os.unlink(out)
            for unpack in (False, True):
                base = os.path.join(work, f"dst-{r}-{unpack}")
                dst = open_store(base, args.driver)

                def berth_load(dst=dst, unpack=unpack) -> None:
                    with open(archive, "rb") as f:
                        res = load(dst, f)
                    if unpack:
                        dst.unpack(res.images[0].id)
                    os.sync()

                results["berth load+unpack" if unpack else "berth load"].append(timed(berth_load))
                drop_store(dst, base)
            if not why:
                results["docker save"].append(timed(lambda out=out: (
                    dockerd.docker("save", "-o", out, "bench/saveload:1"), os.sync())))
                os.unlink(out)
                dockerd.docker("rmi", "-f", "bench/saveload:1")
                with open(archive, "rb") as f:
                    results["docker load"].append(
                        timed(lambda f=f: (dockerd.docker("load", stdin=f), os.sync())))
        med = {k: statistics.median(v) for k, v in results.items() if v}
        for k, v in med.items():
            print(f"{k:>18}: {v:7.3f} s  ({args.mb / v:7.1f} MB/s)")
        if "docker save" in med:
            print(f"ratio save  (docker/berth): {med['docker save'] / med['berth save']:.2f}")
            print(f"ratio load  (docker load / berth load+unpack): "
                  f"{med['docker load'] / med['berth load+unpack']:.2f}")
        drop_store(src, os.path.join(work, "src"))
    finally:
        dockerd.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
