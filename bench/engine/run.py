"""Benchmark: the engine against Docker (and Podman): ``run --rm``, memory per container, ``ps``.

    .venv/bin/python bench/engine/run.py [-n 15] [--containers 50] [--skip-memory] [--skip-bridge]

Everything runs private: a berthd (own data root, socket, bridge, nft table, cgroup parent) that
bootstraps busybox; a dockerd from Debian's docker.io (own data root, exec root, pid file, socket,
its own bridge ``bk<tag>``, ``--iptables=false``) that ``docker load``s the same busybox tar saved
from berth; podman with its own ``--root/--runroot`` (cgroupfs, file events) importing that tar.
Every process the bench starts is stopped by pid at the end, also on Ctrl-C or failure.

Measured, alternating the engines in each round (wall-clock of the CLI command):
  * ``run --rm --network none busybox true``: berth, docker, podman (goal berth <= 0.25x docker);
  * ``run --rm busybox true`` on the default bridge: berth vs docker (goal <= 0.25x); the network
    set-up cost is reported on its own as (default network - none) for each engine;
  * memory per running container over N ``sleep 1000`` containers: PSS of the per-container
    processes (berth: the monitor; docker: containerd-shim-runc-v2; podman: conmon; the
    container's own processes are not counted) plus the daemons' PSS growth, divided by N
    (goal berth <= 0.5x docker);
  * ``ps`` with those N containers running (goal <= 1.0x docker).

``berth run`` is used when the berth CLI has it; otherwise the docker CLI against berthd's socket
drives berth, and the output says so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
# the -I -S wrapper scripts/setup.sh writes (docs/design/entry-points.md); pip's console script runs
# site and the editable finder (~10 ms more per command)
BERTH = next(p for p in (os.path.join(REPO, ".venv", "berth-bin", "berth"),
                          os.path.join(REPO, ".venv", "bin", "berth")) if os.path.exists(p))


# ---------------------------------------------------------------- engines
class Berth:
    name = "berth"

    def __init__(self, base: str) -> None:
        from tests.e2e.daemon_fixture import Daemon

        os.makedirs(base, exist_ok=True)
        self.d = Daemon(base)
        self.env = dict(os.environ)
        self.started = False
        self.cli = "berth"

    def start(self) -> str | None:
        self.d.start()
        self.started = True
        self.request("POST", "/berth/images/bootstrap?name=busybox")
        has_run = subprocess.run([BERTH, "run", "--help"], capture_output=True).returncode == 0
        if not has_run:
            self.cli = "docker CLI -> berthd (berth has no 'run' yet)"
        return None

    def request(self, method: str, path: str, out: str | None = None) -> bytes:
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
        if resp.status >= 300:
            raise SystemExit(f"berthd {method} {path}: {resp.status} {resp.read()[:500]!r}")
        body = b""
        if out is None:
            body = resp.read()
        else:
            with open(out, "wb") as f:
                shutil.copyfileobj(resp, f)
        conn.close()
        return body

    def cmd(self, *args: str) -> list[str]:
        if args and args[0] == "run" and self.cli != "berth":
            return ["docker", "-H", self.d.url, *args]
        return [BERTH, "-H", self.d.url, *args]

    def daemon_pids(self) -> list[int]:
        """berthd and its fork server."""
        if self.d.proc is None:
            return []
        return [self.d.proc.pid, *_children(self.d.proc.pid)]

    def container_pids(self) -> list[tuple[int, int]]:
        """(monitor pid, init pid) per running container."""
        out = []
        root = os.path.join(self.d.exec_root, "containers")
        for cid in os.listdir(root) if os.path.isdir(root) else []:
            try:
                with open(os.path.join(root, cid, "monitor.json")) as f:
                    mon = json.load(f)
            except (OSError, ValueError):
                continue
            info = json.loads(self.request("GET", f"/containers/{cid}/json"))
            out.append((int(mon["pid"]), int(info["State"]["Pid"] or 0)))
        return out

    def stop(self) -> None:
        if self.started:
            self.d.cleanup()


class Docker:
    name = "docker"

    def __init__(self, base: str) -> None:
        self.base = base
        os.makedirs(base, exist_ok=True)
        self.sock = os.path.join(base, "d.sock")
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}",
                        DOCKER_CONFIG=os.path.join(base, "cfg"))
        self.proc: subprocess.Popen | None = None
        self.bridge = "bk" + uuid.uuid4().hex[:8]
        self.cli = "docker"

    def start(self) -> str | None:
        if shutil.which("dockerd") is None or shutil.which("docker") is None:
            return "dockerd is not installed"
        subnet = _free_subnet()
        subprocess.run(["ip", "link", "add", self.bridge, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", subnet, "dev", self.bridge], check=True)
        subprocess.run(["ip", "link", "set", self.bridge, "up"], check=True)
        with open(os.path.join(self.base, "dockerd.log"), "wb") as log:
            self.proc = subprocess.Popen(
                ["dockerd", "--data-root", os.path.join(self.base, "data"), "--exec-root",
                 os.path.join(self.base, "exec"), "--pidfile", os.path.join(self.base, "d.pid"),
                 "-H", f"unix://{self.sock}", "--bridge", self.bridge, "--iptables=false",
                 "--ip6tables=false", "--ip-masq=false"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and self.proc.poll() is None:
            if os.path.exists(self.sock) and subprocess.run(["docker", "version"], env=self.env,
                                                            capture_output=True).returncode == 0:
                return None
            time.sleep(0.3)
        tail = open(os.path.join(self.base, "dockerd.log"), errors="replace").read()[-600:]
        self.stop()
        return "dockerd did not start: " + tail.strip().replace("\n", " | ")

    def cmd(self, *args: str) -> list[str]:
        return ["docker", *args]

    def daemon_pids(self) -> list[int]:
        """dockerd and the containerd it started (shims are counted per container)."""
        if self.proc is None:
            return []
        return [self.proc.pid] + [p for p in _children(self.proc.pid) if "containerd" == _comm(p)]

    def container_pids(self) -> list[tuple[int, int]]:
        out = []
        for p in _all_pids():
            if _comm(p).startswith("containerd-shim") and self.base in _cmdline(p):
                kids = _children(p)
                out.append((p, kids[0] if kids else 0))
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            subprocess.run("docker rm -f $(docker ps -aq) >/dev/null 2>&1", shell=True, env=self.env)
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # shims of this dockerd that outlived it (their cmdline names our exec root)
        for p, _ in self.container_pids():
            _kill(p)
        _unmount_under(self.base)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


class Podman:
    name = "podman"

    def __init__(self, base: str) -> None:
        self.base = base
        os.makedirs(base, exist_ok=True)
        self.env = dict(os.environ)
        self.root = ["--root", os.path.join(base, "root"), "--runroot", os.path.join(base, "runroot"),
                     "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                     "--tmpdir", os.path.join(base, "tmp")]
        self.cli = "podman"

    def start(self) -> str | None:
        return None if shutil.which("podman") else "podman is not installed"

    def cmd(self, *args: str) -> list[str]:
        if args and args[0] == "run":  # podman's default nofile (1048576) is above this host's hard limit
            args = ("run", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", *args[1:])
        return ["podman", *self.root, *args]

    def daemon_pids(self) -> list[int]:
        return []

    def container_pids(self) -> list[tuple[int, int]]:
        out = []
        for p in _all_pids():
            if _comm(p) == "conmon" and self.base in _cmdline(p):
                kids = _children(p)
                out.append((p, kids[0] if kids else 0))
        return out

    def stop(self) -> None:
        subprocess.run(self.cmd("rm", "-af", "-t", "0"), capture_output=True, cwd=self.base)
        subprocess.run(self.cmd("system", "reset", "-f"), capture_output=True, cwd=self.base)
        for p, _ in self.container_pids():
            _kill(p)
        _unmount_under(self.base)


# ---------------------------------------------------------------- /proc helpers
def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    out = []
    for tid in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else []:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def _mem(pid: int) -> tuple[int, int]:
    """(PSS, RSS) in KiB."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _free_subnet() -> str:
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    for third in range(200, 255):
        net = f"10.{third}.77."
        if net not in routes:
            return net + "1/24"
    raise SystemExit("no free 10.x.77.0/24 subnet for docker's bridge")


CGROUP_PARENTS = ("docker", "libpod_parent")


def _cgroup_parents() -> set[str]:
    """The top-level cgroups dockerd and podman make (removed at the end if the bench made them)."""
    out = set()
    for ctrl in os.listdir("/sys/fs/cgroup"):
        for name in CGROUP_PARENTS:
            p = os.path.join("/sys/fs/cgroup", ctrl, name)
            if os.path.isdir(p):
                out.add(p)
    return out


def _remove_cgroups(paths: set[str]) -> None:
    for top in paths:
        for d in sorted((dp for dp, _, _ in os.walk(top)), key=len, reverse=True):
            try:
                os.rmdir(d)
            except OSError:
                pass


def _unmount_under(base: str) -> None:
    with open("/proc/self/mountinfo") as f:
        mps = [line.split()[4] for line in f]
    for mp in sorted((m for m in mps if m.startswith(base + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)


def timed(cmd: list[str], env: dict, cwd: str | None = None) -> float:
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, timeout=300, cwd=cwd)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr.decode()[-2000:]}")
    return dt


# ---------------------------------------------------------------- measurements
def bench_runs(engines: list, rounds: int, extra: list[str], label: str, work: str) -> dict[str, float]:
    res: dict[str, list[float]] = {e.name: [] for e in engines}
    for e in engines:  # warm-up (page cache, first network set-up)
        timed(e.cmd("run", "--rm", *extra, "busybox", "true"), e.env, cwd=work)
    for _ in range(rounds):
        for e in engines:
            res[e.name].append(timed(e.cmd("run", "--rm", *extra, "busybox", "true"), e.env, cwd=work))
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"\n{label}  ({rounds} rounds, alternating; median / min / max, ms)")
    for k, v in res.items():
        print(f"  {k:<8} {med[k] * 1000:8.1f} {min(v) * 1000:8.1f} {max(v) * 1000:8.1f}")
    return med


def bench_memory(e, n: int, work: str) -> dict | None:
    before = {p: _mem(p)[0] for p in e.daemon_pids()}
    for i in range(n):
        timed(e.cmd("run", "-d", "--network", "none", "--name", f"bench-sleep-{i}", "busybox",
                    "sleep", "1000"), e.env, cwd=work)
    time.sleep(1.0)
    pairs = e.container_pids()
    per = [_mem(m) for m, _ in pairs]
    after = {p: _mem(p)[0] for p in e.daemon_pids()}
    growth = sum(after.get(p, 0) - before.get(p, 0) for p in after)
    found = len(pairs)
    if found == 0:
        return None
    pss = sum(p for p, _ in per)
    rss = sum(r for _, r in per)
    # growth may be negative: the fork server's pages, shared with every monitor, count less to
    # its own PSS; the sum is the honest total
    return {"n": n, "found": found, "pss": pss, "rss": rss, "growth": growth, "per": (pss + growth) / n}


def bench_ps(engines: list, rounds: int, work: str) -> dict[str, float]:
    res: dict[str, list[float]] = {e.name: [] for e in engines}
    for e in engines:
        timed(e.cmd("ps"), e.env, cwd=work)
    for _ in range(rounds):
        for e in engines:
            res[e.name].append(timed(e.cmd("ps"), e.env, cwd=work))
    return {k: statistics.median(v) for k, v in res.items()}


def remove_all(e, work: str) -> None:
    out = subprocess.run(e.cmd("ps", "-aq"), env=e.env, capture_output=True, text=True,
                         cwd=work).stdout.split()
    if out:
        subprocess.run(e.cmd("rm", "-f", *out), env=e.env, capture_output=True, cwd=work)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--rounds", type=int, default=15)
    ap.add_argument("--containers", type=int, default=50)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-bridge", action="store_true")
    ap.add_argument("--no-podman", action="store_true")
    args = ap.parse_args()

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    work = tempfile.mkdtemp(prefix="bbe-", dir="/tmp")  # podman wants a short run root
    cgroups_before = _cgroup_parents()
    berth = Berth(os.path.join(work, "berth"))
    docker = Docker(os.path.join(work, "docker"))
    podman = Podman(os.path.join(work, "podman"))
    engines: list = []
    try:
        berth.start()
        engines.append(berth)
        tar = os.path.join(work, "busybox.tar")
        berth.request("GET", "/images/get?names=busybox", out=tar)
        why = docker.start()
        if why:
            print(f"docker: unavailable ({why}); comparing with podman only")
        else:
            subprocess.run(docker.cmd("load", "-i", tar), env=docker.env, check=True, capture_output=True)
            engines.append(docker)
        if not args.no_podman:
            pwhy = podman.start()
            if pwhy:
                print(f"podman: unavailable ({pwhy})")
            else:
                subprocess.run(podman.cmd("load", "-i", tar), env=podman.env, check=True,
                               capture_output=True, cwd=podman.base)
                engines.append(podman)
        print(f"berth is driven by: {berth.cli}")
        print(f"engines: {', '.join(e.name for e in engines)}; dockerd: --iptables=false, own bridge")

        none = bench_runs(engines, args.rounds, ["--network", "none"], "run --rm --network none busybox true",
                          work)
        bridge: dict[str, float] = {}
        bridged = [e for e in engines if e.name != "podman"]
        if not args.skip_bridge:
            bridge = bench_runs(bridged, args.rounds, [], "run --rm busybox true (default bridge network)",
                                work)

        mem: dict[str, dict | None] = {}
        ps: dict[str, float] = {}
        if not args.skip_memory:
            for e in engines:
                mem[e.name] = bench_memory(e, args.containers, work)
            ps = bench_ps(engines, args.rounds, work)
            for e in engines:
                remove_all(e, work)

        # ---------------------------------------------------------------- summary table
        print("\nsummary" + " " * 38 + "berth     docker    podman   berth/docker  goal")
        d = "docker" in none

        def row(label: str, vals: dict, unit: str, goal: str, scale: float = 1000.0) -> None:
            cells = []
            for k in ("berth", "docker", "podman"):
                v = vals.get(k)
                cells.append(f"{v * scale:8.1f}" if v is not None else "       -")
            ok = d and (vals.get("docker") or 0) > 0 and (vals.get("berth") or 0) > 0
            ratio = f"{vals['berth'] / vals['docker']:8.2f}x" if ok else "        -"
            print(f"  {label:<42} {'  '.join(cells)} {unit}   {ratio}   {goal}")

        row("run --rm --network none (median)", none, "ms", "<= 0.25x")
        if bridge:
            row("run --rm, default bridge (median)", bridge, "ms", "<= 0.25x")
            netcost = {k: bridge[k] - none[k] for k in bridge}
            row("  network set-up cost (bridge - none)", netcost, "ms", "")
            if any(v <= 0 for v in netcost.values()):
                print("    (a negative network cost means the load changed between the two series: rerun)")
        if mem:
            per = {k: v["per"] / 1024 for k, v in mem.items() if v}
            row(f"memory per running container ({args.containers})", per, "MiB", "<= 0.5x", scale=1.0)
            for k, v in mem.items():
                if v:
                    print(f"    {k}: {v['found']} per-container processes, PSS {v['pss'] / 1024:.1f} MiB "
                          f"(RSS {v['rss'] / 1024:.1f} MiB), daemon PSS growth {v['growth'] / 1024:.1f} MiB")
                else:
                    print(f"    {k}: per-container processes not found")
        if ps:
            row(f"ps with {args.containers} running (median)", ps, "ms", "<= 1.0x")
    except KeyboardInterrupt:
        print("interrupted; cleaning up")
    finally:
        for e in (podman, docker, berth):
            try:
                e.stop()
            except Exception as ex:  # noqa: BLE001
                print(f"cleanup of {e.name}: {ex}")
        _unmount_under(work)
        _remove_cgroups(_cgroup_parents() - cgroups_before)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
