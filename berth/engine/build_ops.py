"""Engine operations for image builds (POST /build), build-cache prune, auth and system df."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import queue
from collections.abc import AsyncIterator
from typing import Any

from berth.errors import BerthError, InvalidArgument

log = logging.getLogger("berth.engine")

_QUEUE_CHUNKS = 32          # request-body chunks buffered between the socket and the tar extractor
# POST /build options berth's builder does not implement: refused when set, rather than ignored
_UNSUPPORTED = {"squash": "squash is not supported by berth's builder",
                "extrahosts": "--add-host is not supported by berth's builder",
                "outputs": "build outputs are a BuildKit feature (use DOCKER_BUILDKIT=0 semantics)",
                "cpusetcpus": "--cpuset-cpus is not supported by berth's builder",
                "cpusetmems": "--cpuset-mems is not supported by berth's builder",
                "cgroupparent": "--cgroup-parent is not supported by berth's builder"}


class BodyReader(io.RawIOBase):
    """A blocking reader (for the extracting thread) of chunks the event loop pushes (the request
    body), with back-pressure: at most ``_QUEUE_CHUNKS`` chunks wait in memory."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop
        self._q: queue.Queue = queue.Queue(maxsize=_QUEUE_CHUNKS)
        self._buf = memoryview(b"")
        self._eof = False
        self._space = asyncio.Event()
        self.abandoned = False   # the consumer is done: the feeder discards what is left
        self.dead = False        # the request is gone: a reader waiting for more gets an error

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            if self._eof:
                return 0
            try:
                item = self._q.get(timeout=0.5)
            except queue.Empty:
                if self.dead:
                    self._eof = True
                    raise OSError("the build request went away while its context was being read") from None
                continue
            self._loop.call_soon_threadsafe(self._space.set)
            if item is None:
                self._eof = True
            elif isinstance(item, BaseException):
                self._eof = True
                raise item
            else:
                self._buf = memoryview(item)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    async def put(self, item: bytes | BaseException | None) -> None:
        """Queue one chunk (None: end of body); waits while the queue is full."""
        while not self.abandoned:
            self._space.clear()
            try:
                self._q.put_nowait(item)
                return
            except queue.Full:
                await self._space.wait()

    def abandon(self) -> None:
        self.abandoned = True
        self._space.set()

    def kill(self) -> None:
        """No more input will come (the request was cancelled): unblock the reading thread."""
        self.dead = True
        self.abandon()

    async def feed(self, source: AsyncIterator[bytes]) -> None:
        """Pump source into the reader; after abandon(), read the rest of it and drop it."""
        try:
            async for chunk in source:
                if chunk and not self.abandoned:
                    await self.put(bytes(chunk))
        except asyncio.CancelledError:
            self.kill()
            raise
        except Exception as e:  # noqa: BLE001 - the client went away mid-body (h11), or sent a bad one
            self.dead = True
            await self.put(OSError(f"reading the build context: {e}"))
            return
        await self.put(None)


def _build_kwargs(opts: dict) -> dict:
    """builder.build() keyword arguments from routes.build.build_options()."""
    if opts.get("remote"):
        raise InvalidArgument(f"remote build contexts are not supported ({opts['remote']}): berth builds "
                              "from a context sent with the request (a directory or a tar)")
    for k, why in _UNSUPPORTED.items():
        if opts.get(k):
            raise InvalidArgument(why)
    plat = opts.get("platform")
    if plat:
        from berth.oci import image as oci

        want = oci.normalize_platform(oci.parse_platform(plat))
        host = oci.normalize_platform(oci.host_platform())
        if (want.os, want.architecture) != (host.os, host.architecture):
            raise InvalidArgument(f"platform {plat}: berth builds only for the host platform "
                                  f"({host.os}/{host.architecture})")
    # a build arg sent as JSON null means "from the client's environment" in docker; the CLI resolves
    # that itself, so null here is an arg without a value: unset
    args = {str(k): str(v) for k, v in (opts.get("buildargs") or {}).items() if v is not None}
    labels = {str(k): "" if v is None else str(v) for k, v in (opts.get("labels") or {}).items()}
    net = opts.get("networkmode") or "default"
    if net not in ("default", "bridge", "none", "host"):
        raise InvalidArgument(f"network mode {net!r} is not supported for RUN: use default, none or host")
    return {
        "dockerfile": opts.get("dockerfile") or "Dockerfile",
        "tags": list(opts.get("t") or []),
        "build_args": args,
        "target": opts.get("target") or None,
        "no_cache": bool(opts.get("nocache")),
        "labels": labels,
        "network": net,
        "rm": bool(opts.get("rm", True)),
        "force_rm": bool(opts.get("forcerm")),
        "quiet": bool(opts.get("q")),
    }


class BuildOps:
    """Mixin of :class:`berth.engine.engine.Engine`: the builder and disk-usage surface."""

    # -- POST /build ----------------------------------------------------------------------------
    async def build(self, stream: AsyncIterator[bytes], opts: dict, registry: dict) -> AsyncIterator[dict]:
        """Docker's build message stream. The context tar (plain, gzip or zstd) is extracted while it
        arrives; the body is read to its end before the first message goes out."""
        kwargs = _build_kwargs(opts)   # raised before the first message: a plain 400 reply
        from berth.build.builder import build

        reader = BodyReader(asyncio.get_running_loop())
        feeder = asyncio.get_running_loop().create_task(reader.feed(stream))
        gen = build(self, io.BufferedReader(reader, 1 << 17), **kwargs)
        first = True
        try:
            async for msg in gen:
                if first:  # the context is extracted (or failed): drain the rest of the body
                    first = False
                    reader.abandon()
                    await feeder
                yield msg
                self._build_event(msg, kwargs["tags"])
        finally:
            if not feeder.done():
                feeder.cancel()
                with contextlib.suppress(BaseException):
                    await feeder
            reader.kill()
            await gen.aclose()

    def _build_event(self, msg: dict, tags: list[str]) -> None:
        aux = msg.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            for t in tags:
                self.bus.emit("image", "tag", aux["ID"], {"name": t})

    async def build_cancel(self, build_id: str | None) -> None:
        """POST /build/cancel: a build stops when its client disconnects; nothing to do by ID."""
        return None

    async def prune_build_cache(self, all: bool = False, filters: dict[str, list[str]] | None = None,
                                keep_storage: int | None = None) -> dict:
        """``docker builder prune``: forget the build cache, remove the step images only it kept."""
        filters = dict(filters or {})
        until_vals = filters.pop("until", [])
        if filters:
            raise InvalidArgument("berth's build cache prune supports only the until filter: "
                                  f"got {', '.join(sorted(filters))}")
        if keep_storage:
            raise InvalidArgument("berth's build cache prune does not support --keep-storage")
        until = None
        if until_vals:
            if len(until_vals) > 1:
                raise InvalidArgument("filters expect only one value for until")
            until = until_time(until_vals[0])
        from berth.build.cache import prune_cache

        out = await asyncio.to_thread(prune_cache, self.images, self.db, until)
        for iid in out.get("CachesDeleted") or []:
            self.bus.emit("image", "delete", iid, {})
        self.bus.emit("builder", "prune", "", {"reclaimed": str(out.get("SpaceReclaimed", 0))})
        return out

    # -- GET /system/df -------------------------------------------------------------------------
    async def system_df(self, types: list[str] | None = None) -> dict:
        return await asyncio.to_thread(self._system_df, set(types or ()))

    def _system_df(self, types: set[str]) -> dict:
        want = (lambda t: not types or t in types)  # noqa: E731
        out: dict[str, Any] = {}
        images = self.images.all()
        if want("image") or want("build-cache"):
            cache_only, cache_rows = self._cache_images(images)
        if want("image"):
            users: dict[str, int] = {}
            for c in self.containers.all():
                users[c.image_id] = users.get(c.image_id, 0) + 1
            listed = []
            for s in self.images.list():  # as Docker: intermediate images (with children) hidden
                if s["Id"] in cache_only:
                    continue
                listed.append({**s, "Containers": users.get(s["Id"], 0)})
            out["LayersSize"] = self._layers_size(images)
            out["Images"] = listed
        if want("container"):
            out["Containers"] = self.list_containers(all=True, size=True)
        if want("volume"):
            out["Volumes"] = self._df_volumes()
        if want("build-cache"):
            out["BuildCache"] = self._df_build_cache(images, cache_only, cache_rows)
        return out

    def _layers_size(self, images: list) -> int:
        seen: dict[str, int] = {}
        for img in images:
            for chain, size in self.images._layer_sizes(img):
                seen[chain] = size
        return sum(seen.values())

    def _cache_images(self, images: list) -> tuple[set[str], dict[str, list]]:
        """(IDs of the step images only the build cache keeps, cache rows per image ID)."""
        from berth.build.cache import BuildCache

        BuildCache(self.db)  # the table exists once a cache was opened
        rows: dict[str, list] = {}
        for r in self.db.query("SELECT image_id, created FROM build_cache"):
            rows.setdefault(r["image_id"], []).append(float(r["created"]))
        only = {img.id for img in images if img.id in rows and not img.tags and not img.digests}
        return only, rows

    def _df_build_cache(self, images: list, cache_only: set[str], rows: dict[str, list]) -> list[dict]:
        from berth.engine.views import rfc3339

        kept_chains: set[str] = set()
        for img in images:
            if img.id not in cache_only:
                kept_chains.update(c for c, _ in self.images._layer_sizes(img))
        in_use = {c.image_id for c in self.containers.all()}
        out = []
        for img in sorted((i for i in images if i.id in cache_only), key=lambda i: i.created):
            try:
                cfg = self.images.read_config(img)
                hist = list(cfg.raw.get("history") or [])
                layers = self.images._layer_sizes(img)
            except BerthError:
                continue
            top = hist[-1] if hist else {}
            size, chain = 0, ""
            if layers and not top.get("empty_layer"):
                chain, size = layers[-1]
            created = rows.get(img.id) or [img.created]
            out.append({
                "ID": img.id,
                "Parents": None,
                "Type": "regular",
                "Description": str(top.get("created_by") or ""),
                "InUse": img.id in in_use,
                "Shared": bool(chain) and chain in kept_chains,
                "Size": size,
                "CreatedAt": rfc3339(min(created)),
                "LastUsedAt": rfc3339(max(created)),
                "UsageCount": len(created),
            })
        return out

    def _df_volumes(self) -> list[dict]:
        fn = getattr(self, "list_volumes", None)
        if fn is None:
            return []
        try:
            res = fn()
        except TypeError:
            res = fn(None)
        vols = res.get("Volumes") if isinstance(res, dict) else res
        refs: dict[str, int] = {}
        for c in self.containers.all():
            for name in _volume_names(c.host_config):
                refs[name] = refs.get(name, 0) + 1
        out = []
        for v in vols or []:
            v = dict(v)
            if not v.get("UsageData"):
                mp = v.get("Mountpoint") or ""
                v["UsageData"] = {"Size": _dir_size(mp) if mp else -1, "RefCount": refs.get(v.get("Name"), 0)}
            out.append(v)
        return out

    # -- POST /auth -----------------------------------------------------------------------------
    async def auth(self, body: dict | None) -> dict:
        """``docker login``: check the credentials against the registry (``GET /v2/`` with basic auth,
        or the token service its ``WWW-Authenticate`` names). 401 when the registry refuses them."""
        body = body or {}
        return await asyncio.to_thread(registry_login, str(body.get("serveraddress") or ""),
                                       str(body.get("username") or ""), str(body.get("password") or ""))


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def until_time(value: str, now: float | None = None) -> float:
    """A prune ``until`` value as unix seconds: a Go duration before now ("24h", "1h30m"), a unix
    timestamp ("1700000000.5") or an RFC 3339 date/time (moby's filters.GetTimestamp)."""
    import re
    import time as _time

    now = _time.time() if now is None else now
    v = value.strip()
    if re.fullmatch(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+", v):
        parts = re.findall(r"(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)", v)
        secs = sum(float(n) * _DURATION_UNITS[u] for n, _, u in parts)
        return now - secs
    try:
        return float(v)
    except ValueError:
        pass
    from datetime import UTC, datetime

    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"invalid until value {value!r}: use a duration (24h), a unix time or "
                              "an RFC 3339 date") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _volume_names(host: dict) -> list[str]:
    names = []
    for b in host.get("Binds") or []:
        src = str(b).split(":", 1)[0]
        if src and not src.startswith("/"):
            names.append(src)
    for m in host.get("Mounts") or []:
        if isinstance(m, dict) and (m.get("Type") or "volume") == "volume" and m.get("Source"):
            names.append(m["Source"])
    return names


def _dir_size(path: str) -> int:
    """Bytes of the regular files under path (hard links once), as Docker's directory.Size."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(path):
        for name in files + dirs:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size if not os.path.isdir(os.path.join(root, name)) else 0
    return total


# -- registry login ---------------------------------------------------------------------------------
DEFAULT_INDEX = "https://index.docker.io/v1/"
LOGIN_TIMEOUT = 15.0


def _registry_base(server: str) -> list[str]:
    """The /v2/ base URLs to try for a login server address (Docker Hub's index → registry-1)."""
    s = server.strip().rstrip("/")
    if not s or s in ("docker.io", "index.docker.io", "registry-1.docker.io") or "index.docker.io" in s:
        return ["https://registry-1.docker.io"]
    scheme, sep, rest = s.partition("://")
    if sep:
        host = rest.split("/", 1)[0]
        return [f"{scheme}://{host}"]
    host = s.split("/", 1)[0]
    name = host.rsplit(":", 1)[0].strip("[]")
    local = name == "localhost" or name.startswith("127.") or name == "::1"
    # Docker's default insecure registries are 127.0.0.0/8: https first, then plain http
    return [f"https://{host}", f"http://{host}"] if local else [f"https://{host}"]


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    import re

    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


def registry_login(server: str, username: str, password: str) -> dict:
    """Docker's loginV2: ping ``/v2/``; follow a Basic or Bearer challenge with the credentials.

    Returns ``{"Status": "Login Succeeded"}``; raises Unauthorized (401) when the registry refuses
    the credentials, BerthError (500) when it cannot be reached."""
    import base64
    import http.client
    import urllib.error
    import urllib.parse
    import urllib.request

    from berth.errors import Unauthorized

    basic = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    last: Exception | None = None
    for base in _registry_base(server):
        host = urllib.parse.urlsplit(base).hostname or ""
        local = host == "localhost" or host.startswith("127.") or host == "::1"
        opener = urllib.request.build_opener(*([urllib.request.ProxyHandler({})] if local else []))
        url = base + "/v2/"
        try:
            try:
                with opener.open(urllib.request.Request(url), timeout=LOGIN_TIMEOUT):
                    return {"Status": "Login Succeeded", "IdentityToken": ""}  # no auth required
            except urllib.error.HTTPError as e:
                if e.code != 401:
                    raise BerthError(f"login attempt to {url} failed with status: {e.code} "
                                     f"{e.reason}") from None
                scheme, params = _challenge(e.headers.get("WWW-Authenticate") or "")
            if scheme == "bearer" and params.get("realm"):
                q = {"account": username, "client_id": "docker", "offline_token": "true"}
                if params.get("service"):
                    q["service"] = params["service"]
                turl = params["realm"] + ("&" if "?" in params["realm"] else "?") + urllib.parse.urlencode(q)
                req = urllib.request.Request(turl, headers={"Authorization": basic})
            else:
                req = urllib.request.Request(url, headers={"Authorization": basic})
            try:
                with opener.open(req, timeout=LOGIN_TIMEOUT):
                    return {"Status": "Login Succeeded", "IdentityToken": ""}
            except urllib.error.HTTPError as e:
                if e.code in (401, 403):
                    raise Unauthorized(f"login attempt to {url} failed with status: {e.code} "
                                       f"{e.reason}") from None
                raise BerthError(f"login attempt to {url} failed with status: {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
            last = e
            continue
    why = getattr(last, "reason", None) or last
    raise BerthError(f'Get "{_registry_base(server)[0]}/v2/": {why}')
