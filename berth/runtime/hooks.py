"""OCI hooks: run host-side (or in init) with the container state as JSON on stdin."""

from __future__ import annotations

import os
import time

from berth.errors import BerthError


class HookError(BerthError):
    pass


def run(hooks: list[dict], state: dict, name: str) -> None:
    """Run each hook in order; a non-zero exit, a signal or a timeout raises HookError."""
    if not hooks:
        return
    from berth.runtime import fastjson

    data = fastjson.dumps(state).encode()
    for i, h in enumerate(hooks):
        args = h.get("args") or [h["path"]]
        env = dict(e.split("=", 1) for e in h.get("env") or [])
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.dup2(r, 0)
                os.closerange(3, 65536)
                os.execve(h["path"], args, env)
            except BaseException:
                os._exit(127)
        os.close(r)
        try:
            os.write(w, data)
        except BrokenPipeError:
            pass
        os.close(w)
        timeout = h.get("timeout")
        deadline = time.monotonic() + timeout if timeout else None
        while True:
            wpid, status = os.waitpid(pid, os.WNOHANG if deadline else 0)
            if wpid:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise HookError(f"{name} hook #{i} ({h['path']}) timed out after {timeout}s")
            time.sleep(0.01)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise HookError(f"{name} hook #{i} ({h['path']}) failed with status {code}")
