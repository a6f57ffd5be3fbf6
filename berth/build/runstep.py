"""RUN: a container made through the Engine (the isolation of ``berth run``), its output streamed
with a byte limit, a watchdog on disk use, and its snapshot's changes diffed into a layer."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
from typing import TYPE_CHECKING

from berth.build.cache import cache_key
from berth.build.instructions import PROXY_ARGS
from berth.build.state import BuildFailed, Stage
from berth.errors import BerthError

if TYPE_CHECKING:
    from berth.build.builder import Builder


class _RunIO:
    """The attach sink of a RUN container: streams its output, stops it when it floods."""

    tty = False
    detached = False

    def __init__(self, b: Builder, cid: str) -> None:
        self.b = b
        self.cid = cid
        self.total = 0
        self.dec = {1: codecs.getincrementaldecoder("utf-8")("replace"),
                    2: codecs.getincrementaldecoder("utf-8")("replace")}

    async def read_stdin(self) -> bytes:
        return b""

    async def write(self, stream: int, data: bytes) -> None:
        if self.b.killed.get(self.cid):
            return
        self.total += len(data)
        if self.total > self.b.limits.max_output:
            await self.b.stop_run(self.cid, f"RUN output exceeded {self.b.limits.max_output} bytes")
            return
        text = self.dec.get(stream, self.dec[1]).decode(data)
        if text:
            self.b.say(text)


async def run_step(b: Builder, st: Stage, argv: list[str], shown: str, *,
                    network: str | None = None) -> None:
    """RUN: a container through the Engine, its snapshot diffed into a layer."""
    args = {k: v for k, v in st.args.items() if v is not None}
    hist_args = {k: v for k, v in args.items() if k not in PROXY_ARGS}
    prefix = ""
    if hist_args:
        prefix = f"|{len(hist_args)} " + " ".join(f"{k}={v}" for k, v in sorted(hist_args.items())) + " "
    text = prefix + shown
    parent = b._ensure_image(st)
    key = cache_key(parent, "RUN " + text, hist_args)
    if b._cached(st, key):
        b._done(st)
        return
    cfg = st.raw.get("config") or {}
    env = list(cfg.get("Env") or [])
    have = {e.split("=", 1)[0] for e in env}
    for k, v in sorted(args.items()):
        if k not in have:
            env.append(f"{k}={v}")
    for k in sorted(PROXY_ARGS):
        if k in b.build_args and k not in have and k not in args:
            env.append(f"{k}={b.build_args[k]}")
    net = network or b.network
    if net == "default":
        net = b.network
    config = {
        "Image": parent,
        "Cmd": argv,
        "Entrypoint": [],
        "Env": env,
        "WorkingDir": cfg.get("WorkingDir") or "",
        "User": cfg.get("User") or "",
        "AttachStdout": True,
        "AttachStderr": True,
        "Labels": {"berth.build": "1"},
        "HostConfig": {"NetworkMode": net, "PidsLimit": b.limits.pids, "LogConfig": {"Type": "none"}},
    }
    if net == "host":
        # the host's name, in a UTS namespace of its own (the engine cannot set a hostname without one)
        config["Hostname"] = os.uname().nodename
    eng = b.engine
    cid = eng.create_container(None, config)["Id"]
    b.say(f" ---> Running in {cid[:12]}\n")
    ok = False
    b.active.add(cid)
    try:
        io = _RunIO(b, cid)
        attach = asyncio.create_task(eng.attach(cid, io, stdin=False, stdout=True, stderr=True, logs=False,
                                                stream=True))
        waiter = await eng.wait(cid, "next-exit")
        await asyncio.sleep(0.02)
        snap_key = eng.containers.get(cid).snapshot_key
        try:
            await eng.start(cid)
        except BerthError as e:
            attach.cancel()
            with contextlib.suppress(BaseException):
                await attach
            raise BuildFailed(f"The command '{text}' could not start: {e}", 127) from None
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError()  # cancelled while the engine was starting it
        dog = asyncio.create_task(b._watchdog(cid, snap_key))
        try:
            res = await waiter
        finally:
            dog.cancel()
            with contextlib.suppress(BaseException):
                await dog
        try:
            await asyncio.wait_for(attach, 10)
        except (TimeoutError, BerthError, OSError):
            attach.cancel()
        code = int(res.get("StatusCode", 1))
        if cid in b.killed:
            raise BuildFailed(b.killed[cid], code)
        if code != 0:
            raise BuildFailed(f"The command '{text}' returned a non-zero code: {code}", code)
        await asyncio.to_thread(b._scrub, snap_key)
        layer = await asyncio.to_thread(b._diff, snap_key)
        iid = b._commit(st, dict(cfg), text, layer)
        b.cache.put(key, iid)
        ok = True
        if b.rm or b.force_rm:  # the container goes: its snapshot becomes the layer's
            await asyncio.to_thread(b.adopt, snap_key, st)
    except asyncio.CancelledError:
        b.killed.setdefault(cid, "build cancelled")  # the client went away: do not leave it running
        raise
    finally:
        b.active.discard(cid)
        if b.force_rm or (ok and b.rm) or cid in b.killed:
            with contextlib.suppress(BerthError):
                await asyncio.shield(eng.remove(cid, force=True, volumes=True))
            b.say(f" ---> Removed intermediate container {cid[:12]}\n")
    b._done(st)
