"""Ingest throughput of a 100 MB blob into the ContentStore vs `cp` + `sha256sum`.

Usage: .venv/bin/python bench/storage/content.py [--size-mb 100] [--runs 3] [--dir DIR]
Prints the best of N runs for each and the ratio berth / baseline (lower is better). The store
fsyncs the blob before the rename; the baseline does not, so a third line shows `cp` + `sha256sum`
+ `sync -f` for a like-for-like comparison.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def best(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    from berth.content import ContentStore
    from berth.oci.digest import Hasher

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=None, help="scratch directory (default: a new temp dir)")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="berth-bench-content-", dir=args.dir)
    try:
        src = os.path.join(work, "src")
        h = Hasher()
        with open(src, "wb") as f:
            for _ in range(args.size_mb):
                chunk = os.urandom(1 << 20)
                h.update(chunk)
                f.write(chunk)
        digest, size = h.digest(), h.size
        store = ContentStore(os.path.join(work, "store"))
        dst = os.path.join(work, "copy")

        def ingest() -> None:
            if store.exists(digest):
                store.delete(digest)
            with open(src, "rb", buffering=0) as f:
                assert store.write_from(f, "bench", digest, size) == digest

        def baseline(sync: bool) -> None:
            if os.path.exists(dst):
                os.unlink(dst)
            subprocess.run(["cp", src, dst], check=True)
            subprocess.run(["sha256sum", src], check=True, stdout=subprocess.DEVNULL)
            if sync:
                subprocess.run(["sync", "-f", dst], check=True)

        ingest()  # warm the page cache for both
        t_ingest = best(ingest, args.runs)
        t_base = best(lambda: baseline(False), args.runs)
        t_sync = best(lambda: baseline(True), args.runs)
        mb = size / 1e6
        print(f"berth ingest             {t_ingest:7.3f} s  {mb / t_ingest:8.1f} MB/s")
        print(f"cp + sha256sum           {t_base:7.3f} s  {mb / t_base:8.1f} MB/s")
        print(f"cp + sha256sum + sync -f {t_sync:7.3f} s  {mb / t_sync:8.1f} MB/s")
        print(f"ratio berth / (cp + sha256sum):        {t_ingest / t_base:.2f}")
        print(f"ratio berth / (cp + sha256sum + sync): {t_ingest / t_sync:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
