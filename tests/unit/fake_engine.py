"""An in-memory engine for API/client/CLI tests, and a helper that serves it on a unix socket.

Containers run toy "programs" chosen by Cmd: ``echo ARGS``, ``sleep N``, ``cat`` (echo stdin),
``exit N``, ``err TEXT`` (to stderr). Everything happens on the server's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
import time
from typing import Any

from berth.errors import Conflict, InvalidArgument, NotFound, NotModified

IMAGE_ID = "sha256:" + hashlib.sha256(b"busybox").hexdigest()


def _ts(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


class _Container:
    def __init__(self, cid: str, name: str, config: dict) -> None:
        self.id, self.name, self.config = cid, name, config
        self.created = time.time()
        self.status = "created"
        self.exit_code = 0
        self.started_at = self.finished_at = 0.0
        self.log: list[tuple[float, int, bytes]] = []
        self.subscribers: list[asyncio.Queue] = []
        self.exit_waiters: list[asyncio.Future] = []
        self.remove_waiters: list[asyncio.Future] = []
        self.stdin: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None

    @property
    def tty(self) -> bool:
        return bool(self.config.get("Tty"))


class _FakeCore:
    def __init__(self) -> None:
        self.containers: dict[str, _Container] = {}
        self.execs: dict[str, dict] = {}
        self.images = [{"Id": IMAGE_ID, "ParentId": "", "RepoTags": ["busybox:latest"], "RepoDigests": [],
                        "Created": 1700000000, "Size": 4261234, "SharedSize": -1, "Labels": {},
                        "Containers": -1}]
        self.events_log: list[dict] = []
        self.event_subs: list[asyncio.Queue] = []
        self.resizes: list[tuple[str, int, int]] = []
        self.calls: list[str] = []

    # -- helpers -------------------------------------------------------------------------------
    def _get(self, ref: str) -> _Container:
        ref = ref.lstrip("/")
        if ref in self.containers:
            return self.containers[ref]
        for c in self.containers.values():
            if c.name == ref:
                return c
        hits = [c for c in self.containers.values() if c.id.startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        raise NotFound(f"No such container: {ref}")

    def _event(self, c: _Container, action: str, **attrs: str) -> None:
        now = time.time()
        ev = {"Type": "container", "Action": action, "status": action, "id": c.id, "from": "busybox",
              "Actor": {"ID": c.id, "Attributes": {"image": "busybox", "name": c.name, **attrs}},
              "scope": "local", "time": int(now), "timeNano": int(now * 1e9)}
        self.events_log.append(ev)
        for q in self.event_subs:
            q.put_nowait(ev)

    def _emit(self, c: _Container, stream: int, data: bytes) -> None:
        c.log.append((time.time(), stream, data))
        for q in c.subscribers:
            q.put_nowait((stream, data))

    # -- system --------------------------------------------------------------------------------
    def version(self) -> dict:
        return {"Version": "0.1.0", "ApiVersion": "1.44", "MinAPIVersion": "1.24", "Os": "linux",
                "Arch": "amd64", "KernelVersion": os.uname().release, "GoVersion": "python3",
                "GitCommit": "fake", "BuildTime": "2026-01-01T00:00:00Z",
                "Components": [{"Name": "Engine", "Version": "0.1.0", "Details": {"ApiVersion": "1.44"}}]}

    def info(self) -> dict:
        running = sum(c.status == "running" for c in self.containers.values())
        return {"ID": "fake", "Name": "fakehost", "ServerVersion": "0.1.0", "OSType": "linux",
                "OperatingSystem": "fake", "Architecture": "x86_64", "Containers": len(self.containers),
                "ContainersRunning": running, "ContainersPaused": 0,
                "ContainersStopped": len(self.containers) - running, "Images": len(self.images),
                "Driver": "vfs", "NCPU": 2, "MemTotal": 1 << 30, "ExperimentalBuild": False,
                "Swarm": {"LocalNodeState": "inactive"}, "KernelVersion": os.uname().release}

    def ping(self) -> None:
        return None

    async def events(self, since, until, filters):
        q: asyncio.Queue = asyncio.Queue(maxsize=1000)
        for ev in self.events_log:
            if since is not None and ev["time"] >= since and (until is None or ev["time"] <= until):
                yield ev
        self.event_subs.append(q)
        try:
            while True:
                timeout = None if until is None else max(0.0, until - time.time())
                try:
                    ev = await asyncio.wait_for(q.get(), timeout)
                except TimeoutError:
                    return
                yield ev
        finally:
            self.event_subs.remove(q)

    # -- containers ----------------------------------------------------------------------------
    def create_container(self, name, config, platform=None) -> dict:
        self.calls.append("create")
        if config.get("Image") not in ("busybox", "busybox:latest", IMAGE_ID):
            raise NotFound(f"No such image: {config.get('Image')}")
        if name:
            for c in self.containers.values():
                if c.name == name:
                    raise Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                                   f'"{c.id}". You have to remove (or rename) that container to be able to '
                                   "reuse that name.")
        cid = hashlib.sha256(os.urandom(16)).hexdigest()
        name = name or f"fake_{cid[:6]}"
        self.containers[cid] = _Container(cid, name, config)
        self._event(self.containers[cid], "create")
        return {"Id": cid, "Warnings": []}

    async def start(self, id: str) -> None:
        self.calls.append("start")
        c = self._get(id)
        if c.status == "running":
            raise NotModified()
        c.status, c.started_at = "running", time.time()
        self._event(c, "start")
        c.task = asyncio.get_running_loop().create_task(self._run(c))

    async def _run(self, c: _Container) -> None:
        cmd = list(c.config.get("Cmd") or ["true"])
        code = 0
        try:
            prog, args = cmd[0], cmd[1:]
            await asyncio.sleep(0.01)
            if prog == "echo":
                self._emit(c, 1, (" ".join(args) + "\n").encode())
            elif prog == "err":
                self._emit(c, 2, (" ".join(args) + "\n").encode())
            elif prog == "lines":
                for i in range(int(args[0])):
                    self._emit(c, 1, f"line {i}\n".encode())
            elif prog == "sleep":
                await asyncio.sleep(float(args[0]))
            elif prog == "cat":
                while data := await c.stdin.get():
                    self._emit(c, 1, data)
            elif prog == "exit":
                code = int(args[0])
        except asyncio.CancelledError:
            code = 137
        self._exit(c, code)

    def _exit(self, c: _Container, code: int) -> None:
        c.status, c.exit_code, c.finished_at = "exited", code, time.time()
        self._event(c, "die", exitCode=str(code))
        for q in c.subscribers:
            q.put_nowait(None)
        for f in c.exit_waiters:
            if not f.done():
                f.set_result({"StatusCode": code, "Error": None})
        c.exit_waiters.clear()
        if (c.config.get("HostConfig") or {}).get("AutoRemove"):
            self._delete(c)

    def _delete(self, c: _Container) -> None:
        self.containers.pop(c.id, None)
        self._event(c, "destroy")
        for f in c.remove_waiters:
            if not f.done():
                f.set_result({"StatusCode": c.exit_code, "Error": None})

    async def stop(self, id, t=None, signal=None) -> None:
        c = self._get(id)
        if c.status != "running":
            raise NotModified()
        c.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await c.task

    async def restart(self, id, t=None, signal=None) -> None:
        with contextlib.suppress(NotModified):
            await self.stop(id, t, signal)
        await self.start(id)

    async def kill(self, id, signal=None) -> None:
        c = self._get(id)
        if c.status != "running":
            raise Conflict(f"cannot kill container: {id}: container {c.id} is not running")
        if signal and signal not in ("KILL", "TERM", "HUP", "INT", "SIGKILL", "9", "15"):
            raise InvalidArgument(f"Invalid signal: {signal}")
        await self.stop(id)

    async def remove(self, id, force=False, volumes=False, link=False) -> None:
        c = self._get(id)
        if c.status == "running":
            if not force:
                raise Conflict(f'cannot remove container "/{c.name}": container is running: stop the '
                               "container before removing or force remove")
            await self.stop(id)
        self._delete(c)

    def _summary(self, c: _Container) -> dict:
        status = ("Up 2 seconds" if c.status == "running" else "Created" if c.status == "created"
                  else f"Exited ({c.exit_code}) 3 seconds ago")
        return {"Id": c.id, "Names": ["/" + c.name], "Image": c.config.get("Image", ""), "ImageID": IMAGE_ID,
                "Command": " ".join(c.config.get("Cmd") or []), "Created": int(c.created),
                "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}]
                if c.config.get("ExposedPorts") else [],
                "Labels": c.config.get("Labels") or {}, "State": c.status, "Status": status,
                "HostConfig": {"NetworkMode": "bridge"}, "NetworkSettings": {"Networks": {}}, "Mounts": []}

    def list_containers(self, all=False, limit=None, size=False, filters=None) -> list[dict]:
        filters = filters or {}
        out = []
        for c in sorted(self.containers.values(), key=lambda c: -c.created):
            if not all and c.status != "running" and "status" not in filters:
                continue
            if "status" in filters and c.status not in filters["status"]:
                continue
            if "name" in filters and not any(n in c.name for n in filters["name"]):
                continue
            if "id" in filters and not any(c.id.startswith(i) for i in filters["id"]):
                continue
            labels = c.config.get("Labels") or {}
            ok = True
            for lab in filters.get("label", []):
                k, eq, v = lab.partition("=")
                if k not in labels or (eq and labels[k] != v):
                    ok = False
            if ok:
                out.append(self._summary(c))
        return out[:limit] if limit else out

    def inspect_container(self, id, size=False) -> dict:
        c = self._get(id)
        cfg = {k: v for k, v in c.config.items() if k not in ("HostConfig", "NetworkingConfig")}
        cfg.setdefault("Tty", False)
        cfg.setdefault("OpenStdin", False)
        hc = {"LogConfig": {"Type": "json-file", "Config": {}}, "NetworkMode": "bridge", "AutoRemove": False,
              "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, **(c.config.get("HostConfig") or {})}
        return {"Id": c.id, "Name": "/" + c.name, "Created": _ts(c.created), "Image": IMAGE_ID,
                "Path": (c.config.get("Cmd") or [""])[0], "Args": (c.config.get("Cmd") or [])[1:],
                "State": {"Status": c.status, "Running": c.status == "running", "Paused": False,
                          "Restarting": False, "OOMKilled": False, "Dead": False, "Pid": 0,
                          "ExitCode": c.exit_code, "Error": "", "StartedAt": _ts(c.started_at),
                          "FinishedAt": _ts(c.finished_at)},
                "Config": cfg, "HostConfig": hc,
                "NetworkSettings": {"Ports": {}, "Networks": {}}, "Mounts": []}

    async def wait(self, id, condition="not-running"):
        c = self._get(id)
        fut = asyncio.get_running_loop().create_future()
        if condition == "not-running" and c.status != "running":
            fut.set_result({"StatusCode": c.exit_code, "Error": None})
        elif condition == "removed":
            c.remove_waiters.append(fut)
        else:
            c.exit_waiters.append(fut)
        return fut

    async def attach(self, id, io, *, stdin, stdout, stderr, logs, stream) -> None:
        c = self._get(id)
        q: asyncio.Queue = asyncio.Queue()
        c.subscribers.append(q)

        async def pump_in() -> None:
            while data := await io.read_stdin():
                c.stdin.put_nowait(data)
            if c.config.get("StdinOnce") or not io.detached:
                c.stdin.put_nowait(b"")
            if io.detached:
                q.put_nowait(None)

        pin = asyncio.get_running_loop().create_task(pump_in()) if stdin else None
        try:
            if logs:
                for _, s, data in list(c.log):
                    await io.write(s, data)
            if not stream:
                return
            while (item := await q.get()) is not None:
                s, data = item
                if (s == 1 and stdout) or (s == 2 and stderr):
                    await io.write(s, data)
        finally:
            c.subscribers.remove(q)
            if pin:
                pin.cancel()

    async def logs(self, id, *, stdout, stderr, follow, since, until, timestamps, tail, details=False):
        c = self._get(id)
        q: asyncio.Queue = asyncio.Queue()
        if follow:
            c.subscribers.append(q)
        entries = list(c.log)
        if tail is not None:
            entries = entries[-tail:] if tail else []
        try:
            for t, s, data in entries:
                if (s == 1 and stdout) or (s == 2 and stderr):
                    yield s, (_ts(t) + " ").encode() + data if timestamps else data
            if follow and c.status == "running":
                while (item := await q.get()) is not None:
                    s, data = item
                    if (s == 1 and stdout) or (s == 2 and stderr):
                        yield s, data
        finally:
            if follow:
                c.subscribers.remove(q)

    def resize(self, id, height, width) -> None:
        self.resizes.append((self._get(id).id, height, width))

    def top(self, id, ps_args=None) -> dict:
        self._get(id)
        return {"Titles": ["UID", "PID", "CMD"], "Processes": [["root", "4242", "sleep"]]}

    def rename(self, id, name) -> None:
        self._get(id).name = name

    # -- exec ----------------------------------------------------------------------------------
    def exec_create(self, id, config) -> dict:
        c = self._get(id)
        if c.status != "running":
            raise Conflict(f"container {c.id} is not running")
        eid = hashlib.sha256(os.urandom(8)).hexdigest()
        self.execs[eid] = {"ID": eid, "ContainerID": c.id, "Running": False, "ExitCode": None,
                           "OpenStdin": bool(config.get("AttachStdin")),
                           "ProcessConfig": {"tty": bool(config.get("Tty")), "entrypoint": config["Cmd"][0],
                                             "arguments": config["Cmd"][1:]}, "Cmd": config["Cmd"]}
        return {"Id": eid}

    def exec_inspect(self, exec_id) -> dict:
        if exec_id not in self.execs:
            raise NotFound(f"No such exec instance: {exec_id}")
        e = self.execs[exec_id]
        return {k: v for k, v in e.items() if k != "Cmd"}

    async def exec_start(self, exec_id, io, *, detach, tty) -> None:
        e = self.execs[exec_id]
        e["Running"] = True
        cmd = e["Cmd"]
        await asyncio.sleep(0.005)
        code = 0
        if cmd[0] == "echo":
            if io:
                await io.write(1, (" ".join(cmd[1:]) + "\n").encode())
        elif cmd[0] == "cat" and io:
            while data := await io.read_stdin():
                await io.write(1, data)
        elif cmd[0] == "exit":
            code = int(cmd[1])
        elif cmd[0] == "nosuch":
            code = 127
            if io:
                await io.write(2, b"exec: nosuch: not found\n")
        e["Running"], e["ExitCode"] = False, code

    def exec_resize(self, exec_id, height, width) -> None:
        self.exec_inspect(exec_id)
        self.resizes.append((exec_id, height, width))

    # -- images --------------------------------------------------------------------------------
    def _image(self, name: str) -> dict:
        n = name.removeprefix("docker.io/library/")
        for img in self.images:
            if n in (img["Id"], img["Id"][7:19]) or n in img["RepoTags"] or f"{n}:latest" in img["RepoTags"]:
                return img
        raise NotFound(f"No such image: {name if ':' in name else name + ':latest'}")

    def list_images(self, all=False, filters=None, digests=False) -> list[dict]:
        refs = (filters or {}).get("reference")
        return [i for i in self.images if not refs or any(t.split(":")[0] in refs or t in refs
                                                           for t in i["RepoTags"])]

    def inspect_image(self, name) -> dict:
        img = self._image(name)
        return {"Id": img["Id"], "RepoTags": img["RepoTags"], "RepoDigests": [],
                "Created": _ts(img["Created"]),
                "Config": {"Cmd": ["sh"]}, "Architecture": "amd64", "Os": "linux", "Size": img["Size"],
                "RootFS": {"Type": "layers", "Layers": []}}

    def tag_image(self, name, repo, tag) -> None:
        img = self._image(name)
        repo = repo.removeprefix("docker.io/").removeprefix("library/")
        img["RepoTags"].append(f"{repo}:{tag or 'latest'}")

    def remove_image(self, name, force=False, noprune=False) -> list[dict]:
        img = self._image(name)
        full = name if ":" in name else name + ":latest"
        if full in img["RepoTags"] and len(img["RepoTags"]) > 1:
            img["RepoTags"].remove(full)
            return [{"Untagged": full}]
        self.images.remove(img)
        return [{"Untagged": t} for t in img["RepoTags"]] + [{"Deleted": img["Id"]}]

    def image_history(self, name) -> list[dict]:
        img = self._image(name)
        return [{"Id": img["Id"], "Created": img["Created"], "CreatedBy": "ADD rootfs",
                 "Tags": img["RepoTags"],
                 "Size": img["Size"], "Comment": ""}]

    async def pull(self, image, tag, platform, auth):
        yield {"status": f"Pulling from {image}", "id": tag or "latest"}
        if image.endswith("missing"):
            raise NotFound(f"pull access denied for {image}")
        yield {"status": f"Status: Image is up to date for {image}:{tag}"}

    async def load_images(self, source, quiet):
        size = 0
        async for chunk in source:
            size += len(chunk)
        yield {"stream": f"Loaded image: busybox:latest ({size} bytes)\n"}

    async def import_image(self, source, repo, tag, message, changes):
        h = hashlib.sha256()
        async for chunk in source:
            h.update(chunk)
        yield {"status": "sha256:" + h.hexdigest()}

    async def push(self, name, tag, auth):
        self._image(name)
        yield {"status": f"The push refers to repository [{name}]"}

    async def save_images(self, names):
        for n in names:
            self._image(n)
        for i in range(4):
            yield bytes([i]) * 1024


class FakeExtras:
    """Networks, archive (a dict filesystem per container), stats and build for the fake engine."""

    def _net_init(self) -> None:
        if not hasattr(self, "networks"):
            self.networks = {n: self._net(n, n) for n in ("bridge", "host", "none")}
            self.files: dict[str, dict[str, bytes]] = {}

    def _net(self, name: str, driver: str, labels: dict | None = None) -> dict:
        return {"Name": name, "Id": hashlib.sha256(name.encode()).hexdigest(), "Created": _ts(time.time()),
                "Scope": "local", "Driver": driver, "EnableIPv6": False, "Internal": False,
                "Attachable": False,
                "IPAM": {"Driver": "default", "Options": {}, "Config": []}, "Containers": {}, "Options": {},
                "Labels": labels or {}}

    def _net_get(self, id: str) -> dict:
        self._net_init()
        for n in self.networks.values():
            if id in (n["Name"], n["Id"]) or n["Id"].startswith(id):
                return n
        raise NotFound(f"network {id} not found")

    def list_networks(self, filters=None) -> list[dict]:
        self._net_init()
        return list(self.networks.values())

    def inspect_network(self, id) -> dict:
        return self._net_get(id)

    def create_network(self, body) -> dict:
        self._net_init()
        name = body.get("Name")
        if name in self.networks:
            raise Conflict(f"network with name {name} already exists")
        self.networks[name] = self._net(name, body.get("Driver") or "bridge", body.get("Labels"))
        return {"Id": self.networks[name]["Id"], "Warning": ""}

    def remove_network(self, id) -> None:
        self.networks.pop(self._net_get(id)["Name"])

    # -- archive ---------------------------------------------------------------------------------
    def archive_stat(self, id, path) -> dict:
        c = self._get(id)
        fs = self.__dict__.setdefault("files", {}).setdefault(c.id, {})
        p = "/" + path.strip("/")
        if p in fs:
            return {"name": os.path.basename(p), "size": len(fs[p]), "mode": 0o644,
                    "mtime": "2024-01-01T00:00:00Z", "linkTarget": ""}
        if p in ("/", "/tmp") or any(f.startswith(p + "/") for f in fs):
            return {"name": os.path.basename(p) or "/", "size": 4096, "mode": (1 << 31) | 0o755,
                    "mtime": "2024-01-01T00:00:00Z", "linkTarget": ""}
        raise NotFound(f"Could not find the file {path} in container {id}")

    async def archive_get(self, id, path):
        import io
        import tarfile
        info = self.archive_stat(id, path)
        data = self.files[self._get(id).id]["/" + path.strip("/")]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            ti = tarfile.TarInfo(info["name"])
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))

        async def gen():
            yield buf.getvalue()
        return info, gen()

    async def archive_put(self, id, path, source, *, no_overwrite_dir_non_dir=False, copy_uid_gid=False):
        import io
        import tarfile
        c = self._get(id)
        raw = b"".join([chunk async for chunk in source])
        try:
            tf = tarfile.open(fileobj=io.BytesIO(raw), mode="r:")
            members = [(m, tf.extractfile(m)) for m in tf.getmembers() if m.isfile()]
        except tarfile.TarError as e:
            raise InvalidArgument(f"bad tar: {e}") from None
        fs = self.__dict__.setdefault("files", {}).setdefault(c.id, {})
        for m, f in members:
            fs["/" + path.strip("/") + "/" + m.name.strip("/")] = f.read()

    # -- stats, build ----------------------------------------------------------------------------
    async def stats(self, id, stream=True, one_shot=False):
        c = self._get(id)
        for i in range(2 if stream else 1):
            yield {"read": _ts(time.time()), "id": c.id, "name": "/" + c.name,
                   "cpu_stats": {"cpu_usage": {"total_usage": 1000 * (i + 1)},
                                 "system_cpu_usage": 10**6 * (i + 1), "online_cpus": 2},
                   "precpu_stats": {"cpu_usage": {"total_usage": 1000 * i}, "system_cpu_usage": 10**6 * i},
                   "memory_stats": {"usage": 4096, "limit": 1 << 30, "stats": {}},
                   "pids_stats": {"current": 1},
                   "networks": {}, "blkio_stats": {}}

    async def build(self, context, options, registry_auth):
        size = 0
        async for chunk in context:
            size += len(chunk)
        if options["buildargs"].get("FAIL"):
            yield {"stream": "Step 1/1 : RUN exit 1\n"}
            msg = "The command '/bin/sh -c exit 1' returned a non-zero code: 1"
            yield {"errorDetail": {"code": 1, "message": msg}, "error": msg}
            return
        iid = "sha256:" + hashlib.sha256(str(size).encode()).hexdigest()
        self.images.append({"Id": iid, "ParentId": "", "RepoTags": [t if ":" in t else t + ":latest"
                                                                     for t in options["t"]],
                            "RepoDigests": [], "Created": int(time.time()), "Size": size, "SharedSize": -1,
                            "Labels": options["labels"], "Containers": -1})
        yield {"stream": f"Step 1/1 : FROM busybox ({size} bytes of context, rm={options['rm']})\n"}
        yield {"aux": {"ID": iid}}
        yield {"stream": f"Successfully built {iid[7:19]}\n"}
        for t in options["t"]:
            yield {"stream": f"Successfully tagged {t}\n"}


class FakeEngine(_FakeCore, FakeExtras):
    """The fake engine used by the API, client and CLI tests."""


class ServerThread:
    """Runs an ApiServer with ``engine`` on a unix socket in a background event loop."""

    def __init__(self, engine: Any, sock_path: str, **server_kw: Any) -> None:
        from berth.api.server import ApiServer
        self.engine, self.path = engine, sock_path
        self.loop = asyncio.new_event_loop()
        self.server = ApiServer(engine, **server_kw)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        self.call(self.server.listen_unix(self.path))
        return self

    def call(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __exit__(self, *exc: Any) -> None:
        self.call(self._stop_containers())
        self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _stop_containers(self) -> None:
        conts = getattr(self.engine, "containers", {}).values()
        tasks = [c.task for c in conts if c.task and not c.task.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        return "unix://" + self.path


def make_test_certs(d: str) -> str:
    """A throw-away CA, a server cert for 127.0.0.1 and a client cert in directory d (needs openssl)."""
    import subprocess

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem",
         "-days", "1", "-subj", "/CN=test-ca")
    for name, cn, ext in (("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1\n"),
                          ("client", "client", "extendedKeyUsage=clientAuth\n")):
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-key.pem", "-out", f"{name}.csr",
             "-subj", f"/CN={cn}")
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext)
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext")
    return d
