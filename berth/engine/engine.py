"""The Engine facade: the one API the HTTP handlers (and later the builder) call.

It owns the stores (metadata, content, snapshots, images, containers), starts containers
through the fork server and their monitors, keeps container state in step with the kernel and
the monitors' exit records, and emits events. See docs/design/process-model.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import shutil
import signal as signal_mod
import time
from collections.abc import AsyncIterator
from dataclasses import asdict

from berth import __version__
from berth.config import Config
from berth.containers.state import Status
from berth.containers.store import Container, ContainerStore, new_id, validate_name
from berth.engine import jsonlog, monclient, specgen, users, views
from berth.engine.build_ops import BuildOps
from berth.engine.container_ops import ContainerOps
from berth.engine.events import EventBus
from berth.engine.forkserver import ForkServerClient
from berth.engine.health import HealthMonitor
from berth.engine.image_ops import ImageOps
from berth.engine.monitor import Job
from berth.engine.network_ops import NetworkOps
from berth.engine.volume_ops import VolumeOps
from berth.errors import BerthError, Conflict, InvalidArgument, NotFound, NotModified
from berth.sys import linux

log = logging.getLogger("berth.engine")

API_VERSION = "1.44"
MIN_API_VERSION = "1.24"
WAIT_CONDITIONS = ("not-running", "next-exit", "removed")
_NAMES_LEFT = (
    "admiring",
    "brave",
    "clever",
    "eager",
    "focused",
    "gallant",
    "happy",
    "jolly",
    "keen",
    "lucid",
    "nifty",
    "quirky",
    "serene",
    "tender",
    "vibrant",
    "zen",
)
_NAMES_RIGHT = (
    "babbage",
    "curie",
    "darwin",
    "euclid",
    "fermi",
    "galois",
    "hopper",
    "johnson",
    "knuth",
    "lovelace",
    "noether",
    "pascal",
    "ritchie",
    "shannon",
    "turing",
    "wozniak",
)


class Engine(ImageOps, ContainerOps, NetworkOps, VolumeOps, BuildOps):
    """Containers and images for one data root."""

    def __init__(self, cfg: Config) -> None:
        from berth.content import ContentStore
        from berth.images.store import ImageStore
        from berth.metadata.db import Database
        from berth.snapshots import open_snapshotter

        self.cfg = cfg
        for d in (cfg.data_root, cfg.exec_root):
            os.makedirs(d, mode=0o700, exist_ok=True)
        os.chmod(cfg.data_root, 0o700)
        self.db = Database(os.path.join(cfg.data_root, "metadata.db"))
        self.content = ContentStore(os.path.join(cfg.data_root, "content"))
        self.snapshotter = open_snapshotter(
            os.path.join(cfg.data_root, "snapshots"), self.db, cfg.storage_driver
        )
        self.containers = ContainerStore(self.db)
        self.images = ImageStore(
            self.db,
            self.content,
            self.snapshotter,
            in_use=lambda iid: bool(self.containers.using_image(iid)),
            container_snapshots=lambda: [c.snapshot_key for c in self.containers.all()],
        )
        self.bus = EventBus()
        self.forkserver = ForkServerClient()
        self.runtime = getattr(cfg, "runtime", "") or "berth"
        self._waiters: dict[str, list[tuple[str, asyncio.Future]]] = {}
        self._watch_tasks: dict[str, asyncio.Task] = {}
        self._started: dict[str, asyncio.Event] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._starting: dict[str, asyncio.Task] = {}
        self._restart_tasks: dict[str, asyncio.Task] = {}
        self._execs: dict[str, dict] = {}
        self._health: dict[str, HealthMonitor] = {}
        self.started_at = time.time()
        self._open_volumes()
        self._open_network()

    # ------------------------------------------------------------------ paths & helpers
    def state_dir(self, cid: str) -> str:
        return os.path.join(self.cfg.exec_root, "containers", cid)

    def data_dir(self, cid: str) -> str:
        return os.path.join(self.cfg.data_root, "containers", cid)

    def _paths(self, c: Container) -> dict:
        d = self.data_dir(c.id)
        return {
            "resolv": os.path.join(d, "resolv.conf"),
            "hostname": os.path.join(d, "hostname"),
            "hosts": os.path.join(d, "hosts"),
            "log": os.path.join(d, f"{c.id}-json.log"),
        }

    def _lock(self, cid: str) -> asyncio.Lock:
        return self._locks.setdefault(cid, asyncio.Lock())

    def _graph(self, c: Container) -> dict:
        data: dict = {}
        try:
            for m in self.snapshotter.mounts(c.snapshot_key):
                for o in m.options:
                    k, _, v = o.partition("=")
                    if k in ("lowerdir", "upperdir", "workdir"):
                        data[{"lowerdir": "LowerDir", "upperdir": "UpperDir", "workdir": "WorkDir"}[k]] = v
                if m.type == "bind":
                    data.setdefault("UpperDir", m.source)
        except BerthError:
            pass
        data["MergedDir"] = os.path.join(self.state_dir(c.id), "bundle", "rootfs")
        return {"Name": self.snapshotter.name, "Data": data}

    def _emit(self, action: str, c: Container, extra: dict | None = None) -> None:
        attrs = {"image": c.image_name, "name": c.name}
        attrs.update({k: v for k, v in (c.config.get("Labels") or {}).items()})
        attrs.update(extra or {})
        self.bus.emit("container", action, c.id, attrs)

    # ------------------------------------------------------------------ system
    def ping(self) -> None:
        return None

    def version(self) -> dict:
        uname = os.uname()
        return {
            "Platform": {"Name": "berth"},
            "Components": [
                {
                    "Name": "Engine",
                    "Version": __version__,
                    "Details": {
                        "ApiVersion": API_VERSION,
                        "MinAPIVersion": MIN_API_VERSION,
                        "Os": "linux",
                        "Arch": "amd64",
                        "KernelVersion": uname.release,
                        "GitCommit": "",
                        "GoVersion": platform.python_version(),
                    },
                }
            ],
            "Version": __version__,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "",
            "GoVersion": "python" + platform.python_version(),
            "Os": "linux",
            "Arch": _arch(),
            "KernelVersion": uname.release,
            "BuildTime": "",
        }

    def info(self) -> dict:
        cs = list(self.containers.all())
        count = {s: sum(1 for c in cs if c.state.status == s) for s in Status.ALL}
        from berth.runtime.cgroups import detect

        uname = os.uname()
        mem = 0
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
        return {
            "ID": "",
            "Containers": len(cs),
            "ContainersRunning": count[Status.RUNNING],
            "ContainersPaused": count[Status.PAUSED],
            "ContainersStopped": len(cs) - count[Status.RUNNING] - count[Status.PAUSED],
            "Images": len(self.images.all()),
            "Driver": self.snapshotter.name,
            "DriverStatus": [["Backing Filesystem", "extfs"]],
            "Plugins": {
                "Volume": ["local"],
                "Network": ["bridge", "host", "none"],
                "Log": ["json-file", "none"],
            },
            "MemoryLimit": True,
            "SwapLimit": True,
            "CpuCfsPeriod": True,
            "CpuCfsQuota": True,
            "CPUShares": True,
            "CPUSet": True,
            "PidsLimit": True,
            "IPv4Forwarding": True,
            "Debug": False,
            "NFd": len(os.listdir("/proc/self/fd")),
            "NGoroutines": len(asyncio.all_tasks()),
            "SystemTime": views.rfc3339(time.time()),
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": "2" if detect() == "v2" else "1",
            "NEventsListener": 0,
            "KernelVersion": uname.release,
            "OperatingSystem": _os_name(),
            "OSVersion": "",
            "OSType": "linux",
            "Architecture": uname.machine,
            "NCPU": os.cpu_count(),
            "MemTotal": mem,
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"]},
            "DockerRootDir": self.cfg.data_root,
            "Name": uname.nodename,
            "Labels": [],
            "ExperimentalBuild": False,
            "ServerVersion": __version__,
            "Runtimes": {"berth": {"path": "berth-runtime"}, "runc": {"path": "runc"}},
            "DefaultRuntime": "berth",
            "Swarm": {
                "LocalNodeState": "inactive",
                "NodeID": "",
                "NodeAddr": "",
                "ControlAvailable": False,
                "Error": "",
                "RemoteManagers": None,
            },
            "LiveRestoreEnabled": True,
            "Isolation": "",
            "InitBinary": "docker-init",
            "SecurityOptions": ["name=seccomp,profile=builtin"],
            "Warnings": [],
        }

    def events(self, since, until, filters) -> AsyncIterator[dict]:
        return self.bus.subscribe(since, until, filters)

    # ------------------------------------------------------------------ create
    def create_container(self, name: str | None, config: dict, platform: str | None = None) -> dict:
        if not isinstance(config, dict):
            raise InvalidArgument("invalid JSON: container config must be an object")
        host = dict(config.get("HostConfig") or {})
        cfg = {k: v for k, v in config.items() if k not in ("HostConfig", "NetworkingConfig")}
        ref = cfg.get("Image") or ""
        if not ref:
            raise InvalidArgument("Config cannot be empty in order to create a container")
        img = self._get_image(ref)
        image_cfg = self.images.read_config(img).config or {}
        cfg = specgen.merge_image_config(cfg, image_cfg if isinstance(image_cfg, dict) else {})
        if not (cfg.get("Entrypoint") or cfg.get("Cmd")):
            raise InvalidArgument("no command specified")
        warnings: list[str] = []
        self._check_host_config(host)
        from berth.engine import health
        health.validate(config.get("Healthcheck"))
        if name:
            name = validate_name(name)
        else:
            name = self._random_name()
        cid = new_id()
        chain = self.images.unpack(img.id)
        key = f"container-{cid}"
        mounts = self._plan_volumes(cfg, host)
        self.snapshotter.prepare(key, chain)
        _crash_point("create:after-snapshot")
        eps = (config.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
        c = Container(
            id=cid,
            name=name,
            image_id=img.id,
            image_name=ref,
            config=cfg,
            host_config=host,
            snapshot_key=key,
            extra={"endpoints_config": eps} if eps else {},
        )
        self._set_mounts(c, mounts)
        try:
            self.containers.add(c)
        except BaseException:
            self.snapshotter.remove(key)
            raise
        _crash_point("create:after-record")
        try:
            self._set_mounts(c, self._prepare_volumes(mounts))
            self.containers.save_state(c)
        except BaseException:
            self.containers.delete(cid)
            self.snapshotter.remove(key)
            raise
        os.makedirs(self.data_dir(cid), mode=0o700, exist_ok=True)
        self._emit("create", c)
        return {"Id": cid, "Warnings": warnings}

    def _check_host_config(self, host: dict) -> None:
        net = host.get("NetworkMode") or "default"
        if net not in ("default", "bridge", "none", "host") and not net.startswith("container:"):
            try:
                if self.net is None:
                    raise NotFound(net)
                self.net.get(net)
            except NotFound:
                raise NotFound(f"network {net} not found") from None
        rp = (host.get("RestartPolicy") or {}).get("Name") or "no"
        if rp not in ("no", "always", "unless-stopped", "on-failure", ""):
            raise InvalidArgument(f"invalid restart policy '{rp}'")
        if host.get("AutoRemove") and rp not in ("no", ""):
            raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
        lt = (host.get("LogConfig") or {}).get("Type") or "json-file"
        if lt not in ("json-file", "none", "local"):
            raise InvalidArgument(f"logger: no log driver named '{lt}' is registered")
        mem = int(host.get("Memory") or 0)
        if mem and mem < 6 * 1024 * 1024:
            raise InvalidArgument("Minimum memory limit allowed is 6MB")

    def _random_name(self) -> str:
        import random

        for _ in range(100):
            n = f"{random.choice(_NAMES_LEFT)}_{random.choice(_NAMES_RIGHT)}"
            try:
                self.containers.get(n)
            except NotFound:
                return n
        return "berth_" + new_id()[:8]

    # ------------------------------------------------------------------ start
    async def start(self, id: str) -> None:
        """Start a container. The start runs in a task of its own that a cancelled caller does
        not interrupt: it ends either recorded as running or with what it set up torn down."""
        cid = self.containers.get(id).id
        task = asyncio.get_running_loop().create_task(self._start_serialised(cid, restart=False))
        task.add_done_callback(_retrieve)
        await asyncio.shield(task)

    async def _start_serialised(self, cid: str, *, restart: bool) -> None:
        async with self._lock(cid):  # remove waits for this lock: it never runs mid-start
            self._starting[cid] = asyncio.current_task()
            try:
                try:
                    c = self.containers.get(cid)
                except NotFound:
                    if restart:
                        return
                    raise
                if restart:
                    if c.state.status != Status.RESTARTING or c.state.manually_stopped:
                        return
                    c.state.restart_count += 1
                else:
                    if c.state.status == Status.PAUSED:
                        raise Conflict("cannot start a paused container, try unpause instead")
                    if c.state.status in (Status.RUNNING, Status.RESTARTING):
                        raise NotModified("container already started")
                    if c.state.status in (Status.REMOVING, Status.DEAD):
                        raise Conflict(f"container {c.id} is marked for removal and cannot be started")
                    c.state.manually_stopped = False
                await self._start(c)
            finally:
                self._starting.pop(cid, None)

    async def _settle_start(self, cid: str) -> None:
        """Wait until an in-flight start of cid has ended (recorded, or undone)."""
        task = self._starting.get(cid)
        if task is not None and task is not asyncio.current_task():
            await asyncio.wait([task])

    def _rootfs(self, c: Container) -> str:
        return os.path.join(self.state_dir(c.id), "bundle", "rootfs")

    def _mount_rootfs(self, c: Container) -> str:
        from berth.mount import is_mountpoint, mount_all

        rootfs = self._rootfs(c)
        os.makedirs(rootfs, mode=0o755, exist_ok=True)
        if not is_mountpoint(rootfs):
            mount_all(self.snapshotter.mounts(c.snapshot_key), rootfs)
        return rootfs

    def _unmount_rootfs(self, c: Container) -> None:
        from berth.mount import unmount_all

        rootfs = self._rootfs(c)
        if os.path.isdir(rootfs):
            unmount_all(rootfs)

    def _write_etc(self, c: Container) -> dict[str, str]:
        p = self._paths(c)
        hostname = c.config.get("Hostname") or c.id[:12]
        net = c.host_config.get("NetworkMode") or "default"
        if net == "host":
            hostname = os.uname().nodename
        _atomic_write(p["hostname"], hostname + "\n")
        hosts = [
            "127.0.0.1\tlocalhost",
            "::1\tlocalhost ip6-localhost ip6-loopback",
            "fe00::0\tip6-localnet",
            "ff00::0\tip6-mcastprefix",
            "ff02::1\tip6-allnodes",
            "ff02::2\tip6-allrouters",
        ]
        for h in c.host_config.get("ExtraHosts") or []:
            name, _, ip = h.partition(":")
            hosts.append(f"{ip}\t{name}")
        _atomic_write(p["hosts"], "\n".join(hosts) + "\n")
        resolv = _host_resolv(c.host_config)
        _atomic_write(p["resolv"], resolv)
        return {"/etc/hostname": p["hostname"], "/etc/hosts": p["hosts"], "/etc/resolv.conf": p["resolv"]}

    def _namespace_paths(self, host: dict) -> dict:
        """container:<id> modes → /proc/<pid>/ns/<x> paths of the other container's init."""
        out = {}
        for key, ns in (("PidMode", "pid"), ("IpcMode", "ipc"), ("UTSMode", "uts"), ("NetworkMode", "net")):
            mode = host.get(key) or ""
            if mode.startswith("container:"):
                other = self.containers.get(mode.split(":", 1)[1])
                if other.state.status not in (Status.RUNNING, Status.PAUSED):
                    raise Conflict(f"cannot join namespace of a non running container: {other.id}")
                out[key] = f"/proc/{other.state.pid}/ns/{ns}"
        return out

    async def _start(self, c: Container) -> None:
        sdir = self.state_dir(c.id)
        os.makedirs(sdir, mode=0o700, exist_ok=True)
        for stale in ("exit.json", "init.pid"):
            try:
                os.unlink(os.path.join(sdir, stale))
            except FileNotFoundError:
                pass
        host = dict(c.host_config)
        ns_paths = self._namespace_paths(host)
        for key in ("PidMode", "IpcMode", "UTSMode"):
            if key in ns_paths:
                host[key] = "container:" + ns_paths[key]
        rootfs = await asyncio.to_thread(self._mount_rootfs, c)
        try:
            _crash_point("start:after-mount")
            vmounts = await asyncio.to_thread(self._attach_volumes, c, rootfs)
            netns, etc = await asyncio.to_thread(self._setup_network, c)
            if etc is None:
                etc = self._write_etc(c)
            user = users.resolve(rootfs, c.config.get("User") or "")
            from berth.runtime.cgroups import detect

            v2 = detect() == "v2"
            spec = specgen.build_spec(
                cid=c.id,
                cfg=c.config,
                host=host,
                rootfs="rootfs",
                user=user,
                etc_files=etc,
                cgroups_path=f"/{self.cfg.cgroup_parent}/{c.id}",
                netns_path=ns_paths.get("NetworkMode") or netns,
                cgroupns=v2,
                mounts=vmounts,
            )
            bundle = os.path.dirname(rootfs)
            _atomic_write(os.path.join(bundle, "config.json"), json.dumps(spec))
            _crash_point("start:after-spec")
        except BaseException:
            await asyncio.to_thread(self._stop_cleanup, c)
            raise
        lc = views.normalize_host_config(c.host_config)["LogConfig"]
        opts = lc.get("Config") or {}
        job = Job(
            id=c.id,
            bundle=bundle,
            state_dir=sdir,
            runtime=self.runtime,
            runtime_root=self.cfg.runtime_root,
            tty=bool(c.config.get("Tty")),
            open_stdin=bool(c.config.get("OpenStdin")),
            stdin_once=bool(c.config.get("StdinOnce")),
            log_driver=lc["Type"],
            log_path=self._paths(c)["log"] if lc["Type"] != "none" else "",
            log_max_size=jsonlog.parse_size(opts.get("max-size")),
            log_max_file=int(opts.get("max-file") or 1),
            cgroup_oom=_oom_file(self.cfg.cgroup_parent, c.id),
        )
        _crash_point("start:before-spawn")
        report = await self.forkserver.spawn(asdict(job))
        if not report.get("ok"):
            await asyncio.to_thread(self._stop_cleanup, c)
            self._start_failed(c, report.get("error") or "unknown error")
        _crash_point("start:after-spawn")
        try:
            started = self._started.pop(c.id, None)
            if started is not None:  # attach sessions that wait for the monitor connect now
                started.set()
                await asyncio.sleep(0)
                for _ in range(200):
                    if not getattr(started, "pending", 0):
                        break
                    await asyncio.sleep(0.005)
            sock = os.path.join(sdir, "monitor.sock")
            started_at = time.time()
            reply = await monclient.request(sock, {"op": "start"})
            if not reply.get("ok"):
                raise _StartError(reply.get("error") or "unknown error")
            _crash_point("start:after-start")
        except BaseException as e:
            # the monitor holds a created (or started) init: kill it, wait for the monitor to
            # go, and undo the host set-up, so a failed or cancelled start leaves nothing behind
            await asyncio.to_thread(self._abort_spawned, c, int(report.get("pid") or 0))
            if isinstance(e, (_StartError, BerthError, OSError, ValueError, TimeoutError)):
                self._start_failed(c, str(e) or type(e).__name__)
            raise
        pid = int(report["pid"])
        c.state.status = Status.RUNNING
        c.state.pid = pid
        c.state.pid_start = linux.proc_start_time(pid) or 0
        c.state.started_at = started_at
        c.state.error = ""
        c.state.exit_code = 0
        c.state.oom_killed = False
        self.containers.save_state(c)
        self._emit("start", c)
        self._watch(c)

    def _abort_spawned(self, c: Container, init_pid: int) -> None:
        """Tear down a monitor whose start did not complete: SIGKILL its init (the monitor then
        records the exit, deletes the runtime state and exits), wait for it, undo the set-up."""
        sdir = self.state_dir(c.id)
        mon = _read_json(os.path.join(sdir, "monitor.json")) or {}
        if init_pid and linux.process_alive(init_pid, None):
            try:
                os.kill(init_pid, signal_mod.SIGKILL)
            except OSError:
                pass
        mpid = int(mon.get("pid") or 0)
        deadline = time.monotonic() + 10
        while mpid and linux.process_alive(mpid, mon.get("start_time")) and time.monotonic() < deadline:
            time.sleep(0.01)
        if mpid and linux.process_alive(mpid, mon.get("start_time")):
            log.warning("monitor %d of %s did not exit; killing it", mpid, c.id)
            try:
                os.kill(mpid, signal_mod.SIGKILL)
            except OSError:
                pass
        self._stop_cleanup(c)
        self._destroy_cgroup(c)

    def _destroy_cgroup(self, c: Container) -> None:
        try:
            from berth.runtime.cgroups import manager_for

            manager_for(f"/{self.cfg.cgroup_parent}/{c.id}", c.id).destroy()
        except Exception as e:  # noqa: BLE001
            log.debug("cgroup cleanup for %s: %s", c.id, e)

    def _stop_cleanup(self, c: Container) -> None:
        """Undo what start set up on the host: network endpoints, netns, volume references,
        rootfs mount."""
        self._release_network(c)
        self._detach_volumes(c)
        self._unmount_rootfs(c)

    def _start_failed(self, c: Container, err: str) -> None:
        low = err.lower()
        code = (
            127
            if ("executable file not found" in low or "no such file" in low or "not found" in low)
            else 126
            if "permission denied" in low
            else 128
        )
        c.state.error = err
        c.state.exit_code = code
        if c.state.status != Status.CREATED:
            c.state.status = Status.EXITED
            c.state.finished_at = time.time()
        self.containers.save_state(c)
        started = self._started.pop(c.id, None)
        if started is not None:  # attach sessions waiting for this start give up
            started.failed = err
            started.set()
        if c.host_config.get("AutoRemove"):
            asyncio.get_running_loop().create_task(self._auto_remove(c.id))
        raise InvalidArgument(f"failed to create task for container: {err}")

    async def _auto_remove(self, cid: str) -> None:
        try:
            await self.remove(cid, force=True, volumes=True)
        except NotFound:
            pass
        except BerthError as e:
            log.warning("auto-remove of %s failed: %s", cid, e)

    def _watch(self, c: Container) -> None:
        task = asyncio.get_running_loop().create_task(self._watch_exit(c.id))
        self._watch_tasks[c.id] = task
        self._start_health(c.id)

    def _start_health(self, cid: str) -> None:
        """Run the container's health checks (if it has any) while it runs."""
        mon = self._health.get(cid)
        if mon is not None and mon.running and mon.task.get_loop() is asyncio.get_running_loop():
            return
        self._stop_health(cid)
        mon = HealthMonitor(self, cid).start()
        if mon.task is not None:
            self._health[cid] = mon

    def _stop_health(self, cid: str) -> None:
        mon = self._health.pop(cid, None)
        if mon is not None:
            mon.stop_nowait()

    def _ensure_watched(self, c: Container) -> None:
        """A running container always has an exit watcher in the current event loop."""
        if c.state.status not in (Status.RUNNING, Status.PAUSED):
            return
        task = self._watch_tasks.get(c.id)
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            self._watch(c)

    async def _watch_exit(self, cid: str) -> None:
        sock = os.path.join(self.state_dir(cid), "monitor.sock")
        rec = None
        try:
            rec = await monclient.request(sock, {"op": "wait"}, timeout=None)
        except (BerthError, OSError, ValueError):
            rec = self._read_exit(cid)
        if rec is None:
            rec = self._read_exit(cid) or {"exit_code": 137, "finished_at": time.time(), "oom_killed": False}
        await self._on_exit(cid, rec)

    def _read_exit(self, cid: str) -> dict | None:
        try:
            with open(os.path.join(self.state_dir(cid), "exit.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    async def _on_exit(self, cid: str, rec: dict) -> None:
        self._watch_tasks.pop(cid, None)
        self._stop_health(cid)
        try:
            c = self.containers.get(cid)
        except NotFound:
            return
        c.state.status = Status.EXITED
        c.state.exit_code = int(rec.get("exit_code", 137))
        c.state.finished_at = float(rec.get("finished_at") or time.time())
        c.state.oom_killed = bool(rec.get("oom_killed"))
        c.state.pid = 0
        await asyncio.to_thread(self._stop_cleanup, c)
        self.containers.save_state(c)
        if c.state.oom_killed:
            self._emit("oom", c)
        self._emit("die", c, {"exitCode": str(c.state.exit_code)})
        self._resolve_waiters(cid, ("next-exit", "not-running"), c.state.exit_code)
        if c.host_config.get("AutoRemove"):
            try:
                await self.remove(cid, force=True, volumes=True)
            except NotFound:
                pass  # removed meanwhile (docker rm -f of a --rm container)
            except BerthError as e:
                log.warning("auto-remove of %s failed: %s", cid, e)
            return
        self._maybe_restart(c)

    def _maybe_restart(self, c: Container) -> None:
        rp = c.host_config.get("RestartPolicy") or {}
        name = rp.get("Name") or "no"
        if name == "no" or c.state.manually_stopped:
            return
        if name == "on-failure":
            if c.state.exit_code == 0:
                return
            maxr = int(rp.get("MaximumRetryCount") or 0)
            if maxr and c.state.restart_count >= maxr:
                return
        ran = c.state.finished_at - c.state.started_at
        backoff = c.extra.get("restart_backoff", 0.0)
        backoff = 0.1 if ran >= 10 or not backoff else min(backoff * 2, 60.0)
        c.extra["restart_backoff"] = backoff
        c.state.status = Status.RESTARTING
        self.containers.save_state(c)

        async def later() -> None:
            await asyncio.sleep(backoff)
            self._restart_tasks.pop(c.id, None)
            # the start runs in its own task: cancelling this one (stop, rm) cannot cut it short
            task = asyncio.get_running_loop().create_task(self._start_serialised(c.id, restart=True))
            task.add_done_callback(_retrieve)
            try:
                await asyncio.shield(task)
                self._emit("restart", self.containers.get(c.id))
            except BerthError as e:
                log.warning("restart of %s failed: %s", c.id, e)
                try:
                    cur = self.containers.get(c.id)
                except NotFound:
                    return
                if cur.state.status == Status.RESTARTING:
                    cur.state.status = Status.EXITED
                    self.containers.save_state(cur)

        self._restart_tasks[c.id] = asyncio.get_running_loop().create_task(later())

    def _resolve_waiters(
        self, cid: str, conditions: tuple[str, ...], code: int, err: str | None = None
    ) -> None:
        keep = []
        for cond, fut in self._waiters.get(cid, []):
            if cond in conditions and not fut.done():
                fut.set_result({"StatusCode": code, "Error": {"Message": err} if err else None})
            elif not fut.done():
                keep.append((cond, fut))
        if keep:
            self._waiters[cid] = keep
        else:
            self._waiters.pop(cid, None)

    # ------------------------------------------------------------------ wait / stop / kill
    async def wait(self, id: str, condition: str = "not-running"):
        condition = condition or "not-running"
        if condition not in WAIT_CONDITIONS:
            raise InvalidArgument(f'invalid condition: "{condition}"')
        c = self.containers.get(id)
        self._ensure_watched(c)
        fut = asyncio.get_running_loop().create_future()
        running = c.state.status in (Status.RUNNING, Status.PAUSED, Status.RESTARTING)
        if condition == "not-running" and not running:
            fut.set_result({"StatusCode": c.state.exit_code, "Error": None})
        else:
            self._waiters.setdefault(c.id, []).append((condition, fut))
        return fut

    def _signal(self, c: Container, sig: int) -> None:
        if not linux.process_alive(c.state.pid, c.state.pid_start or None):
            raise Conflict(f"container {c.id} is not running")
        try:
            fd = linux.pidfd_open(c.state.pid)
        except OSError:
            os.kill(c.state.pid, sig)
            return
        try:
            if linux.proc_start_time(c.state.pid) != c.state.pid_start and c.state.pid_start:
                raise Conflict(f"container {c.id} is not running")
            signal_mod.pidfd_send_signal(fd, sig)
        finally:
            os.close(fd)

    async def kill(self, id: str, signal: str | None = None) -> None:
        c = self.containers.get(id)
        sig = specgen.parse_signal(signal, 9)
        await self._settle_start(c.id)  # a kill during a start applies to what it started
        c = self.containers.get(c.id)
        if c.state.status not in (Status.RUNNING, Status.PAUSED):
            raise Conflict(f"cannot kill container: {id}: container {c.id} is not running")
        try:
            self._signal(c, sig)
        except Conflict:
            raise Conflict(f"cannot kill container: {id}: container {c.id} is not running") from None
        if c.state.status == Status.PAUSED and sig == signal_mod.SIGKILL:
            self._freeze(c, False)
        self._emit("kill", c, {"signal": str(sig)})

    async def stop(self, id: str, t: int | None = None, signal: str | None = None) -> None:
        c = self.containers.get(id)
        restart = self._restart_tasks.pop(c.id, None)
        if restart is not None:
            restart.cancel()
        await self._settle_start(c.id)
        c = self.containers.get(c.id)
        if c.state.status == Status.RESTARTING or (
            restart is not None and c.state.status not in (Status.RUNNING, Status.PAUSED)
        ):
            c.state.status = Status.EXITED
            c.state.manually_stopped = True
            self.containers.save_state(c)
            return
        if c.state.status not in (Status.RUNNING, Status.PAUSED):
            raise NotModified("container already stopped")
        c.state.manually_stopped = True
        self.containers.save_state(c)
        sig = specgen.parse_signal(signal or c.config.get("StopSignal"), 15)
        timeout = t if t is not None else c.config.get("StopTimeout")
        timeout = 10 if timeout is None else int(timeout)
        done = await self.wait(c.id, "not-running")
        try:
            if c.state.status == Status.PAUSED:
                self._freeze(c, False)
            self._signal(c, sig)
            self._emit("kill", c, {"signal": str(sig)})  # as moby: kill, [kill 9], die, stop
        except Conflict:
            pass
        try:
            await asyncio.wait_for(asyncio.shield(done), None if timeout < 0 else timeout)
        except TimeoutError:
            try:
                self._signal(c, signal_mod.SIGKILL)
                self._emit("kill", c, {"signal": str(int(signal_mod.SIGKILL))})
            except Conflict:
                pass
            await asyncio.wait_for(done, 30)
        self._emit("stop", self.containers.get(c.id))

    async def restart(self, id: str, t: int | None = None, signal: str | None = None) -> None:
        try:
            await self.stop(id, t, signal)
        except NotModified:
            pass
        await self.start(id)
        self._emit("restart", self.containers.get(id))

    async def remove(self, id: str, force: bool = False, volumes: bool = False, link: bool = False) -> None:
        """Remove a container. It runs under the container's lock (after any in-flight start)
        in a task of its own, so a cancelled caller cannot leave it half done."""
        cid = self.containers.get(id).id
        task = asyncio.get_running_loop().create_task(self._remove_serialised(cid, force, volumes))
        task.add_done_callback(_retrieve)
        await asyncio.shield(task)

    async def _remove_serialised(self, cid: str, force: bool, volumes: bool) -> None:
        async with self._lock(cid):
            try:
                c = self.containers.get(cid)
            except NotFound:
                raise NotFound(f"No such container: {cid}") from None
            await self._remove(c, force, volumes)
        self._locks.pop(cid, None)

    async def _remove(self, c: Container, force: bool, volumes: bool) -> None:
        restart = self._restart_tasks.pop(c.id, None)
        if c.state.status in (Status.RUNNING, Status.PAUSED, Status.RESTARTING):
            if not force:
                if restart is not None:
                    self._restart_tasks[c.id] = restart
                raise Conflict(
                    f'cannot remove container "/{c.name}": container is running: '
                    "stop the container before removing or force remove"
                )
            if restart is not None:
                restart.cancel()
            c.state.manually_stopped = True
            self.containers.save_state(c)
            if c.state.status != Status.RESTARTING:
                done = await self.wait(c.id, "not-running")
                try:
                    if c.state.status == Status.PAUSED:
                        self._freeze(c, False)
                    self._signal(c, signal_mod.SIGKILL)
                except Conflict:
                    pass
                try:
                    await asyncio.wait_for(asyncio.shield(done), 30)
                except TimeoutError:
                    log.warning("container %s did not exit after SIGKILL", c.id)
                c = self.containers.get(c.id)
        elif restart is not None:
            restart.cancel()
        _crash_point("remove:after-kill")
        self._stop_health(c.id)
        c.state.status = Status.REMOVING
        c.state.removal_in_progress = True
        c.extra["remove_volumes"] = bool(volumes)
        self.containers.save_state(c)
        await asyncio.to_thread(self._cleanup_container, c, volumes)
        self._emit("destroy", c)
        self._resolve_waiters(c.id, ("removed", "next-exit", "not-running"), c.state.exit_code)

    def _cleanup_container(self, c: Container, volumes: bool = False) -> None:
        self._stop_cleanup(c)
        _crash_point("remove:mid-cleanup")
        self._drop_volumes(c, anonymous=volumes)
        try:
            self.snapshotter.remove(c.snapshot_key)
        except NotFound:
            pass
        except BerthError as e:
            log.warning("removing snapshot of %s: %s", c.id, e)
        self._destroy_cgroup(c)
        shutil.rmtree(self.state_dir(c.id), ignore_errors=True)
        shutil.rmtree(self.data_dir(c.id), ignore_errors=True)
        self.containers.delete(c.id)

    # ------------------------------------------------------------------ pause
    def _freeze(self, c: Container, on: bool) -> None:
        from berth.runtime.cgroups import manager_for

        manager_for(f"/{self.cfg.cgroup_parent}/{c.id}", c.id).freeze(on)

    async def pause(self, id: str) -> None:
        c = self.containers.get(id)
        if c.state.status == Status.PAUSED:
            raise Conflict(f"container {c.id} is already paused")
        if c.state.status != Status.RUNNING:
            raise Conflict(f"container {c.id} is not running")
        await asyncio.to_thread(self._freeze, c, True)
        c.state.status = Status.PAUSED
        self.containers.save_state(c)
        self._emit("pause", c)

    async def unpause(self, id: str) -> None:
        c = self.containers.get(id)
        if c.state.status != Status.PAUSED:
            raise Conflict(f"container {c.id} is not paused")
        await asyncio.to_thread(self._freeze, c, False)
        c.state.status = Status.RUNNING
        self.containers.save_state(c)
        self._emit("unpause", c)

    # ------------------------------------------------------------------ queries
    def list_containers(
        self,
        all: bool = False,
        limit: int | None = None,
        size: bool = False,
        filters: dict[str, list[str]] | None = None,
    ) -> list[dict]:
        filters = filters or {}
        cs = list(self.containers.all())
        before = since = None
        if filters.get("before"):
            before = self.containers.get(filters["before"][0]).created
        if filters.get("since"):
            since = self.containers.get(filters["since"][0]).created
        out = []
        for c in cs:
            if (
                not all
                and not filters.get("status")
                and c.state.status not in (Status.RUNNING, Status.PAUSED, Status.RESTARTING)
            ):
                if not (limit and limit > 0):
                    continue
            if not views.matches(c, filters, image_matches=self._image_matches, before=before, since=since):
                continue
            out.append(views.summary(c, self._image_ref(c), self._size(c) if size else None))
            if limit and limit > 0 and len(out) >= limit:
                break
        return out

    def _image_matches(self, c: Container, ref: str) -> bool:
        try:
            return self.images.get(ref).id == c.image_id
        except BerthError:
            return c.image_name == ref

    def _image_ref(self, c: Container) -> str:
        try:
            img = self.images.get(c.image_name)
            if img.id == c.image_id:
                return c.image_name
        except BerthError:
            pass
        return c.image_id

    def _size(self, c: Container) -> dict:
        try:
            rw = self.snapshotter.usage(c.snapshot_key).size
        except BerthError:
            rw = 0
        try:
            base = self.images.size(c.image_id)
        except BerthError:
            base = 0
        return {"SizeRw": rw, "SizeRootFs": rw + base}

    def inspect_container(self, id: str, size: bool = False) -> dict:
        c = self.containers.get(id)
        out = views.inspect(
            c, paths=self._paths(c), graph=self._graph(c), size=self._size(c) if size else None
        )
        out["HostConfig"]["Runtime"] = "runc" if self.runtime.endswith("runc") else "berth"
        return out

    def rename(self, id: str, name: str) -> None:
        c = self.containers.get(id)
        old = c.name
        self.containers.rename(c, name)
        self._emit("rename", c, {"oldName": "/" + old})

    def top(self, id: str, ps_args: str | None = None) -> dict:
        c = self.containers.get(id)
        if c.state.status not in (Status.RUNNING, Status.PAUSED):
            raise Conflict(f"container {c.id} is not running")
        from berth.runtime.cgroups import manager_for

        pids = sorted(manager_for(f"/{self.cfg.cgroup_parent}/{c.id}", c.id).pids())
        procs = []
        for pid in pids:
            try:
                with open(f"/proc/{pid}/status") as f:
                    st = dict(line.split(":", 1) for line in f if ":" in line)
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            uid = st.get("Uid", "0").split()[0]
            procs.append(
                [
                    uid,
                    str(pid),
                    st.get("PPid", "0").strip(),
                    "0",
                    "",
                    "?",
                    "00:00:00",
                    cmd or "[" + st.get("Name", "").strip() + "]",
                ]
            )
        return {"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], "Processes": procs}

    # ------------------------------------------------------------------ logs and attach
    async def logs(
        self,
        id: str,
        *,
        stdout: bool,
        stderr: bool,
        follow: bool,
        since: float | None,
        until: float | None,
        timestamps: bool,
        tail: int | None,
        details: bool = False,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> AsyncIterator[tuple[int, bytes]]:
        """Log records; ``since_ns``/``until_ns`` (exact, inclusive) take precedence over the
        float-second ``since``/``until``, which cannot hold nanoseconds at today's epoch."""
        c = self.containers.get(id)
        lc = views.normalize_host_config(c.host_config)["LogConfig"]["Type"]
        if lc == "none":
            raise InvalidArgument("configured logging driver does not support reading")
        path = self._paths(c)["log"]
        since_ns = since_ns if since_ns is not None else int((since or 0) * 1e9)
        until_ns = until_ns if until_ns is not None else int((until or 0) * 1e9)
        # opened at its end before the read: what is written meanwhile is followed, not lost;
        # it follows rotations by inode and reads the log to its end after a remove
        follower = jsonlog.Follower(path) if follow else None
        recs = await asyncio.to_thread(
            jsonlog.read_records,
            path,
            since_ns=since_ns,
            until_ns=until_ns,
            tail=-1 if tail is None else tail,
        )
        for r in recs:
            item = _log_item(r, stdout, stderr, timestamps)
            if item:
                yield item
        if not follow:
            return
        seen_ns = recs[-1].time_ns if recs else -1  # records the first read already gave
        try:
            while True:
                try:
                    cur = self.containers.get(c.id)
                    running = cur.state.status in (Status.RUNNING, Status.PAUSED, Status.RESTARTING)
                except NotFound:  # removed (docker run --rm reads its logs after the remove)
                    running = False
                new = await asyncio.to_thread(follower.poll)
                for r in new:
                    if until_ns and r.time_ns > until_ns:
                        return
                    if r.time_ns <= seen_ns:
                        continue
                    item = _log_item(r, stdout, stderr, timestamps)
                    if item:
                        yield item
                if not running:
                    return
                await asyncio.sleep(0.1)
        finally:
            follower.close()

    async def attach(
        self, id: str, io, *, stdin: bool, stdout: bool, stderr: bool, logs: bool, stream: bool
    ) -> None:
        c = self.containers.get(id)
        if logs:
            async for s, data in self.logs(
                c.id,
                stdout=stdout,
                stderr=stderr,
                follow=False,
                since=None,
                until=None,
                timestamps=False,
                tail=None,
            ):
                await io.write(s, data)
        if not stream:
            return
        if c.state.status in (Status.CREATED, Status.EXITED) or (c.state.status == Status.RESTARTING):
            ev = self._started.setdefault(c.id, asyncio.Event())
            ev.pending = getattr(ev, "pending", 0) + 1
            try:
                await ev.wait()
                if getattr(ev, "failed", None):
                    return
            finally:
                pass
        sock = os.path.join(self.state_dir(c.id), "monitor.sock")
        try:
            st = await monclient.open_stream(
                sock, {"op": "attach", "stdin": stdin, "stdout": stdout, "stderr": stderr}
            )
        finally:
            ev = locals().get("ev")
            if ev is not None:
                ev.pending -= 1
        await self._pump(st, io, stdin)

    async def _pump(self, st: monclient.Stream, io, stdin: bool) -> None:
        async def feed() -> None:
            while True:
                data = await io.read_stdin()
                if not data:
                    st.close_stdin()
                    return
                await st.write(data)

        feeder = asyncio.get_running_loop().create_task(feed()) if stdin else None
        try:
            async for s, data in st.frames():
                await io.write(s, data)
                if getattr(io, "detached", False):
                    break
        finally:
            if feeder is not None:
                feeder.cancel()
            st.close()

    def resize(self, id: str, height: int, width: int) -> None:
        c = self.containers.get(id)
        if c.state.status not in (Status.RUNNING, Status.PAUSED):
            raise Conflict(f"container {c.id} is not running")
        _sync_request(
            os.path.join(self.state_dir(c.id), "monitor.sock"), {"op": "resize", "h": height, "w": width}
        )

    # ------------------------------------------------------------------ exec
    def exec_create(self, id: str, config: dict) -> dict:
        c = self.containers.get(id)
        if c.state.status == Status.PAUSED:
            raise Conflict(f"container {c.id} is paused, unpause the container before exec")
        if c.state.status != Status.RUNNING:
            raise Conflict(f"container {c.id} is not running")
        cmd = config.get("Cmd")
        if not cmd:
            raise InvalidArgument("No exec command specified")
        eid = new_id()
        self._execs[eid] = {
            "ID": eid,
            "ContainerID": c.id,
            "Running": False,
            "ExitCode": None,
            "Pid": 0,
            "OpenStdin": bool(config.get("AttachStdin")),
            "OpenStdout": bool(config.get("AttachStdout")),
            "OpenStderr": bool(config.get("AttachStderr")),
            "CanRemove": False,
            "DetachKeys": config.get("DetachKeys") or "",
            "ProcessConfig": {
                "tty": bool(config.get("Tty")),
                "entrypoint": cmd[0],
                "arguments": list(cmd[1:]),
                "privileged": bool(config.get("Privileged")),
                "user": config.get("User") or "",
            },
            "_config": config,
        }
        c.extra.setdefault("exec_ids", []).append(eid)
        self.containers.save_state(c)
        self.bus.emit(
            "container",
            "exec_create: " + " ".join(cmd),
            c.id,
            {"image": c.image_name, "name": c.name, "execID": eid},
        )
        return {"Id": eid}

    def _exec(self, eid: str) -> dict:
        e = self._execs.get(eid)
        if e is None:
            raise NotFound(f"No such exec instance: {eid}")
        return e

    def _exec_process(self, c: Container, cfg: dict, tty: bool) -> dict:
        try:
            with open(os.path.join(self.state_dir(c.id), "bundle", "config.json")) as f:
                spec = json.load(f)
        except (OSError, ValueError) as e:
            raise Conflict(f"container {c.id} is not running") from e
        p = spec["process"]
        env = list(p.get("env") or [])
        keys = {e.split("=", 1)[0]: i for i, e in enumerate(env)}
        for e in cfg.get("Env") or []:
            k = e.split("=", 1)[0]
            if k in keys:
                env[keys[k]] = e
            else:
                env.append(e)
        user = users.resolve(self._rootfs(c), cfg["User"]) if cfg.get("User") else p["user"]
        proc = {
            "terminal": tty,
            "args": list(cfg["Cmd"]),
            "env": env,
            "cwd": cfg.get("WorkingDir") or p.get("cwd") or "/",
            "user": user,
            "capabilities": p.get("capabilities"),
            "rlimits": p.get("rlimits"),
            "noNewPrivileges": p.get("noNewPrivileges", False),
        }
        if cfg.get("Privileged"):
            from berth.oci.spec import ALL_CAPS

            caps = list(ALL_CAPS)
            proc["capabilities"] = {k: caps for k in ("bounding", "effective", "permitted")}
        if tty and cfg.get("ConsoleSize"):
            h, w = cfg["ConsoleSize"]
            proc["consoleSize"] = {"height": int(h), "width": int(w)}
        return proc

    async def exec_start(self, exec_id: str, io, *, detach: bool, tty: bool) -> None:
        e = self._exec(exec_id)
        if e["Running"] or e["ExitCode"] is not None:
            raise Conflict(f"Error: Exec command {exec_id} has already run")
        c = self.containers.get(e["ContainerID"])
        if c.state.status != Status.RUNNING:
            raise Conflict(f"container {c.id} is not running")
        cfg = e["_config"]
        tty = bool(cfg.get("Tty")) or tty
        proc = self._exec_process(c, cfg, tty)
        sock = os.path.join(self.state_dir(c.id), "monitor.sock")
        want_stdin = bool(cfg.get("AttachStdin")) and io is not None and not detach
        st = await monclient.open_stream(
            sock, {"op": "exec", "id": exec_id, "process": proc, "tty": tty, "stdin": want_stdin}
        )
        if not st.reply.get("ok"):
            st.close()
            e["ExitCode"] = int(st.reply.get("exit_code") or 126)
            msg = st.reply.get("error") or "exec failed"
            if io is not None and not detach:
                await io.write(2 if not tty else 1, (msg + "\r\n").encode())
                return
            raise Conflict(msg)
        e["Running"] = True
        e["Pid"] = int(st.reply.get("pid") or 0)
        self.bus.emit(
            "container",
            "exec_start: " + " ".join(cfg["Cmd"]),
            c.id,
            {"image": c.image_name, "name": c.name, "execID": exec_id},
        )

        async def finish(task_io) -> None:
            try:
                if task_io is None:
                    async for _ in st.frames():
                        pass
                else:
                    await asyncio.sleep(0.05)  # docker-py loses bytes that share a read with the 101
                    await self._pump(st, task_io, want_stdin)
            finally:
                e["Running"] = False
                e["ExitCode"] = int((st.exit or {}).get("ExitCode", 137 if st.exit is None else 0))
                st.close()
                self.bus.emit(
                    "container",
                    "exec_die",
                    c.id,
                    {
                        "image": c.image_name,
                        "name": c.name,
                        "execID": exec_id,
                        "exitCode": str(e["ExitCode"]),
                    },
                )

        if detach or io is None:
            asyncio.get_running_loop().create_task(finish(None))
            return
        await finish(io)

    def exec_inspect(self, exec_id: str) -> dict:
        e = self._exec(exec_id)
        return {k: v for k, v in e.items() if not k.startswith("_")}

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        e = self._exec(exec_id)
        _sync_request(
            os.path.join(self.state_dir(e["ContainerID"]), "monitor.sock"),
            {"op": "resize", "exec": exec_id, "h": height, "w": width},
        )

    # ------------------------------------------------------------------ restore after restart
    async def restore(self) -> None:
        """Re-adopt containers after a daemon (re)start; record exits that happened meanwhile."""
        from berth.images.unpack import cleanup_extractions

        if self.net is not None:
            await asyncio.to_thread(self.net.restore)

        try:
            cleanup_extractions(self.snapshotter)
        except Exception as e:  # noqa: BLE001
            log.warning("cleaning stale extractions: %s", e)
        known = set()
        for c in list(self.containers.all()):
            known.add(c.snapshot_key)
            if c.state.status == Status.CREATED:
                await self._restore_created(c)
                continue
            if c.state.status not in (Status.RUNNING, Status.PAUSED, Status.RESTARTING, Status.REMOVING):
                continue
            rec = self._read_exit(c.id)
            mon = _read_json(os.path.join(self.state_dir(c.id), "monitor.json"))
            mon_alive = bool(mon) and linux.process_alive(int(mon["pid"]), mon.get("start_time"))
            if c.state.status == Status.REMOVING:
                await asyncio.to_thread(self._cleanup_container, c, bool(c.extra.get("remove_volumes")))
                continue
            if rec is None and mon_alive:
                self._watch(c)
                continue
            if rec is None:
                # monitor gone without an exit record: the init cannot be waited for; stop it
                if linux.process_alive(c.state.pid, c.state.pid_start or None):
                    try:
                        os.kill(c.state.pid, signal_mod.SIGKILL)
                    except OSError:
                        pass
                rec = {"exit_code": 137, "finished_at": time.time(), "oom_killed": False}
            await self._on_exit(c.id, rec)
        # snapshots of containers whose record never made it (killed mid-create)
        try:
            for info in list(self.snapshotter.walk()):
                if info.key.startswith("container-") and info.key not in known:
                    try:
                        self.snapshotter.remove(info.key)
                    except BerthError as e:
                        log.warning("removing orphan snapshot %s: %s", info.key, e)
        except Exception as e:  # noqa: BLE001
            log.warning("orphan snapshot scan: %s", e)

    async def _restore_created(self, c: Container) -> None:
        """A container recorded as created may have been mid-start when the daemon died: adopt
        it if its monitor already started it, else undo what the start had set up."""
        sdir = self.state_dir(c.id)
        mon = _read_json(os.path.join(sdir, "monitor.json"))
        alive = bool(mon) and linux.process_alive(int(mon["pid"]), mon.get("start_time"))
        if alive:
            try:
                sock = os.path.join(sdir, "monitor.sock")
                st = await asyncio.to_thread(_sync_request, sock, {"op": "state"})
            except (BerthError, ValueError):
                st = {}
            pid = int(st.get("pid") or 0)
            if st.get("status") == "running" and pid and linux.process_alive(pid, None):
                c.state.status = Status.RUNNING
                c.state.pid = pid
                c.state.pid_start = linux.proc_start_time(pid) or 0
                c.state.started_at = time.time()
                c.state.exit_code = 0
                self.containers.save_state(c)
                self._watch(c)
                return
            await asyncio.to_thread(self._abort_spawned, c, pid)
            return
        if os.path.isdir(sdir):
            await asyncio.to_thread(self._stop_cleanup, c)
            await asyncio.to_thread(self._destroy_cgroup, c)
            self.containers.save_state(c)

    async def shutdown(self) -> None:
        """Stop watching (containers keep running: their monitors are not our children)."""
        for t in list(self._watch_tasks.values()) + list(self._restart_tasks.values()):
            t.cancel()
        for cid in list(self._health):
            self._stop_health(cid)
        self.forkserver.close()
        if self.net is not None:
            running = any(c.state.status in (Status.RUNNING, Status.PAUSED) for c in self.containers.all())
            # with containers still running, their rules and DNS stay (live restore)
            await asyncio.to_thread(self.net.close if running else self.net.teardown)


def _log_item(r: jsonlog.LogRecord, stdout: bool, stderr: bool, timestamps: bool) -> tuple[int, bytes] | None:
    stream = 2 if r.stream == "stderr" else 1
    if (stream == 1 and not stdout) or (stream == 2 and not stderr):
        return None
    data = r.data
    if timestamps:
        data = r.raw_time.encode() + b" " + data
    return stream, data


def _sync_request(path: str, req: dict) -> dict:
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        with monclient.short_path(path) as p:
            s.connect(p)
        s.sendall((json.dumps(req) + "\n").encode())
        data = s.makefile("rb").readline()
    except OSError as e:
        raise Conflict("container is not running") from e
    finally:
        s.close()
    return json.loads(data) if data else {}


class _StartError(Exception):
    """The monitor refused to start the container (its runtime's error text)."""


def _retrieve(task: asyncio.Task) -> None:
    """Done callback: mark a shielded task's exception as retrieved (its caller may be gone)."""
    if not task.cancelled():
        task.exception()


def _crash_point(step: str) -> None:
    """Test hook: die at a named step when BERTH_CRASH_AT names it (reliability tests)."""
    if os.environ.get("BERTH_CRASH_AT") == step:
        log.error("BERTH_CRASH_AT=%s: exiting", step)
        os._exit(1)


def _read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _atomic_write(path: str, data: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _host_resolv(host: dict) -> str:
    lines = []
    servers = list(host.get("Dns") or [])
    search = list(host.get("DnsSearch") or [])
    options = list(host.get("DnsOptions") or [])
    if not servers:
        try:
            with open("/etc/resolv.conf") as f:
                for line in f:
                    parts = line.split()
                    if not parts:
                        continue
                    if parts[0] == "nameserver" and len(parts) > 1 and not parts[1].startswith("127."):
                        servers.append(parts[1])
                    elif parts[0] == "search" and not search:
                        search = parts[1:]
                    elif parts[0] == "options" and not options:
                        options = parts[1:]
        except OSError:
            pass
    if not servers:
        servers = ["8.8.8.8", "8.8.4.4"]
    lines += [f"nameserver {s}" for s in servers]
    if search:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def _oom_file(parent: str, cid: str) -> str:
    from berth.runtime.cgroups import detect

    if detect() == "v2":
        return f"/sys/fs/cgroup/{parent}/{cid}/memory.events"
    return f"/sys/fs/cgroup/memory/{parent}/{cid}/memory.oom_control"


def _arch() -> str:
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"
