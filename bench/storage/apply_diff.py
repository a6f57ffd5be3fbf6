"""Benchmark: berth layer apply vs ``tar -xf`` and berth layer diff vs ``tar -cf``.

Apply: a generated layer (5k files, ~200 MB of mixed sizes) into a fresh tmp dir.
Diff: an upper dir of 10k files into a tar file, uncompressed, gzip and (when the zstd binary is
there) zstd, each against GNU tar with the same compression. Runs alternate; medians and ratios are
printed (ratio = tar time / berth time, so >= 1.0 means berth is at least as fast). The machine's
other load matters: berth overlaps hashing and writing with the walk on a second core, tar is
single-threaded, so a busy second core lowers berth's ratio; compare runs on an idle machine.

    .venv/bin/python bench/storage/apply_diff.py [--rounds 5] [--files 5000] [--mb 200] [--dir /dev/shm]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from berth.archive import apply_layer, write_diff  # noqa: E402


def make_tree(root: str, files: int, total_bytes: int, seed: int) -> None:
    rnd = random.Random(seed)
    weights = [rnd.paretovariate(1.2) for _ in range(files)]
    scale = total_bytes / sum(weights)
    blob = os.urandom(8 << 20)
    for i, w in enumerate(weights):
        d = os.path.join(root, f"d{i % 100:03d}", f"s{i % 7}")
        os.makedirs(d, exist_ok=True)
        size = int(w * scale)
        with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
            off = rnd.randrange(0, len(blob) - 1)
            while size > 0:
                chunk = blob[off:off + size]
                f.write(chunk)
                size -= len(chunk)
                off = 0
        if i % 50 == 0:
            os.symlink(f"f{i:05d}", os.path.join(d, f"l{i:05d}"))


def timed(fn) -> float:
    os.sync()  # writeback of the previous run must not land in this one
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_apply(work: str, rounds: int, files: int, mb: int) -> None:
    src = os.path.join(work, "apply-src")
    make_tree(src, files, mb << 20, 1)
    layer = os.path.join(work, "layer.tar")
    subprocess.run(["tar", "-cf", layer, "-C", src, "."], check=True)
    size = os.path.getsize(layer)
    shutil.rmtree(src)
    tar_t, berth_t = [], []
    for r in range(rounds):
        for which in (("tar", "berth") if r % 2 == 0 else ("berth", "tar")):
            dst = os.path.join(work, f"dst-{which}-{r}")
            os.mkdir(dst)
            if which == "tar":
                tar_t.append(timed(lambda d=dst: subprocess.run(["tar", "-xf", layer, "-C", d], check=True)))
            else:
                def run(d=dst) -> None:
                    with open(layer, "rb") as f:
                        apply_layer(f, d)
                berth_t.append(timed(run))
            shutil.rmtree(dst)
    report(f"apply {files} files, {size / 1e6:.0f} MB tar", tar_t, berth_t)


def bench_diff(work: str, rounds: int) -> None:
    upper = os.path.join(work, "upper")
    make_tree(upper, 10_000, 60 << 20, 2)
    modes: list[tuple[str | None, list[str]]] = [(None, ["-cf"]), ("gzip", ["-czf"])]
    if shutil.which("zstd"):
        modes.append(("zstd", ["--zstd", "-cf"]))
    for comp, flag in modes:
        tar_t, berth_t = [], []
        for r in range(rounds):
            for which in (("tar", "berth") if r % 2 == 0 else ("berth", "tar")):
                out = os.path.join(work, f"out-{which}.tar")
                if which == "tar":
                    cmd = ["tar", *flag, out, "-C", upper, "."]
                    tar_t.append(timed(lambda c=cmd: subprocess.run(c, check=True)))
                else:
                    def run(o=out, c=comp) -> None:
                        with open(o, "wb") as f:
                            write_diff(upper, f, whiteout_mode="overlay", compression=c)
                    berth_t.append(timed(run))
                os.unlink(out)
        report(f"diff 10000 files, 60 MB, {comp or 'uncompressed'} (tar {' '.join(flag)})", tar_t, berth_t)


def report(what: str, tar_t: list[float], berth_t: list[float]) -> None:
    t, b = statistics.median(tar_t), statistics.median(berth_t)
    print(f"{what}: tar {t * 1000:.0f} ms, berth {b * 1000:.0f} ms, ratio tar/berth {t / b:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--only", choices=("apply", "diff"))
    ap.add_argument("--dir", default=None, help="where to work (default: the tmp dir; /dev/shm = CPU-bound)")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="berth-bench-archive-", dir=a.dir)
    try:
        if a.only != "diff":
            bench_apply(work, a.rounds, a.files, a.mb)
        if a.only != "apply":
            bench_diff(work, a.rounds)
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
