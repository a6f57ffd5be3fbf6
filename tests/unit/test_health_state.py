"""Health check state machine and config parsing (Docker's semantics), and HealthMonitor
against a fake engine."""

from __future__ import annotations

import asyncio
import types

import pytest

from berth.engine.health import (
    HEALTHY,
    MAX_OUTPUT,
    STARTING,
    UNHEALTHY,
    HealthConfig,
    HealthMonitor,
    HealthState,
    _go_duration,
    rfc3339,
    validate,
)

S = 1_000_000_000


def cfg(**kw) -> HealthConfig:
    return HealthConfig.from_config({"Test": ["CMD", "true"], **kw})


# ---------------------------------------------------------------- config
def test_config_defaults_are_dockers():
    c = cfg()
    assert c.argv == ("true",)
    assert (c.interval, c.timeout, c.start_period, c.start_interval, c.retries) == (30, 30, 0, 5, 3)


def test_config_durations_are_nanoseconds_and_zero_means_default():
    c = cfg(Interval=2 * S, Timeout=S // 2, StartPeriod=10 * S, StartInterval=S, Retries=5)
    assert (c.interval, c.timeout, c.start_period, c.start_interval, c.retries) == (2, 0.5, 10, 1, 5)
    c = cfg(Interval=0, Timeout=-1, Retries=0)
    assert (c.interval, c.timeout, c.retries) == (30, 30, 3)


def test_config_test_forms():
    assert HealthConfig.from_config({"Test": ["CMD-SHELL", "exit 1"]}).argv == ("/bin/sh", "-c", "exit 1")
    assert HealthConfig.from_config({"Test": ["CMD", "ls", "-l"]}).argv == ("ls", "-l")
    for none in (None, {}, {"Test": []}, {"Test": ["NONE"]}, {"Test": ["CMD"]}):
        assert HealthConfig.from_config(none) is None


def test_validate_as_moby():
    from berth.errors import InvalidArgument

    validate(None)
    validate({"Test": ["CMD", "true"], "Interval": 0, "Timeout": 1_000_000, "Retries": 0})
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        with pytest.raises(InvalidArgument, match=f"^{key} in Healthcheck cannot be less than 1ms$"):
            validate({key: 999_999})
    with pytest.raises(InvalidArgument, match="Retries in Healthcheck cannot be negative"):
        validate({"Retries": -1})
    with pytest.raises(InvalidArgument):
        validate({"Interval": "soon"})


# ---------------------------------------------------------------- state machine
def test_success_is_healthy_and_resets_streak():
    st = HealthState(cfg(), started_at=100.0)
    assert st.status == STARTING
    assert st.record(101, 101.1, 1, "no") is None
    assert st.failing_streak == 1
    assert st.record(102, 102.1, 0, "ok") == HEALTHY
    assert st.failing_streak == 0
    assert st.record(103, 103.1, 0, "ok") is None


def test_retries_failures_make_unhealthy_then_success_heals():
    st = HealthState(cfg(Retries=2), started_at=0.0)
    assert st.record(1, 1, 1, "") is None
    assert st.record(2, 2, 3, "") == UNHEALTHY  # any non-zero code is a failure
    assert st.failing_streak == 2
    assert st.record(3, 3, 1, "") is None
    assert st.failing_streak == 3
    assert st.record(4, 4, 0, "") == HEALTHY


def test_failures_inside_start_period_do_not_count_while_starting():
    st = HealthState(cfg(StartPeriod=10 * S, Retries=1), started_at=0.0)
    assert st.record(5, 5.1, 1, "") is None
    assert (st.status, st.failing_streak) == (STARTING, 0)
    assert st.record(10.5, 10.6, 1, "") == UNHEALTHY  # after the start period: counted


def test_start_period_does_not_protect_a_container_that_was_healthy():
    st = HealthState(cfg(StartPeriod=100 * S, Retries=1), started_at=0.0)
    st.record(1, 1, 0, "")
    assert st.record(2, 2, 1, "") == UNHEALTHY


def test_timeout_result_is_a_failure():
    st = HealthState(cfg(Retries=1), started_at=0.0)
    assert st.record(1, 31, -1, "Health check exceeded timeout (30s)") == UNHEALTHY
    assert st.log[-1]["ExitCode"] == -1


def test_log_keeps_last_five_and_caps_output():
    st = HealthState(cfg(), started_at=0.0)
    for i in range(8):
        st.record(i, i + 0.5, 0, f"run {i}" + "x" * (MAX_OUTPUT if i == 7 else 0))
    assert len(st.log) == 5
    assert st.log[0]["Output"] == "run 3"
    assert len(st.log[-1]["Output"]) == MAX_OUTPUT
    assert st.log[0]["Start"] == "1970-01-01T00:00:03.000000000Z"
    assert st.log[0]["End"] == "1970-01-01T00:00:03.500000000Z"
    d = st.to_dict()
    assert set(d) == {"Status", "FailingStreak", "Log"}
    assert set(d["Log"][0]) == {"Start", "End", "ExitCode", "Output"}


def test_next_delay_uses_start_interval_only_while_starting_in_start_period():
    st = HealthState(cfg(Interval=30 * S, StartPeriod=60 * S, StartInterval=2 * S), started_at=0.0)
    assert st.next_delay(1) == 2
    assert st.next_delay(61) == 30
    st.record(3, 3, 0, "")
    assert st.next_delay(4) == 30
    no_period = HealthState(cfg(Interval=7 * S), started_at=0.0)
    assert no_period.next_delay(0) == 7


def test_resume_restarts_as_starting_and_keeps_log():
    prev = {"Status": UNHEALTHY, "FailingStreak": 9, "Log": [{"ExitCode": i} for i in range(7)]}
    st = HealthState.resume(cfg(), 50.0, prev)
    assert (st.status, st.failing_streak, len(st.log)) == (STARTING, 0, 5)
    assert st.log[-1] == {"ExitCode": 6}


def test_formatting_helpers():
    assert rfc3339(1.25) == "1970-01-01T00:00:01.250000000Z"
    assert rfc3339(1.9999999999) == "1970-01-01T00:00:02.000000000Z"
    assert [_go_duration(x) for x in (30, 1.5, 0.5, 90, 3600)] == ["30s", "1.5s", "500ms", "1m30s", "1h0m0s"]


# ---------------------------------------------------------------- monitor with a fake engine
class FakeEngine:
    """Containers in a dict; execs finish with the next code from ``codes``."""

    def __init__(self, codes, hang: bool = False):
        from berth.containers.state import Status
        from berth.containers.store import State

        self.codes = list(codes)
        self.hang = hang
        self.events: list[str] = []
        self._execs: dict[str, dict] = {}
        self.state = State(status=Status.RUNNING, started_at=0.0)
        self.c = types.SimpleNamespace(
            id="c1", config={"Healthcheck": {"Test": ["CMD-SHELL", "probe"], "Interval": S // 100,
                                             "Retries": 2}},
            state=self.state, extra={})
        self.containers = types.SimpleNamespace(get=lambda _id: self.c, save_state=lambda c: None)
        self.n = 0

    def exec_create(self, cid, config):
        self.n += 1
        eid = f"e{self.n}"
        self._execs[eid] = {"Running": False, "ExitCode": None, "Pid": 0, "cmd": config["Cmd"]}
        self.c.extra.setdefault("exec_ids", []).append(eid)
        return {"Id": eid}

    async def exec_start(self, eid, io, *, detach, tty):
        if self.hang:
            await asyncio.sleep(3600)
        await io.write(1, b"out:")
        await io.write(2, b"err")
        self._execs[eid]["ExitCode"] = self.codes.pop(0) if self.codes else 0

    def exec_inspect(self, eid):
        return self._execs[eid]

    def _emit(self, action, c, extra=None):
        self.events.append(action)


def test_monitor_runs_probes_records_and_emits():
    async def main():
        eng = FakeEngine([0, 1, 1, 0])
        m = HealthMonitor(eng, "c1").start()
        assert eng.state.health["Status"] == STARTING
        for _ in range(500):
            if len(eng.events) >= 3:
                break
            await asyncio.sleep(0.01)
        await m.stop()
        assert not m.running
        return eng

    eng = asyncio.run(main())
    assert eng.events[:3] == ["health_status: healthy", "health_status: unhealthy", "health_status: healthy"]
    log = eng.state.health["Log"]
    assert log[0]["Output"] == "out:err" and log[0]["ExitCode"] == 0
    assert eng.c.extra["exec_ids"] == []  # probe execs are not kept
    assert eng._execs == {}


def test_monitor_timeout_is_exit_minus_one():
    async def main():
        eng = FakeEngine([], hang=True)
        eng.c.config["Healthcheck"]["Timeout"] = S // 20
        m = HealthMonitor(eng, "c1").start()
        for _ in range(500):
            if eng.state.health["Log"]:
                break
            await asyncio.sleep(0.01)
        await m.stop()
        return eng

    eng = asyncio.run(main())
    entry = eng.state.health["Log"][0]
    assert entry["ExitCode"] == -1
    assert entry["Output"] == "Health check exceeded timeout (50ms)"


def test_monitor_without_healthcheck_does_nothing_and_stops_when_container_stops():
    from berth.containers.state import Status

    async def main():
        eng = FakeEngine([])
        eng.c.config = {}
        m = HealthMonitor(eng, "c1").start()
        assert m.task is None and eng.state.health is None
        eng2 = FakeEngine([0] * 100)
        m2 = HealthMonitor(eng2, "c1").start()
        eng2.state.status = Status.EXITED
        await asyncio.sleep(0.1)
        assert m2.task is not None and m2.task.done()  # ended by itself
        await m2.stop()
        return eng2

    eng2 = asyncio.run(main())
    assert eng2.n == 0


@pytest.mark.parametrize("codes,final", [([0], HEALTHY), ([1, 1], UNHEALTHY)])
def test_monitor_final_status(codes, final):
    async def main():
        eng = FakeEngine(codes)
        m = HealthMonitor(eng, "c1").start()
        for _ in range(500):
            if eng.n >= len(codes) and eng.state.health["Status"] == final:
                break
            await asyncio.sleep(0.01)
        await m.stop()
        return eng

    assert asyncio.run(main()).state.health["Status"] == final
