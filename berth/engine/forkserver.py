"""The fork server: a single-threaded, pre-imported process that starts container monitors.

berthd starts it (``posix_spawn`` through ``subprocess``, before it needs any monitor) and
sends it one JSON job per line on its stdin; for each job the server forks a detached monitor
(``berth.engine.monitor.spawn``) and answers one JSON line on its stdout. Forking a warm,
``gc.freeze()``-d interpreter costs about a millisecond, and its pages are shared with every
monitor copy-on-write. The server exits when its stdin closes (berthd went away); monitors
already started are not its children and keep running.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys


def serve(rfile, wfile) -> int:
    """Read jobs from rfile, write reports to wfile, until EOF."""
    from berth.engine import monitor

    for line in rfile:
        if not line.strip():
            continue
        try:
            job = monitor.Job.from_dict(json.loads(line))
            report = monitor.spawn(job)
        except Exception as e:  # noqa: BLE001
            report = {"ok": False, "error": f"fork server: {e}"}
        wfile.write(json.dumps(report) + "\n")
        wfile.flush()
    return 0


def main() -> int:
    import gc

    # pre-import what every monitor and runtime invocation needs, then freeze the heap so
    # that forked children share it instead of dirtying it through reference counts
    import berth.engine.jsonlog  # noqa: F401
    import berth.engine.monitor  # noqa: F401

    try:
        import berth.runtime.cli  # noqa: F401
    except ImportError:
        pass
    gc.collect()
    gc.freeze()
    return serve(sys.stdin, sys.stdout)


def command() -> list[str]:
    """The argv that starts a fork server on the real interpreter with -I -S."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (f"import sys; sys.path[:0] = [{root!r}]; "
            "from berth.engine.forkserver import main; sys.exit(main())")
    return [sys.executable, "-I", "-S", "-c", code]


class ForkServerClient:
    """berthd's side: start the server on first use, send jobs one at a time, restart if it died."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._lock = asyncio.Lock()

    def _ensure(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          text=True, bufsize=1, close_fds=True,
                                          start_new_session=True)
        return self._proc

    def spawn_sync(self, job: dict) -> dict:
        proc = self._ensure()
        try:
            proc.stdin.write(json.dumps(job) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            self.close()
            return {"ok": False, "error": "fork server died"}
        return json.loads(line)

    async def spawn(self, job: dict) -> dict:
        async with self._lock:
            return await asyncio.get_running_loop().run_in_executor(None, self.spawn_sync, job)

    def close(self) -> None:
        if self._proc is not None:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
