"""`berth-runtime run` against `runc run` on the same busybox bundle running `true`.

    .venv/bin/python bench/runtime/run.py [-n 20] [--runtime PATH]

Alternates the two runtimes N times each, prints the medians, the ratio, and a floor: the cost
of starting the interpreter and importing the runtime's modules (`--version`), which no
container set-up can go below.
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


def _time(cmd: list[str]) -> float:
    t = time.perf_counter()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {p.stderr.decode()}")
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--runtime", default=None, help="berth-runtime executable")
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
        berth, runc, floor = [], [], []
        for i in range(args.n + 1):  # the first round warms caches and is discarded
            b = _time([rt, "--root", f"{tmp}/berth", "run", "-b", bundle, f"b{i}"])
            r = _time(["runc", "--root", f"{tmp}/runc", "run", "-b", bundle, f"r{i}"])
            v = _time([rt, "--version"])
            if i:
                berth.append(b)
                runc.append(r)
                floor.append(v)
        mb, mr, mf = (statistics.median(x) * 1000 for x in (berth, runc, floor))
        print(f"runs: {args.n} each, alternating")
        print(f"runc run          median {mr:6.1f} ms")
        print(f"berth-runtime run median {mb:6.1f} ms   ratio {mb / mr:.2f}x")
        print(f"floor (interpreter start + cli import, --version) median {mf:6.1f} ms")
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
