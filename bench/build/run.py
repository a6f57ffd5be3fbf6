"""Benchmark: ``berth build`` vs Docker's legacy builder (``DOCKER_BUILDKIT=0 docker build``).

A private berthd (own data root and socket) bootstraps busybox; the same image is saved from berth
and ``docker load``-ed into a private dockerd (own data root, exec root, pid file and socket; no
bridge, no iptables; stopped by pid at the end). The Dockerfile (FROM busybox; a RUN writing 2,000
files; COPY of the context; a RUN reading it; ENV; WORKDIR; CMD) is built, alternating in each round:

- cold:   ``build --no-cache``;
- cached: ``build`` of the unchanged context after a warm-up build (every step a cache hit).

Both builders run RUN steps with ``--network none`` (the private dockerd has no bridge). Times are
wall-clock of the CLI command (start-up, context upload, build). Medians are printed with the ratio
berth/docker (goals: cold <= 0.8, cached <= 1.0). If dockerd cannot start, podman (``podman build``,
buildah) is the comparison, and the output says so.

    .venv/bin/python bench/build/run.py [--rounds 5] [--driver overlay]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

DOCKERFILE = """FROM busybox
RUN mkdir /data && cd /data && i=0; while [ $i -lt 2000 ]; do echo "file $i" > f$i; i=$((i+1)); done
COPY . /src/
RUN cat /src/*.txt | wc -c > /src-size && ls /data | wc -l > /data-count
ENV APP_HOME=/src MODE=bench
WORKDIR /src
CMD ["sh", "-c", "cat /src-size /data-count"]
"""


def make_context(path: str) -> None:
    os.makedirs(path)
    with open(os.path.join(path, "Dockerfile"), "w") as f:
        f.write(DOCKERFILE)
    for i in range(50):
        with open(os.path.join(path, f"part{i:02d}.txt"), "w") as f:
            f.write(f"context file {i}\n" * 200)
    with open(os.path.join(path, "blob.bin"), "wb") as f:
        f.write(os.urandom(1 << 20))


class Berthd:
    def __init__(self, base: str, driver: str) -> None:
        from tests.e2e.daemon_fixture import Daemon

        self.d = Daemon(base)
        self.driver = driver
        self.started = False

    def start(self) -> None:
        argv = self.d.argv
        self.d.argv = lambda: [*argv(), "--storage-driver", self.driver]  # type: ignore[method-assign]
        self.d.start()
        self.started = True
        self.request("POST", "/berth/images/bootstrap?name=busybox")

    def request(self, method: str, path: str, out: str | None = None) -> None:
        import http.client
        import socket

        sock_path = self.d.sock

        class Conn(http.client.HTTPConnection):
            def connect(self) -> None:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(sock_path)

        conn = Conn("localhost", timeout=120)
        conn.request(method, path)
        resp = conn.getresponse()
        if resp.status != 200:
            raise SystemExit(f"{method} {path}: {resp.status} {resp.read()[:500]!r}")
        if out is None:
            resp.read()
        else:
            with open(out, "wb") as f:
                shutil.copyfileobj(resp, f)
        conn.close()

    def cmd(self, *args: str) -> list[str]:
        return [os.path.join(REPO, ".venv", "bin", "berth"), "-H", self.d.url, *args]

    def stop(self) -> None:
        if self.started:
            self.d.cleanup()


class Dockerd:
    def __init__(self, base: str) -> None:
        self.base = base
        os.makedirs(base, exist_ok=True)
        self.sock = os.path.join(base, "d.sock")
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}", DOCKER_BUILDKIT="0",
                        DOCKER_CONFIG=os.path.join(base, "cfg"))
        self.proc: subprocess.Popen | None = None

    def start(self) -> str | None:
        if shutil.which("dockerd") is None or shutil.which("docker") is None:
            return "dockerd is not installed"
        with open(os.path.join(self.base, "dockerd.log"), "wb") as log:
            self.proc = subprocess.Popen(
                ["dockerd", "--data-root", os.path.join(self.base, "data"), "--exec-root",
                 os.path.join(self.base, "exec"), "--pidfile", os.path.join(self.base, "d.pid"),
                 "-H", f"unix://{self.sock}", "--bridge", "none", "--iptables=false", "--ip6tables=false"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and self.proc.poll() is None:
            if os.path.exists(self.sock) and subprocess.run(["docker", "version"], env=self.env,
                                                            capture_output=True).returncode == 0:
                return None
            time.sleep(0.3)
        self.stop()
        return "dockerd did not start"

    def cmd(self, *args: str) -> list[str]:
        return ["docker", *args]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        _unmount_under(self.base)


class Podman:
    def __init__(self, base: str) -> None:
        self.base = base
        os.makedirs(base, exist_ok=True)
        self.env = dict(os.environ)
        self.root = ["--root", os.path.join(base, "root"), "--runroot", os.path.join(base, "runroot")]

    def start(self) -> str | None:
        return None if shutil.which("podman") else "podman is not installed"

    def cmd(self, *args: str) -> list[str]:
        return ["podman", *self.root, *args]

    def stop(self) -> None:
        subprocess.run(["podman", *self.root, "system", "reset", "-f"], capture_output=True)
        _unmount_under(self.base)


def _unmount_under(base: str) -> None:
    with open("/proc/self/mountinfo") as f:
        mps = [line.split()[4] for line in f]
    for mp in sorted((m for m in mps if m.startswith(base + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)


def timed(cmd: list[str], env: dict | None = None) -> float:
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, timeout=600)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed ({p.returncode}):\n{p.stderr.decode()[-2000:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--driver", default="overlay")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="berth-bench-build-")
    berth = Berthd(os.path.join(work, "berth"), args.driver)
    other: Dockerd | Podman = Dockerd(os.path.join(work, "docker"))
    name = "docker"
    try:
        os.makedirs(berth.d.base, exist_ok=True)
        ctx = os.path.join(work, "ctx")
        make_context(ctx)
        berth.start()
        why = other.start()
        if why:
            print(f"docker: unavailable ({why}); comparing with podman build instead")
            other = Podman(os.path.join(work, "podman"))
            name = "podman"
            why = other.start()
            if why:
                print(f"podman: unavailable ({why}); berth only")
        archive = os.path.join(work, "busybox.tar")
        berth.request("GET", "/images/get?names=busybox", out=archive)
        if not why:
            subprocess.run(other.cmd("load", "-i", archive), env=other.env, check=True, capture_output=True)
        net = ["--network", "none"]
        builders = {"berth": (berth, os.environ.copy())}
        if not why:
            builders[name] = (other, other.env)
        # warm-up: first builds (page cache, lazy imports), and the state the cached rounds reuse
        for b, env in builders.values():
            timed(b.cmd("build", *net, "-t", "bench/build:warm", ctx), env)
        res: dict[str, list[float]] = {}
        for r in range(args.rounds):
            for who, (b, env) in builders.items():
                res.setdefault(f"{who} cold", []).append(
                    timed(b.cmd("build", *net, "--no-cache", "-t", f"bench/build:cold{r}", ctx), env))
                res.setdefault(f"{who} cached", []).append(
                    timed(b.cmd("build", *net, "-t", "bench/build:warm", ctx), env))
        med = {k: statistics.median(v) for k, v in res.items()}
        print(f"rounds: {args.rounds}, berth storage driver: {args.driver}")
        for k, v in med.items():
            print(f"{k:>14}: {v:7.3f} s   (min {min(res[k]):.3f}, max {max(res[k]):.3f})")
        if name + " cold" in med:
            for kind, goal in (("cold", 0.8), ("cached", 1.0)):
                ratio = med[f"berth {kind}"] / med[f"{name} {kind}"]
                print(f"ratio {kind:<6} berth/{name}: {ratio:5.2f}  (goal <= {goal})")
    finally:
        other.stop()
        berth.stop()
        _unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
