"""`berth-runtime run` against `runc run` on the same busybox bundle running `true`.

    .venv/bin/python bench/runtime/run.py [-n 30] [--runtime PATH] [--cold-gap 0.1]

Alternates the two runtimes N times each and prints the medians and the ratio (goal: <= 1.2x),
twice: back to back, and "cold", with a pause before each run so that the kernel's cgroup attach
lock is idle again (the first cgroup.procs write after a quiet period waits for an RCU grace
period, ~10 ms; a run shortly after another one does not pay it).

It also prints the floor, what no container set-up written in Python can go below:
  * interpreter start: `python -I -S -c pass` (the entry point runs `python -I -S`);
  * + CLI import: `berth-runtime --version` (cli.py and its few stdlib imports);
  * kernel: `unshare -fpmuin true` (new pid/mount/uts/ipc/net namespaces, fork, exec), which both
    runtimes pay as well, before any mount, cgroup, capability or seccomp work.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)


def _runtime(tmp: str, given: str | None) -> str:
    if given:
        return given
    from tests.e2e.test_runtime_support import runtime_path

    return runtime_path(tmp)


def _time(cmd: list[str], gap: float = 0.0) -> float:
    if gap:
        time.sleep(gap)
    t = time.perf_counter()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {p.stderr.decode()}")
    return dt


def _median_ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=30)
    ap.add_argument("--runtime", default=None, help="berth-runtime executable")
    ap.add_argument("--cold-gap", type=float, default=0.1, help="pause before each cold run (s); 0 skips")
    args = ap.parse_args()
    from berth.oci.spec import default_spec
    from tests.helpers import make_busybox_rootfs

    tmp = tempfile.mkdtemp(prefix="berth-bench-")
    try:
        bundle = os.path.join(tmp, "bundle")
        make_busybox_rootfs(os.path.join(bundle, "rootfs"))
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(default_spec(["true"]), f)
        rt = _runtime(tmp, args.runtime)
        modes = [("back to back", 0.0)] + ([(f"cold ({args.cold_gap * 1000:.0f} ms pause)", args.cold_gap)]
                                          if args.cold_gap else [])
        results = {}
        k = 0
        for name, gap in modes:
            berth, runc = [], []
            for i in range(args.n + 1):  # the first round warms caches and is discarded
                k += 1
                b = _time([rt, "--root", f"{tmp}/berth", "run", "-b", bundle, f"b{k}"], gap)
                r = _time(["runc", "--root", f"{tmp}/runc", "run", "-b", bundle, f"r{k}"], gap)
                if i:
                    berth.append(b)
                    runc.append(r)
            results[name] = (_median_ms(runc), _median_ms(berth))
        py, ver, ns = [], [], []
        for _ in range(args.n):
            py.append(_time([sys.executable, "-I", "-S", "-c", "pass"]))
            ver.append(_time([rt, "--version"]))
            ns.append(_time(["unshare", "-fpmuin", "true"]))
        print(f"runs: {args.n} of each, runc and berth-runtime alternating; medians")
        for name, (mr, mb) in results.items():
            print(f"{name}:")
            print(f"  runc run            {mr:6.1f} ms")
            print(f"  berth-runtime run   {mb:6.1f} ms   ratio {mb / mr:.2f}x (goal <= 1.20x)")
        print("floor:")
        print(f"  interpreter start (python -I -S -c pass)                 {_median_ms(py):6.1f} ms")
        print(f"  + CLI import (berth-runtime --version)                   {_median_ms(ver):6.1f} ms")
        print(f"  kernel: namespaces + fork + exec (unshare -fpmuin true)  {_median_ms(ns):6.1f} ms")
    finally:
        for d in ("berth", "runc"):
            for cid in os.listdir(os.path.join(tmp, d)) if os.path.isdir(os.path.join(tmp, d)) else []:
                if not cid.startswith("."):
                    exe = "runc" if d == "runc" else rt
                    subprocess.run([exe, "--root", f"{tmp}/{d}", "delete", "-f", cid])
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
