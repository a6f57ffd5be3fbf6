"""HealthMonitor against real containers made through an in-process Engine (before the engine
starts monitors itself): probes run as execs, State.Health, events, timeouts, start period."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from berth.config import Config
from berth.engine.health import HealthMonitor
from tests.helpers import mounts_under

pytestmark = pytest.mark.root

MS = 1_000_000


@pytest.fixture
def engine(tmp_path):
    from berth.engine.engine import Engine
    from berth.images.bootstrap import busybox_image

    tag = uuid.uuid4().hex[:8]
    cfg = Config(
        bridge=f"bh{tag}",
        nft_table=f"berth_h{tag}",
        data_root=str(tmp_path / "data"),
        exec_root=str(tmp_path / "exec"),
        runtime_root=str(tmp_path / "rt"),
        cgroup_parent=f"berth-health-{tag}",
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


async def _until(pred, timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


def _health(engine, cid) -> dict:
    return engine.inspect_container(cid)["State"].get("Health") or {}


async def _running(engine, healthcheck: dict, cmd: str = "sleep 60") -> str:
    cid = engine.create_container(
        None,
        {"Image": "busybox", "Cmd": ["sh", "-c", cmd], "Healthcheck": healthcheck, "NetworkDisabled": True},
    )["Id"]
    await engine.start(cid)
    stop_own = getattr(engine, "_stop_health", None)
    if stop_own is not None:  # once the engine runs health checks itself, these tests drive their own
        stop_own(cid)
    return cid


def test_healthy_then_unhealthy_with_events(engine):
    async def go():
        events: list[str] = []

        async def collect():
            async for ev in engine.bus.subscribe(None, None, {"event": ["health_status"]}):
                events.append(ev["Action"])

        sub = asyncio.create_task(collect())
        await asyncio.sleep(0)
        cid = await _running(engine, {"Test": ["CMD-SHELL", "test -f /tmp/ok && echo fine"],
                                      "Interval": 100 * MS, "Retries": 2},
                             "touch /tmp/ok; sleep 60")
        mon = HealthMonitor(engine, cid).start()
        assert _health(engine, cid)["Status"] == "starting"
        await _until(lambda: _health(engine, cid).get("Status") == "healthy")
        h = _health(engine, cid)
        assert h["FailingStreak"] == 0
        assert h["Log"][-1]["ExitCode"] == 0 and h["Log"][-1]["Output"] == "fine\n"
        assert h["Log"][-1]["Start"].endswith("Z") and h["Log"][-1]["End"] >= h["Log"][-1]["Start"]

        eid = engine.exec_create(cid, {"Cmd": ["rm", "/tmp/ok"]})["Id"]
        await engine.exec_start(eid, None, detach=False, tty=False)
        await _until(lambda: _health(engine, cid).get("Status") == "unhealthy")
        h = _health(engine, cid)
        assert h["FailingStreak"] >= 2 and h["Log"][-1]["ExitCode"] == 1
        await _until(lambda: len(_health(engine, cid)["Log"]) == 5)
        # probe execs are not left behind in the container's ExecIDs; the user's exec is
        assert engine.inspect_container(cid)["ExecIDs"] == [eid]
        await _until(lambda: "health_status: unhealthy" in events)
        assert events[:2] == ["health_status: healthy", "health_status: unhealthy"]

        await engine.stop(cid, t=1)
        await _until(lambda: not mon.running)
        n = len(_health(engine, cid)["Log"])
        await asyncio.sleep(0.3)
        assert len(_health(engine, cid)["Log"]) == n  # no probes once stopped; state kept
        await mon.stop()
        sub.cancel()

    asyncio.run(go())


def test_timeout_kills_the_probe_and_counts_as_failure(engine):
    async def go():
        cid = await _running(engine, {"Test": ["CMD", "sleep", "37"], "Interval": 100 * MS,
                                      "Timeout": 300 * MS, "Retries": 1})
        mon = HealthMonitor(engine, cid).start()
        await _until(lambda: _health(engine, cid).get("Status") == "unhealthy")
        entry = _health(engine, cid)["Log"][0]
        assert entry["ExitCode"] == -1
        assert entry["Output"] == "Health check exceeded timeout (300ms)"
        await mon.stop()
        await asyncio.sleep(0.2)
        procs = [p[-1] for p in engine.top(cid)["Processes"]]
        assert not any("sleep 37" in p for p in procs), procs  # timed-out probes were killed
        await engine.kill(cid)

    asyncio.run(go())


def test_start_period_keeps_starting_and_remove_stops_probes(engine):
    async def go():
        cid = await _running(engine, {"Test": ["CMD", "false"], "Interval": 30_000 * MS,
                                      "StartPeriod": 60_000 * MS, "StartInterval": 100 * MS,
                                      "Retries": 1})
        mon = HealthMonitor(engine, cid).start()
        await _until(lambda: len(_health(engine, cid).get("Log") or []) >= 3)
        h = _health(engine, cid)
        assert h["Status"] == "starting" and h["FailingStreak"] == 0
        assert all(e["ExitCode"] == 1 for e in h["Log"])
        await engine.remove(cid, force=True)
        await _until(lambda: not mon.running)
        await mon.stop()

    asyncio.run(go())


def test_paused_container_is_not_probed_and_checks_resume(engine):
    async def go():
        cid = await _running(engine, {"Test": ["CMD", "true"], "Interval": 100 * MS})
        mon = HealthMonitor(engine, cid).start()
        await _until(lambda: _health(engine, cid).get("Status") == "healthy")
        await engine.pause(cid)
        await asyncio.sleep(0.25)
        n = len(_health(engine, cid)["Log"])
        last = _health(engine, cid)["Log"][-1]["End"]
        await asyncio.sleep(0.5)
        assert _health(engine, cid)["Log"][-1]["End"] == last and mon.running
        await engine.unpause(cid)
        await _until(lambda: _health(engine, cid)["Log"][-1]["End"] != last)
        assert len(_health(engine, cid)["Log"]) >= min(n + 1, 5)
        await mon.stop()
        await engine.kill(cid)

    asyncio.run(go())


def test_no_healthcheck_and_none(engine):
    async def go():
        cid = await _running(engine, {"Test": ["NONE"]})
        mon = HealthMonitor(engine, cid).start()
        assert not mon.running and "Health" not in engine.inspect_container(cid)["State"]
        await engine.kill(cid)

    asyncio.run(go())


def _wired() -> bool:
    import berth.engine.engine as m

    return "HealthMonitor" in open(m.__file__).read()


@pytest.mark.skipif(not _wired(), reason="the engine does not start HealthMonitor yet")
def test_docker_cli_health_through_berthd(tmp_path):
    """Wired into the engine: docker run --health-*, ps shows (healthy), inspect, events."""
    import json
    import subprocess

    from tests.e2e.daemon_fixture import Daemon

    d = Daemon(str(tmp_path))
    d.start()
    try:
        boot = subprocess.run(["curl", "-s", "--unix-socket", d.sock, "-X", "POST",
                               "http://x/berth/images/bootstrap?name=busybox"], capture_output=True)
        assert boot.returncode == 0
        docker = ["docker", "-H", d.url]
        since = subprocess.run(["date", "+%s"], capture_output=True, text=True).stdout.strip()
        cid = subprocess.run(
            [*docker, "run", "-d", "--network", "none", "--health-cmd", "test -f /tmp/ok",
             "--health-interval", "200ms", "--health-retries", "2", "busybox", "sh", "-c",
             "touch /tmp/ok; sleep 100"], capture_output=True, text=True, check=True).stdout.strip()

        def state() -> dict:
            out = subprocess.run([*docker, "inspect", cid], capture_output=True, text=True, check=True)
            return json.loads(out.stdout)[0]["State"]

        import time

        for _ in range(100):
            if (state().get("Health") or {}).get("Status") == "healthy":
                break
            time.sleep(0.1)
        assert state()["Health"]["Status"] == "healthy"
        ps = subprocess.run([*docker, "ps", "--format", "{{.Status}}", "--filter", f"id={cid}"],
                            capture_output=True, text=True, check=True).stdout
        assert "(healthy)" in ps
        flt = subprocess.run([*docker, "ps", "-q", "--filter", "health=healthy"],
                             capture_output=True, text=True, check=True).stdout
        assert cid[:12] in flt
        subprocess.run([*docker, "exec", cid, "rm", "/tmp/ok"], check=True)
        for _ in range(100):
            if state()["Health"]["Status"] == "unhealthy":
                break
            time.sleep(0.1)
        assert state()["Health"]["Status"] == "unhealthy"
        until = str(int(time.time()) + 1)
        ev = subprocess.run([*docker, "events", "--since", since, "--until", until, "--filter",
                             f"container={cid}", "--filter", "event=health_status", "--format",
                             "{{.Action}}"], capture_output=True, text=True, timeout=5)
        assert "health_status: healthy" in ev.stdout and "health_status: unhealthy" in ev.stdout
        subprocess.run([*docker, "stop", "-t", "1", cid], check=True, capture_output=True)
        assert state()["Status"] == "exited"
        assert state()["Health"]["Status"] == "unhealthy"  # kept after the stop, as Docker
    finally:
        d.cleanup()
