"""The Engine facade end to end: images → container → monitor → runtime → exit, logs, exec."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid

import pytest

from berth.config import Config
from berth.errors import Conflict, InvalidArgument, NotFound, NotModified
from tests.helpers import mounts_under

pytestmark = pytest.mark.root

RUNTIMES = ["berth"] + ([shutil.which("runc")] if shutil.which("runc") else [])


class _IO:
    """A collecting AttachIO."""

    def __init__(self, stdin: bytes = b"", tty: bool = False):
        self.tty = tty
        self.detached = False
        self._stdin = [stdin] if stdin else []
        self.out: dict[int, bytes] = {1: b"", 2: b""}

    async def read_stdin(self) -> bytes:
        if self._stdin:
            return self._stdin.pop(0)
        return b""

    async def write(self, stream: int, data: bytes) -> None:
        self.out[stream] = self.out.get(stream, b"") + data


@pytest.fixture(params=RUNTIMES, ids=lambda r: os.path.basename(r))
def engine(request, tmp_path):
    from berth.engine.engine import Engine
    from berth.images.bootstrap import busybox_image

    tag = uuid.uuid4().hex[:8]
    cfg = Config(
        bridge=f"bt{tag}",
        nft_table=f"berth_t{tag}",
        data_root=str(tmp_path / "data"),
        exec_root=str(tmp_path / "exec"),
        runtime=request.param,
        runtime_root=str(tmp_path / "rt"),
        cgroup_parent=f"berth-test-{tag}",
        socket=str(tmp_path / "s.sock"),
    )
    eng = Engine(cfg)
    asyncio.run(eng.restore())
    busybox_image(eng.images)
    yield eng

    async def cleanup():
        for c in list(eng.containers.all()):
            try:
                await eng.remove(c.id, force=True)
            except Exception:  # noqa: BLE001
                pass
        await eng.shutdown()
        if eng.net is not None:
            eng.net.teardown(remove_bridges=True)

    asyncio.run(cleanup())
    for base in ("/sys/fs/cgroup/" + d for d in os.listdir("/sys/fs/cgroup")):
        p = os.path.join(base, cfg.cgroup_parent)
        if os.path.isdir(p):
            for sub in os.listdir(p):
                if os.path.isdir(os.path.join(p, sub)):
                    os.rmdir(os.path.join(p, sub))
            os.rmdir(p)
    assert mounts_under(str(tmp_path)) == []


def run(coro):
    return asyncio.run(coro)


def test_run_attach_wait_logs(engine):
    async def go():
        r = engine.create_container(
            "c1",
            {
                "Image": "busybox",
                "Cmd": ["sh", "-c", "echo out; echo err >&2; exit 3"],
                "AttachStdout": True,
                "AttachStderr": True,
            },
        )
        cid = r["Id"]
        io = _IO()
        attach = asyncio.create_task(
            engine.attach(cid, io, stdin=False, stdout=True, stderr=True, logs=False, stream=True)
        )
        waiter = await engine.wait(cid, "next-exit")
        await asyncio.sleep(0.05)
        await engine.start(cid)
        res = await asyncio.wait_for(waiter, 20)
        await asyncio.wait_for(attach, 10)
        assert res == {"StatusCode": 3, "Error": None}
        assert io.out[1] == b"out\n" and io.out[2] == b"err\n"
        info = engine.inspect_container("c1")
        assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 3
        assert info["State"]["FinishedAt"] > info["State"]["StartedAt"]
        assert info["HostConfig"]["LogConfig"]["Type"] == "json-file"
        logs = [
            x
            async for x in engine.logs(
                cid,
                stdout=True,
                stderr=True,
                follow=False,
                since=None,
                until=None,
                timestamps=False,
                tail=None,
            )
        ]
        assert sorted(logs) == [(1, b"out\n"), (2, b"err\n")]
        assert [c["Names"] for c in engine.list_containers(all=True)] == [["/c1"]]
        assert engine.list_containers() == []
        await engine.remove("c1")
        with pytest.raises(NotFound):
            engine.inspect_container(cid)

    run(go())


def test_stdin_exec_stop_and_errors(engine):
    async def go():
        cid = engine.create_container(
            None,
            {
                "Image": "busybox",
                "Cmd": ["sh", "-c", "read x; echo got $x; sleep 60"],
                "OpenStdin": True,
                "StdinOnce": True,
            },
        )["Id"]
        io = _IO(stdin=b"hello\n")
        attach = asyncio.create_task(
            engine.attach(cid, io, stdin=True, stdout=True, stderr=True, logs=False, stream=True)
        )
        await asyncio.sleep(0.05)
        await engine.start(cid)
        with pytest.raises(NotModified):
            await engine.start(cid)
        for _ in range(100):
            if io.out[1]:
                break
            await asyncio.sleep(0.05)
        assert io.out[1] == b"got hello\n"
        eid = engine.exec_create(cid, {"Cmd": ["sh", "-c", "echo $((6*7)); exit 5"], "AttachStdout": True})[
            "Id"
        ]
        eio = _IO()
        await engine.exec_start(eid, eio, detach=False, tty=False)
        assert eio.out[1] == b"42\n"
        assert engine.exec_inspect(eid)["ExitCode"] == 5
        with pytest.raises(Conflict, match="container is running"):
            await engine.remove(cid)
        top = engine.top(cid)
        assert any("sleep" in p[-1] for p in top["Processes"])
        await engine.pause(cid)
        assert engine.inspect_container(cid)["State"]["Paused"]
        await engine.unpause(cid)
        await engine.stop(cid, t=1)
        await asyncio.wait_for(attach, 10)
        st = engine.inspect_container(cid)["State"]
        assert st["Status"] == "exited" and st["ExitCode"] in (137, 143)
        with pytest.raises(NotModified):
            await engine.stop(cid)
        with pytest.raises(Conflict):
            await engine.kill(cid)
        with pytest.raises(NotFound, match="No such image: nope:latest"):
            engine.create_container(None, {"Image": "nope", "Cmd": ["true"]})
        with pytest.raises(InvalidArgument):
            await engine.wait(cid, "bogus")

    run(go())


def test_missing_binary_is_127(engine):
    async def go():
        cid = engine.create_container(None, {"Image": "busybox", "Cmd": ["/no/such/binary"]})["Id"]
        with pytest.raises(InvalidArgument) as ei:
            await engine.start(cid)
        assert "no such file" in str(ei.value).lower() or "not found" in str(ei.value).lower()
        assert engine.inspect_container(cid)["State"]["ExitCode"] == 127

    run(go())


def test_auto_remove(engine):
    async def go():
        cid = engine.create_container(
            None, {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"AutoRemove": True}}
        )["Id"]
        removed = await engine.wait(cid, "removed")
        await engine.start(cid)
        assert (await asyncio.wait_for(removed, 20))["StatusCode"] == 0
        with pytest.raises(NotFound):
            engine.inspect_container(cid)

    run(go())


@pytest.mark.parametrize("engine", ["berth"], indirect=True)
def test_image_ops_save_load_commit_rmi(engine):
    async def agen(data: bytes):
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    async def go():
        saved = b"".join([c async for c in engine.save_images(["busybox"])])
        assert len(saved) > 100_000
        busy_id = engine.inspect_image("busybox")["Id"]
        engine.tag_image("busybox", "mine/bb", "v1")
        assert "mine/bb:v1" in engine.inspect_image("mine/bb:v1")["RepoTags"]
        items = engine.remove_image("mine/bb:v1")
        assert items == [{"Untagged": "mine/bb:v1"}]
        msgs = [m async for m in engine.load_images(agen(saved), quiet=False)]
        assert any("busybox:latest" in m.get("stream", "") for m in msgs), msgs
        cid = engine.create_container(None, {"Image": "busybox", "Cmd": ["sh", "-c", "echo new > /f"]})["Id"]
        done = await engine.wait(cid, "next-exit")
        await engine.start(cid)
        await asyncio.wait_for(done, 20)
        new = engine.commit_container(cid, repo="committed", tag="1", changes=["CMD cat /f"])
        assert engine.inspect_image("committed:1")["Id"] == new["Id"] != busy_id
        with pytest.raises(Conflict):
            engine.remove_image(busy_id)
        c2 = engine.create_container(None, {"Image": "committed:1", "AttachStdout": True})["Id"]
        io = _IO()
        att = asyncio.create_task(
            engine.attach(c2, io, stdin=False, stdout=True, stderr=True, logs=False, stream=True)
        )
        await asyncio.sleep(0.05)
        await engine.start(c2)
        await asyncio.wait_for(att, 20)
        assert io.out[1] == b"new\n"
        bad = [m async for m in engine.load_images(agen(b"not a tar" * 100), quiet=False)]
        assert bad and "error" in bad[-1]
        pulled = [m async for m in engine.pull("nosuchimage", "latest", None, {})]
        assert "error" in pulled[-1]

    run(go())


@pytest.mark.parametrize("engine", ["berth"], indirect=True)
def test_cp_diff_export_stats_update_prune(engine, tmp_path):
    import io as _io
    import tarfile

    async def agen(data: bytes):
        yield data

    async def go():
        cid = engine.create_container(
            "cpbox",
            {
                "Image": "busybox",
                "Cmd": [
                    "sh",
                    "-c",
                    "mkdir /data; echo hi > /data/a; rm /bin/vi; ln -s / /data/escape; sleep 30",
                ],
            },
        )["Id"]
        await engine.start(cid)
        for _ in range(100):
            if any(ch["Path"] == "/data/escape" for ch in engine.container_changes(cid)):
                break
            await asyncio.sleep(0.05)
        changes = {ch["Path"]: ch["Kind"] for ch in engine.container_changes(cid)}
        assert changes["/data"] == 1 and changes["/data/a"] == 1 and changes["/bin/vi"] == 2
        info, stream = await engine.archive_get(cid, "/data/a")
        assert info["name"] == "a" and info["size"] == 3
        data = b"".join([c async for c in stream])
        with tarfile.open(fileobj=_io.BytesIO(data)) as tf:
            assert tf.extractfile("a").read() == b"hi\n"
        # the symlink to / is resolved inside the container, never on the host
        st = engine.archive_stat(cid, "/data/escape")
        assert st["linkTarget"] == "/" and st["mode"] & (1 << 27)
        buf = _io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            ti = tarfile.TarInfo("put.txt")
            ti.size = 4
            tf.addfile(ti, _io.BytesIO(b"put\n"))
        await engine.archive_put(cid, "/data/escape/tmp", agen(buf.getvalue()))
        assert not os.path.exists("/tmp/put.txt") or open("/tmp/put.txt").read() != "put\n"
        info, stream = await engine.archive_get(cid, "/tmp/put.txt")
        assert info["size"] == 4
        with pytest.raises(NotFound):
            engine.archive_stat(cid, "/nope")
        stats = engine.container_stats(cid)
        assert stats["memory_stats"]["usage"] > 0 and stats["pids_stats"]["current"] >= 1
        engine.update_container(cid, {"Memory": 64 * 1024 * 1024, "MemorySwap": -1})
        assert engine.inspect_container(cid)["HostConfig"]["Memory"] == 64 * 1024 * 1024
        dead = await engine.wait(cid, "not-running")
        await engine.kill(cid)
        await asyncio.wait_for(dead, 10)
        exported = b"".join([c async for c in engine.export_container(cid)])
        with tarfile.open(fileobj=_io.BytesIO(exported)) as tf:
            names = tf.getnames()
        assert any(n.endswith("data/a") for n in names) and not any(n.endswith("bin/vi") for n in names)
        pruned = await engine.prune_containers()
        assert pruned["ContainersDeleted"] == [cid]

    run(go())


@pytest.mark.parametrize("engine", ["berth"], indirect=True)
def test_bridge_networking_ports_and_names(engine):
    import socket
    import urllib.request

    def free_port() -> int:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        return port

    async def go():
        port = free_port()
        web = engine.create_container(
            "web",
            {
                "Image": "busybox",
                "ExposedPorts": {"80/tcp": {}},
                "Cmd": [
                    "sh",
                    "-c",
                    "mkdir /www; echo hello-from-web > /www/index.html; httpd -f -p 80 -h /www",
                ],
                "HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}},
            },
        )["Id"]
        await engine.start(web)
        info = engine.inspect_container(web)
        ip = info["NetworkSettings"]["IPAddress"]
        assert ip and info["NetworkSettings"]["Ports"]["80/tcp"] == [
            {"HostIp": "127.0.0.1", "HostPort": str(port)}
        ]
        body = b""
        for _ in range(50):
            try:
                body = await asyncio.to_thread(
                    lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
                )
                break
            except OSError:
                await asyncio.sleep(0.1)
        assert body == b"hello-from-web\n"
        # a user network: containers reach each other by name
        engine.create_network({"Name": "appnet"})
        srv = engine.create_container(
            "srv",
            {
                "Image": "busybox",
                "Cmd": ["sh", "-c", "mkdir /w; echo by-name > /w/index.html; httpd -f -p 8080 -h /w"],
                "HostConfig": {"NetworkMode": "appnet"},
            },
        )["Id"]
        await engine.start(srv)
        cli = engine.create_container(
            "cli",
            {
                "Image": "busybox",
                "Cmd": [
                    "sh",
                    "-c",
                    "for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://srv:8080/ && exit 0;"
                    " sleep 0.2; done; exit 1",
                ],
                "HostConfig": {"NetworkMode": "appnet"},
            },
        )["Id"]
        io = _IO()
        att = asyncio.create_task(
            engine.attach(cli, io, stdin=False, stdout=True, stderr=True, logs=False, stream=True)
        )
        done = await engine.wait(cli, "next-exit")
        await asyncio.sleep(0.05)
        await engine.start(cli)
        res = await asyncio.wait_for(done, 30)
        await asyncio.wait_for(att, 10)
        assert res["StatusCode"] == 0, io.out
        assert io.out[1] == b"by-name\n"
        assert "appnet" in engine.inspect_container("srv")["NetworkSettings"]["Networks"]
        with pytest.raises(Conflict):
            engine.remove_network("appnet")
        for c in ("web", "srv", "cli"):
            await engine.remove(c, force=True)
        engine.remove_network("appnet")
        assert engine.net.endpoints() == []

    run(go())


def _procs_with_cwd_under(prefix: str) -> list[int]:
    """Processes whose cwd is below prefix (monitors chdir into their state dir)."""
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                cwd = os.readlink(f"/proc/{p}/cwd")
            except OSError:
                continue
            if cwd.startswith(prefix.rstrip("/") + "/"):
                out.append(int(p))
    return out


def _cgroup_children(parent: str) -> list[str]:
    left = []
    for ctrl in os.listdir("/sys/fs/cgroup"):
        p = os.path.join("/sys/fs/cgroup", ctrl, parent)
        if os.path.isdir(p):
            left += [os.path.join(p, d) for d in os.listdir(p) if os.path.isdir(os.path.join(p, d))]
    return left


def _assert_nothing_left(engine, base: str) -> None:
    assert list(engine.containers.all()) == []
    assert _procs_with_cwd_under(base) == []
    assert _cgroup_children(engine.cfg.cgroup_parent) == []
    assert mounts_under(base) == []


@pytest.mark.parametrize("engine", ["berth"], indirect=True)
def test_remove_force_racing_start_leaves_nothing(engine, tmp_path):
    """rm -f while a start is in flight: either the start is undone or the started container is
    killed and removed; no monitor, init, cgroup or mount survives (20 iterations)."""
    outcomes = set()

    async def one(i: int) -> None:
        cid = engine.create_container(None, {"Image": "busybox", "Cmd": ["sleep", "60"]})["Id"]
        start = asyncio.create_task(engine.start(cid))
        await asyncio.sleep((i % 10) * 0.004)
        await engine.remove(cid, force=True)
        try:
            await start
            outcomes.add("started")
        except NotFound:
            outcomes.add("not-found")
        with pytest.raises(NotFound):
            engine.inspect_container(cid)

    async def go():
        for i in range(20):
            await one(i)

    run(go())
    _assert_nothing_left(engine, str(tmp_path))
    assert outcomes  # at least one start went through before the remove


@pytest.mark.parametrize("engine", ["berth"], indirect=True)
def test_cancelled_start_is_recorded_or_undone(engine, tmp_path):
    """A start whose caller is cancelled at any point still ends consistently: recorded as
    running (then stoppable), never an unrecorded live process."""

    async def go():
        for i in range(10):
            cid = engine.create_container(None, {"Image": "busybox", "Cmd": ["sleep", "60"]})["Id"]
            start = asyncio.create_task(engine.start(cid))
            await asyncio.sleep(i * 0.005)
            start.cancel()
            try:
                await start
            except asyncio.CancelledError:
                pass
            await engine.kill(cid) if engine.containers.get(cid).state.status == "running" else None
            st = engine.inspect_container(cid)["State"]
            assert st["Status"] in ("running", "exited", "created")
            await engine.remove(cid, force=True)

    run(go())
    _assert_nothing_left(engine, str(tmp_path))
