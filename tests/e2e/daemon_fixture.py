"""Start a private berthd for a test: own data root, exec root, socket, bridge, nft table, cgroups."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Daemon:
    def __init__(self, base: str, *, runtime: str = "berth", extra_args: list[str] | None = None) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.base = base
        self.sock = os.path.join(base, "berth.sock")
        self.data = os.path.join(base, "data")
        self.exec_root = os.path.join(base, "exec")
        self.runtime = runtime
        self.extra_args = list(extra_args or [])  # e.g. more -H listeners and TLS flags
        self.cgroup_parent = f"berth-test-{self.tag}"
        self.bridge = f"bd{self.tag}"
        self.table = f"berth_d{self.tag}"
        self.proc: subprocess.Popen | None = None
        self.log = os.path.join(base, "berthd.log")

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    def argv(self) -> list[str]:
        code = (f"import sys; sys.path[:0] = [{ROOT!r}]; "
                "from berth.engine.daemon import main; sys.exit(main())")
        return [sys.executable, "-c", code, "--data-root", self.data, "--exec-root", self.exec_root,
                "-H", self.url, "--runtime", self.runtime, "--runtime-root", os.path.join(self.base, "rt"),
                "--cgroup-parent", self.cgroup_parent, "--bridge", self.bridge, "--nft-table", self.table,
                *self.extra_args]

    def start(self, timeout: float = 30) -> None:
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=logf, stderr=logf, start_new_session=True)
        logf.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("berthd exited:\n" + open(self.log).read()[-3000:])
            if os.path.exists(self.sock):
                try:
                    import socket

                    s = socket.socket(socket.AF_UNIX)
                    s.connect(self.sock)
                    s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
                    if s.recv(100).startswith(b"HTTP/1.1 200"):
                        s.close()
                        return
                    s.close()
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("berthd did not come up:\n" + open(self.log).read()[-3000:])

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def cleanup(self) -> None:
        """Remove every container (through a fresh daemon), then stop it and sweep leftovers."""
        try:
            if self.proc is None:
                self.start()
            import docker

            c = docker.DockerClient(base_url=self.url, version="1.44", timeout=60)
            for ctr in c.containers.list(all=True):
                try:
                    ctr.remove(force=True)
                except Exception:  # noqa: BLE001
                    pass
            c.close()
        finally:
            self.stop()
            subprocess.run(["nft", "delete", "table", "inet", self.table], capture_output=True)
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
            for ctrl in os.listdir("/sys/fs/cgroup"):
                p = os.path.join("/sys/fs/cgroup", ctrl, self.cgroup_parent)
                if os.path.isdir(p):
                    for sub in sorted(os.listdir(p), reverse=True):
                        if os.path.isdir(os.path.join(p, sub)):
                            try:
                                os.rmdir(os.path.join(p, sub))
                            except OSError:
                                pass
                    try:
                        os.rmdir(p)
                    except OSError:
                        pass
