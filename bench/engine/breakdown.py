"""Where the time of one ``run --rm --network none busybox true`` goes, inside the engine.

    .venv/bin/python bench/engine/breakdown.py [-n 20] [--network none|bridge]

Runs an Engine in-process (own data root, bridge, nft table, cgroup parent; cleaned up at the end)
and times create -> start -> exit -> remove as the API handlers drive them, with each step of
``Engine._start``/``_remove`` wrapped in a timer. Prints the median of each step in ms. The HTTP
and CLI share is what ``bench/engine/run.py`` measures on top of this.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

T: dict[str, list[float]] = collections.defaultdict(list)


def timer(name: str, fn):
    if asyncio.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def aw(*a, **kw):
            t = time.perf_counter()
            try:
                return await fn(*a, **kw)
            finally:
                T[name].append(time.perf_counter() - t)
        return aw

    @functools.wraps(fn)
    def w(*a, **kw):
        t = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            T[name].append(time.perf_counter() - t)
    return w


def instrument(eng) -> None:
    from berth.engine import engine as engmod
    from berth.engine import monclient, specgen, users

    for name in ("_mount_rootfs", "_setup_network", "_write_etc", "_stop_cleanup", "_cleanup_container",
                 "_destroy_cgroup"):
        if hasattr(eng, name):
            setattr(eng, name, timer(f"  {name}", getattr(eng, name)))
    eng.forkserver.spawn = timer("  forkserver.spawn (fork monitor + runtime create)", eng.forkserver.spawn)
    eng.snapshotter.prepare = timer("  snapshotter.prepare", eng.snapshotter.prepare)
    eng.snapshotter.remove = timer("  snapshotter.remove", eng.snapshotter.remove)
    users.resolve = timer("  users.resolve", users.resolve)
    specgen.build_spec = timer("  specgen.build_spec", specgen.build_spec)
    orig_req = monclient.request

    async def req(path, r, timeout=60):
        t = time.perf_counter()
        try:
            rep = await orig_req(path, r, timeout)
            if r.get("op") == "wait" and rep.get("finished_at"):
                T["  init exit -> engine has the exit record"].append(time.time() - rep["finished_at"])
            return rep
        finally:
            if r.get("op") == "start":
                T["  monitor start op (runtime start)"].append(time.perf_counter() - t)
    engmod.monclient.request = req
    eng._on_exit = timer("  _on_exit (record exit, auto-remove)", eng._on_exit)
    eng.containers.save_state = timer("  containers.save_state (sqlite)", eng.containers.save_state)


async def one(eng, net: str) -> None:
    t0 = time.perf_counter()
    cfg = {"Image": "busybox", "Cmd": ["true"], "AttachStdout": True, "AttachStderr": True,
           "HostConfig": {"NetworkMode": net, "AutoRemove": True}}
    cid = eng.create_container(None, cfg)["Id"]
    t1 = time.perf_counter()
    fut = await eng.wait(cid, "removed")
    await eng.start(cid)
    t2 = time.perf_counter()
    await fut
    t3 = time.perf_counter()
    T["create_container"].append(t1 - t0)
    T["start"].append(t2 - t1)
    T["exit + auto-remove (wait removed)"].append(t3 - t2)
    T["TOTAL create..removed"].append(t3 - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--network", default="none")
    args = ap.parse_args()
    from berth.config import Config
    from berth.engine.engine import Engine
    from berth.images.bootstrap import busybox_image

    tmp = tempfile.mkdtemp(prefix="bbd-")
    tag = uuid.uuid4().hex[:8]
    cfg = Config(bridge=f"bb{tag}", nft_table=f"berth_b{tag}", data_root=f"{tmp}/data",
                 exec_root=f"{tmp}/exec", runtime_root=f"{tmp}/rt", cgroup_parent=f"berth-bench-{tag}",
                 socket=f"{tmp}/s.sock")
    eng = Engine(cfg)

    async def go():
        await eng.restore()
        busybox_image(eng.images)
        await one(eng, args.network)  # warm-up
        T.clear()
        instrument(eng)
        for _ in range(args.n):
            await one(eng, args.network)
        for c in list(eng.containers.all()):
            await eng.remove(c.id, force=True)
        await eng.shutdown()

    try:
        asyncio.run(go())
    finally:
        if eng.net is not None:
            eng.net.teardown(remove_bridges=True)
        for ctrl in os.listdir("/sys/fs/cgroup"):
            p = os.path.join("/sys/fs/cgroup", ctrl, cfg.cgroup_parent)
            if os.path.isdir(p):
                for d in sorted((dp for dp, _, _ in os.walk(p)), key=len, reverse=True):
                    try:
                        os.rmdir(d)
                    except OSError:
                        pass
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"engine in-process, --network {args.network}, {args.n} runs: median ms (samples)")
    for k, v in T.items():
        print(f"  {k:<58} {statistics.median(v) * 1000:7.2f}  ({len(v)})")


if __name__ == "__main__":
    main()
