"""Container health checks with Docker's semantics (moby ``daemon/health.go``).

``HealthConfig`` reads a container's ``Healthcheck``; ``HealthState`` is the pure state machine
(status, failing streak, last five results, the delay before the next probe); ``HealthMonitor``
runs the probes as execs in the container through the engine, stores ``State.Health`` and emits
``health_status: <status>`` events. See docs/design/health.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass, field

from berth.containers.state import Status

log = logging.getLogger(__name__)

NS = 1_000_000_000
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_START_PERIOD = 0.0
DEFAULT_START_INTERVAL = 5.0
DEFAULT_RETRIES = 3
MAX_LOG_ENTRIES = 5
MAX_OUTPUT = 4096

STARTING, HEALTHY, UNHEALTHY, NONE = "starting", "healthy", "unhealthy", "none"


def _seconds(ns: object, default: float) -> float:
    """A Healthcheck duration (nanoseconds; 0 or absent means the default) in seconds."""
    try:
        v = int(ns or 0)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default
    return v / NS if v > 0 else default


@dataclass(frozen=True)
class HealthConfig:
    """A container's health check: the probe command and its timing (seconds)."""

    argv: tuple[str, ...]
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    start_period: float = DEFAULT_START_PERIOD
    start_interval: float = DEFAULT_START_INTERVAL
    retries: int = DEFAULT_RETRIES

    @classmethod
    def from_config(cls, hc: dict | None) -> HealthConfig | None:
        """None when there is no check: no Healthcheck, an empty Test, or ``["NONE"]``."""
        if not hc:
            return None
        test = list(hc.get("Test") or [])
        if not test or test[0] == "NONE":
            return None
        if test[0] == "CMD":
            argv = test[1:]
        elif test[0] == "CMD-SHELL":
            argv = ["/bin/sh", "-c", " ".join(test[1:])]
        else:  # moby: an unknown first word is an error at probe time; treat it as a command
            argv = test
        if not argv:
            return None
        retries = int(hc.get("Retries") or 0)
        return cls(
            argv=tuple(str(a) for a in argv),
            interval=_seconds(hc.get("Interval"), DEFAULT_INTERVAL),
            timeout=_seconds(hc.get("Timeout"), DEFAULT_TIMEOUT),
            start_period=_seconds(hc.get("StartPeriod"), DEFAULT_START_PERIOD),
            start_interval=_seconds(hc.get("StartInterval"), DEFAULT_START_INTERVAL),
            retries=retries if retries > 0 else DEFAULT_RETRIES,
        )


def validate(hc: dict | None) -> None:
    """moby's validateHealthCheck at create: durations 0 or >= 1ms, Retries not negative."""
    from berth.errors import InvalidArgument

    if not hc:
        return
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        try:
            v = int(hc.get(key) or 0)
        except (TypeError, ValueError):
            raise InvalidArgument(f"invalid {key} in Healthcheck: {hc.get(key)!r}") from None
        if v != 0 and v < 1_000_000:
            raise InvalidArgument(f"{key} in Healthcheck cannot be less than 1ms")
    try:
        retries = int(hc.get("Retries") or 0)
    except (TypeError, ValueError):
        raise InvalidArgument(f"invalid Retries in Healthcheck: {hc.get('Retries')!r}") from None
    if retries < 0:
        raise InvalidArgument("Retries in Healthcheck cannot be negative")


def rfc3339(t: float) -> str:
    """Docker's timestamp with nanoseconds (``2024-01-02T03:04:05.123456789Z``)."""
    sec = int(t)
    frac = int(round((t - sec) * NS))
    if frac >= NS:
        sec, frac = sec + 1, frac - NS
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


@dataclass
class HealthState:
    """The health state machine of one container run; no I/O, times are passed in."""

    cfg: HealthConfig
    started_at: float
    status: str = STARTING
    failing_streak: int = 0
    log: list[dict] = field(default_factory=list)

    @classmethod
    def resume(cls, cfg: HealthConfig, started_at: float, prev: dict | None) -> HealthState:
        """A (re)started container: status back to starting, streak 0, the old log kept."""
        return cls(cfg, started_at, log=list((prev or {}).get("Log") or [])[-MAX_LOG_ENTRIES:])

    def next_delay(self, now: float) -> float:
        """Seconds until the next probe: StartInterval while starting inside the start period."""
        if now - self.started_at < self.cfg.start_period and self.status == STARTING:
            return self.cfg.start_interval
        return self.cfg.interval

    def record(self, start: float, end: float, exit_code: int, output: str) -> str | None:
        """Add one probe result; returns the new status when it changed, else None."""
        old = self.status
        self.log.append({"Start": rfc3339(start), "End": rfc3339(end), "ExitCode": exit_code,
                         "Output": output[:MAX_OUTPUT]})
        del self.log[:-MAX_LOG_ENTRIES]
        if exit_code == 0:
            self.failing_streak = 0
            self.status = HEALTHY
        elif not (self.status == STARTING and start - self.started_at < self.cfg.start_period):
            self.failing_streak += 1
            if self.failing_streak >= self.cfg.retries:
                self.status = UNHEALTHY
        return self.status if self.status != old else None

    def to_dict(self) -> dict:
        return {"Status": self.status, "FailingStreak": self.failing_streak, "Log": list(self.log)}


class _CaptureIO:
    """An AttachIO that keeps stdout and stderr together, up to MAX_OUTPUT bytes."""

    tty = False
    detached = False

    def __init__(self) -> None:
        self.buf = bytearray()

    async def read_stdin(self) -> bytes:
        return b""

    async def write(self, stream: int, data: bytes) -> None:
        room = MAX_OUTPUT - len(self.buf)
        if room > 0:
            self.buf += data[:room]


class HealthMonitor:
    """Runs a container's health probes while it runs (``start()``; ``await stop()``)."""

    def __init__(self, engine, cid: str, *, clock=time.time) -> None:
        self.engine = engine
        self.cid = cid
        self.clock = clock
        self.task: asyncio.Task | None = None
        self.state: HealthState | None = None

    def start(self) -> HealthMonitor:
        """Set Health to starting and schedule the probes (needs a running event loop).
        A container without a health check gets no task and no Health."""
        c = self.engine.containers.get(self.cid)
        cfg = HealthConfig.from_config(c.config.get("Healthcheck"))
        if cfg is None:
            return self
        self.state = HealthState.resume(cfg, c.state.started_at or self.clock(), c.state.health)
        self._save()
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"health-{self.cid[:12]}")
        return self

    async def stop(self) -> None:
        """Stop probing (the container stopped or is being removed); the last state is kept."""
        task, self.task = self.task, None
        if task is None or task is asyncio.current_task():
            return
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001
            pass

    def stop_nowait(self) -> None:
        """Cancel the probe task from synchronous code."""
        task, self.task = self.task, None
        if task is not None:
            task.cancel()

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    # ---------------------------------------------------------------- internals
    async def _run(self) -> None:
        assert self.state is not None
        while True:
            await asyncio.sleep(self.state.next_delay(self.clock()))
            status = self._container_status()
            if status == Status.PAUSED:
                continue  # no probe while paused; the checks go on after unpause
            if status != Status.RUNNING:
                return
            start = self.clock()
            code, out = await self._probe(self.state.cfg)
            if self._container_status() not in (Status.RUNNING, Status.PAUSED):
                return  # moby drops a result that arrives after the stop
            changed = self.state.record(start, self.clock(), code, out)
            self._save()
            if changed:
                c = self.engine.containers.get(self.cid)
                self.engine._emit(f"health_status: {changed}", c)

    def _container_status(self) -> str:
        from berth.errors import NotFound

        try:
            return str(self.engine.containers.get(self.cid).state.status)
        except NotFound:
            return ""

    async def _probe(self, cfg: HealthConfig) -> tuple[int, str]:
        """Run the probe as an exec; (exit code, output). -1 for a timeout or a failed exec."""
        from berth.errors import BerthError

        try:
            eid = self.engine.exec_create(
                self.cid, {"Cmd": list(cfg.argv), "AttachStdout": True, "AttachStderr": True})["Id"]
        except BerthError as e:
            return -1, str(e)
        io = _CaptureIO()
        task = asyncio.get_running_loop().create_task(
            self.engine.exec_start(eid, io, detach=False, tty=False))
        try:
            await asyncio.wait_for(asyncio.shield(task), cfg.timeout)
            code = self.engine.exec_inspect(eid).get("ExitCode")
            return (int(code) if code is not None else -1), io.buf.decode(errors="replace")
        except TimeoutError:
            if self._kill_exec(eid):  # let the exec's end be recorded before the next probe
                try:
                    await asyncio.wait_for(task, 5)
                except (TimeoutError, BerthError, OSError):
                    pass
            return -1, f"Health check exceeded timeout ({_go_duration(cfg.timeout)})"
        except (BerthError, OSError) as e:
            return -1, str(e)
        finally:
            if not task.done():
                task.cancel()
            self._forget_exec(eid)

    def _kill_exec(self, eid: str) -> bool:
        """SIGKILL a probe that ran over its timeout (moby kills it too)."""
        e = getattr(self.engine, "_execs", {}).get(eid) or {}
        pid = int(e.get("Pid") or 0)
        if not (e.get("Running") and pid > 0):
            return False
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True

    def _forget_exec(self, eid: str) -> None:
        """Probe execs are not listed in ExecIDs (moby unregisters them after the probe)."""
        forget = getattr(self.engine, "exec_forget", None)
        if forget is not None:
            forget(eid)
            return
        getattr(self.engine, "_execs", {}).pop(eid, None)
        try:
            c = self.engine.containers.get(self.cid)
        except Exception:  # noqa: BLE001
            return
        ids = c.extra.get("exec_ids") or []
        if eid in ids:
            ids.remove(eid)
            self.engine.containers.save_state(c)

    def _save(self) -> None:
        from berth.errors import NotFound

        try:
            c = self.engine.containers.get(self.cid)
        except NotFound:
            return
        c.state.health = self.state.to_dict() if self.state else None
        self.engine.containers.save_state(c)


def _go_duration(s: float) -> str:
    """Go's time.Duration String() for the common cases (``30s``, ``1.5s``, ``500ms``, ``1m0s``)."""
    if s < 1:
        ms = s * 1000
        return f"{ms:g}ms"
    if s < 60:
        return f"{s:g}s"
    m, sec = divmod(s, 60)
    if m < 60:
        return f"{int(m)}m{sec:g}s"
    h, m = divmod(int(m), 60)
    return f"{h}h{m}m{sec:g}s"
