"""Volumes wired into the Engine: named, anonymous (image VOLUME, copy-up), binds, tmpfs,
volumes-from, rm -v, the /volumes operations, events, and state across an engine restart."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from berth.config import Config
from berth.errors import Conflict, InvalidArgument, NotFound
from tests.helpers import mounts_under

pytestmark = pytest.mark.root


def _cfg(tmp_path, tag: str) -> Config:
    return Config(bridge=f"bv{tag}", nft_table=f"berth_v{tag}", data_root=str(tmp_path / "data"),
                  exec_root=str(tmp_path / "exec"), runtime="berth", runtime_root=str(tmp_path / "rt"),
                  cgroup_parent=f"berth-test-{tag}", socket=str(tmp_path / "s.sock"))


@pytest.fixture
def engine(tmp_path):
    from berth.engine.engine import Engine
    from berth.images.bootstrap import busybox_image

    tag = uuid.uuid4().hex[:8]
    eng = Engine(_cfg(tmp_path, tag))
    asyncio.run(eng.restore())
    busybox_image(eng.images)
    holder = {"eng": eng}
    yield holder

    async def cleanup():
        e = holder["eng"]
        for c in list(e.containers.all()):
            try:
                await e.remove(c.id, force=True, volumes=True)
            except Exception:  # noqa: BLE001
                pass
        await e.shutdown()
        if e.net is not None:
            e.net.teardown(remove_bridges=True)

    asyncio.run(cleanup())
    for base in ("/sys/fs/cgroup/" + d for d in os.listdir("/sys/fs/cgroup")):
        p = os.path.join(base, f"berth-test-{tag}")
        if os.path.isdir(p):
            for sub in os.listdir(p):
                if os.path.isdir(os.path.join(p, sub)):
                    os.rmdir(os.path.join(p, sub))
            os.rmdir(p)
    assert mounts_under(str(tmp_path)) == []


async def _run(eng, config: dict, name: str | None = None) -> tuple[str, int, bytes]:
    base = {"Image": "busybox", "HostConfig": {"NetworkMode": "none"}}
    cid = eng.create_container(name, {**base, **config})["Id"]
    waiter = await eng.wait(cid, "next-exit")
    await eng.start(cid)
    res = await asyncio.wait_for(waiter, 30)
    out = b"".join([d async for _, d in eng.logs(cid, stdout=True, stderr=True, follow=False, since=None,
                                                  until=None, timestamps=False, tail=None)])
    return cid, res["StatusCode"], out


def test_named_anonymous_bind_tmpfs_and_inspect(engine, tmp_path):
    eng = engine["eng"]
    host_dir = tmp_path / "hostdir"
    host_dir.mkdir()
    (host_dir / "h.txt").write_text("from host")

    async def go():
        events = []

        async def collect():
            async for ev in eng.events(None, None, {"type": ["volume"]}):
                events.append((ev["Action"], ev["Actor"]["ID"]))

        watcher = asyncio.create_task(collect())
        await asyncio.sleep(0)
        cid, code, out = await _run(eng, {
            "Cmd": ["sh", "-c", "echo keep > /named/f; echo anon > /anon/f; cat /host/h.txt; echo; "
                    "touch /ro/x 2>/dev/null || echo ro-refused; mount | grep -c ' /scratch type tmpfs'"],
            "Volumes": {"/anon": {}},
            "HostConfig": {"NetworkMode": "none", "Binds": ["vol1:/named", f"{host_dir}:/host",
                                                            f"{host_dir}:/ro:ro"],
                           "Tmpfs": {"/scratch": "size=1m"}}})
        assert code == 0, out
        assert out.decode().split("\n") == ["from host", "ro-refused", "1", ""]
        info = eng.inspect_container(cid)
        by_dest = {m["Destination"]: m for m in info["Mounts"]}
        assert by_dest["/named"]["Type"] == "volume" and by_dest["/named"]["Name"] == "vol1"
        assert by_dest["/named"]["Source"] == eng.volumes.path("vol1") and by_dest["/named"]["RW"] is True
        assert by_dest["/named"]["Driver"] == "local"
        anon = by_dest["/anon"]["Name"]
        assert len(anon) == 64
        assert by_dest["/host"] == {"Type": "bind", "Source": str(host_dir), "Destination": "/host",
                                    "Mode": "", "RW": True, "Propagation": "rprivate"}
        assert by_dest["/ro"]["RW"] is False
        assert by_dest["/scratch"]["Type"] == "tmpfs"
        names = {v["Name"] for v in eng.list_volumes()["Volumes"]}
        assert {"vol1", anon} <= names
        with pytest.raises(Conflict):
            eng.remove_volume("vol1")
        assert eng.list_volumes({"dangling": ["true"]})["Volumes"] == []
        # a second container shares the volume's data, and volumes-from
        _, code, out = await _run(eng, {"Cmd": ["sh", "-c", "cat /named/f /anon/f"],
                                        "HostConfig": {"NetworkMode": "none", "VolumesFrom": [cid]}})
        assert (code, out) == (0, b"keep\nanon\n")
        await eng.remove(cid, volumes=True)
        names = {v["Name"] for v in eng.list_volumes()["Volumes"]}
        assert "vol1" in names and anon in names  # the volumes-from container still uses anon
        for c in list(eng.containers.all()):
            await eng.remove(c.id)
        assert eng.prune_volumes()["VolumesDeleted"] == [anon]  # only anonymous by default
        assert [v["Name"] for v in eng.list_volumes({"dangling": ["true"]})["Volumes"]] == ["vol1"]
        r = eng.prune_volumes({"all": ["true"]})
        assert r["VolumesDeleted"] == ["vol1"]
        await asyncio.sleep(0.1)
        watcher.cancel()
        acts = [a for a, _ in events]
        assert ("create", "vol1") in events and ("destroy", "vol1") in events
        assert "mount" in acts and "unmount" in acts

    asyncio.run(go())


def test_copy_up_rm_v_and_errors(engine, tmp_path):
    eng = engine["eng"]

    async def go():
        seed, code, _ = await _run(eng, {"Cmd": ["sh", "-c", "mkdir -p /seed && echo image > /seed/f && "
                                                 "ln -s f /seed/link"]})
        assert code == 0
        eng.commit_container(seed, repo="seeded", tag="v1", changes=["VOLUME /seed"])
        await eng.remove(seed)
        cid, code, out = await _run(eng, {"Image": "seeded:v1", "Cmd": ["sh", "-c",
                                                                        "cat /seed/f; readlink /seed/link"]})
        assert (code, out) == (0, b"image\nf\n")
        vol = eng.inspect_container(cid)["Mounts"][0]["Name"]
        assert open(os.path.join(eng.volumes.path(vol), "f")).read() == "image\n"
        # a named volume is filled too when new and empty; nocopy leaves it empty
        _, code, out = await _run(eng, {"Image": "seeded:v1", "Cmd": ["ls", "/seed"],
                                        "HostConfig": {"NetworkMode": "none", "Binds": ["fresh:/seed"]}})
        assert out.split() == [b"f", b"link"]
        _, code, out = await _run(eng, {"Image": "seeded:v1", "Cmd": ["ls", "/seed"],
                                        "HostConfig": {"NetworkMode": "none", "Mounts": [
                                            {"Type": "volume", "Source": "empty", "Target": "/seed",
                                             "VolumeOptions": {"NoCopy": True}}]}})
        assert out == b""
        await eng.remove(cid, volumes=True)
        with pytest.raises(NotFound):
            eng.inspect_volume(vol)
        # --mount type=bind with a missing source is an error; -v creates it
        missing = tmp_path / "missing"
        with pytest.raises(InvalidArgument, match="bind source path does not exist"):
            eng.create_container(None, {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Mounts": [
                {"Type": "bind", "Source": str(missing), "Target": "/m"}]}})
        eng.create_container(None, {"Image": "busybox", "Cmd": ["true"],
                                    "HostConfig": {"Binds": [f"{missing}:/m"]}})
        assert missing.is_dir()
        with pytest.raises(InvalidArgument, match="Duplicate mount point"):
            eng.create_container(None, {"Image": "busybox", "Cmd": ["true"],
                                        "HostConfig": {"Binds": ["aa:/x", "bb:/x"]}})
        assert not eng.volumes.exists("aa")
        with pytest.raises(NotFound):
            eng.remove_volume("nope")
        eng.remove_volume("nope", force=True)
        v = eng.create_volume({"Name": "lab", "Labels": {"k": "v"}})
        assert v["Labels"] == {"k": "v"} and eng.create_volume({"Name": "lab"})["Name"] == "lab"
        assert [x["Name"] for x in eng.list_volumes({"label": ["k=v"]})["Volumes"]] == ["lab"]

    asyncio.run(go())


def test_volume_state_survives_engine_restart(engine, tmp_path):
    from berth.engine.engine import Engine

    eng = engine["eng"]

    async def start_one():
        host = {"NetworkMode": "none", "Binds": ["kept:/k"]}
        cfg = {"Image": "busybox", "Cmd": ["sleep", "60"], "HostConfig": host}
        cid = eng.create_container("keeper", cfg)["Id"]
        await eng.start(cid)
        return cid

    cid = asyncio.run(start_one())
    asyncio.run(eng.shutdown())  # the container keeps running
    eng2 = Engine(eng.cfg)
    engine["eng"] = eng2

    async def after():
        await eng2.restore()
        assert eng2.inspect_container(cid)["State"]["Status"] == "running"
        with pytest.raises(Conflict):
            eng2.remove_volume("kept")
        assert eng2.volumes.users("kept") == [cid]
        await eng2.remove(cid, force=True)
        eng2.remove_volume("kept")

    asyncio.run(after())


def test_docker_cli_volume_commands(tmp_path):
    """The docker CLI's volume verbs and -v/--mount through a private berthd."""
    import shutil
    import subprocess

    from tests.e2e.daemon_fixture import Daemon
    from tests.e2e.test_daemon import _bootstrap

    if shutil.which("docker") is None:
        pytest.skip("docker CLI not installed")
    d = Daemon(str(tmp_path / "d"))
    os.makedirs(d.base)
    d.start()
    env = {**os.environ, "DOCKER_HOST": d.url}
    env.pop("DOCKER_CONTEXT", None)

    def dk(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=60)
        if ok:
            assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r

    try:
        _bootstrap(d)
        assert dk("volume", "create", "--label", "team=a", "v1").stdout.strip() == "v1"
        dk("run", "--rm", "--network", "none", "-v", "v1:/d", "busybox", "sh", "-c", "echo kept > /d/f")
        out = dk("run", "--rm", "--network", "none", "--mount", "type=volume,src=v1,dst=/d,readonly",
                 "busybox", "sh", "-c", "cat /d/f; touch /d/g 2>/dev/null || echo ro").stdout
        assert out == "kept\nro\n"
        assert dk("volume", "ls", "-q", "--filter", "label=team=a").stdout.split() == ["v1"]
        assert '"team": "a"' in dk("volume", "inspect", "v1").stdout
        dk("create", "--name", "holder", "-v", "v1:/d", "busybox", "true")
        r = dk("volume", "rm", "v1", ok=False)
        assert r.returncode != 0 and "in use" in r.stderr
        dk("rm", "holder")
        dk("run", "--rm", "--network", "none", "-v", "/anon", "busybox", "true")
        assert dk("volume", "ls", "-q").stdout.split() == ["v1"]  # --rm took the anonymous one
        dk("volume", "prune", "-f")
        assert dk("volume", "ls", "-q").stdout.split() == ["v1"]  # named ones need --all
        dk("volume", "prune", "-af")
        assert dk("volume", "ls", "-q").stdout.split() == []
    finally:
        d.cleanup()
    assert mounts_under(str(tmp_path)) == []
