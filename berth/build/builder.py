"""The Dockerfile builder: stages, steps, cache, commits, and Docker's JSON progress messages.

Every instruction yields an image (as Docker's classic builder): metadata-only instructions a new
config with an ``empty_layer`` history entry; RUN a container made through the Engine (same
isolation as ``berth run``) whose snapshot's changes become a layer; COPY/ADD/WORKDIR a layer
written into a private active snapshot through a detached mount (``berth.build.fsops``). Each step's
image is recorded untagged, and the cache maps the step's key to it. See docs/design/builder.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, BinaryIO

from berth.build import fsops
from berth.build.cache import BuildCache, cache_key
from berth.build.context import BuildContext
from berth.build.instructions import NOP, PROXY_ARGS, step_for
from berth.build.parser import Dockerfile, Instruction, parse
from berth.build.shell import process_word, process_words
from berth.build.state import DEFAULT_SHELL, BuildEngine, BuildFailed, BuildLimits, Stage
from berth.errors import BerthError, InvalidArgument, NotFound

log = logging.getLogger("berth.build")

SNAPSHOT_PREFIX = "build-"
_DONE = object()


def _sde(build_args: Mapping[str, str]) -> int | None:
    v = build_args.get("SOURCE_DATE_EPOCH") or os.environ.get("SOURCE_DATE_EPOCH")
    if v in (None, ""):
        return None
    try:
        n = int(str(v))
    except ValueError:
        raise InvalidArgument(f"invalid SOURCE_DATE_EPOCH: {v!r}") from None
    if n < 0:
        raise InvalidArgument(f"invalid SOURCE_DATE_EPOCH: {v!r}")
    return n


class Builder:
    """One build: call ``execute()`` as a task; messages go to ``emit``."""

    def __init__(self, engine: BuildEngine, ctx: BuildContext, df: Dockerfile, *,
                 emit: Callable[[dict], None],
                 tags: Sequence[str] = (), build_args: Mapping[str, str] | None = None,
                 target: str | None = None, no_cache: bool = False, labels: Mapping[str, str] | None = None,
                 network: str = "none", rm: bool = True, force_rm: bool = False, quiet: bool = False,
                 limits: BuildLimits | None = None) -> None:
        self.engine = engine
        self.store = engine.images
        self.snap = engine.images.snapshotter
        self.ctx = ctx
        self.df = df
        self.escape = df.escape
        self.emit = emit
        self.tags = list(tags)
        self.build_args = {k: ("" if v is None else str(v)) for k, v in (build_args or {}).items()}
        self.target = target
        self.no_cache = no_cache
        self.labels = dict(labels or {})
        if network not in ("none", "host", "default", "bridge", ""):
            raise InvalidArgument(f"unsupported network mode for build: {network}")
        self.network = network or "none"
        self.rm = rm
        self.force_rm = force_rm
        self.quiet = quiet
        self.limits = limits or BuildLimits()
        self.cache = BuildCache(engine.db)
        self.sde = _sde(self.build_args)
        self.consumed: set[str] = {"SOURCE_DATE_EPOCH"}
        self.globals: dict[str, str | None] = {}
        self.stages: list[Stage] = []
        self.killed: dict[str, str] = {}
        self.active: set[str] = set()   # RUN containers running now
        self.lease: Any = None

    # -- output ----------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        if not self.quiet:
            self.emit({"stream": text})

    # -- substitution ------------------------------------------------------------------------------
    def env(self, st: Stage) -> dict[str, str]:
        out = {k: v for k, v in st.args.items() if v is not None}
        for e in (st.raw.get("config") or {}).get("Env") or []:
            k, _, v = e.partition("=")
            out[k] = v
        return out

    def expand(self, st: Stage, word: str) -> str:
        return process_word(word, self.env(st), self.escape)

    def words(self, st: Stage, text: str) -> list[str]:
        return process_words(text, self.env(st), self.escape)

    def arg_value(self, name: str, default: str | None) -> str | None:
        self.consumed.add(name)
        if name in self.build_args:
            return self.build_args[name]
        if default is not None:
            return default
        return self.globals.get(name)

    def _created(self) -> str:
        from berth.images.blobs import now_rfc3339

        if self.sde is not None:
            return now_rfc3339(float(self.sde)).replace(".000000Z", "Z")
        return now_rfc3339()

    # -- images ------------------------------------------------------------------------------------
    def _load(self, st: Stage, image_id: str) -> None:
        from berth.images.blobs import Layer

        img = self.store.get(image_id)
        cfg = self.store.read_config(img)
        m = self.store.read_manifest(img)
        st.image_id = img.id
        st.raw = json.loads(json.dumps(cfg.raw))
        st.layers = [Layer(d, diff, 0) for d, diff in zip(m.layers, cfg.diff_ids, strict=True)]

    def _commit(self, st: Stage, cfg: dict, created_by: str, layer: Any = None) -> str:
        from berth.images.blobs import put_image

        raw = json.loads(json.dumps(st.raw))
        history = list(raw.get("history") or [])
        if not history and st.layers:
            history = [{"created": raw.get("created") or "", "created_by": ""} for _ in st.layers]
        created = self._created()
        entry: dict[str, Any] = {"created": created, "created_by": created_by}
        if layer is None:
            entry["empty_layer"] = True
        layers = [*st.layers, layer] if layer is not None else list(st.layers)
        raw.update({"created": created, "config": cfg, "history": [*history, entry]})
        for k in ("container", "container_config", "docker_version"):
            raw.pop(k, None)
        mdesc = put_image(self.store.content, layers, raw, lease=self.lease)
        img = self.store.add(mdesc, parent=st.image_id or None)   # Docker's parent link: hides step images
        st.image_id = img.id
        st.raw = raw
        st.layers = layers
        return img.id

    def _cached(self, st: Stage, key: str, *, say: bool = True) -> bool:
        if self.no_cache:
            return False
        iid = self.cache.get(key)
        if iid is None:
            return False
        if not self.store.exists(iid):
            self.cache.drop(key)
            return False
        self._load(st, iid)
        if say:
            self.say(" ---> Using cache\n")
        return True

    def _done(self, st: Stage) -> None:
        self.say(f" ---> {(st.image_id or '')[7:19]}\n")

    async def commit_meta(self, st: Stage, text: str, cfg: dict) -> None:
        key = cache_key(st.image_id or "", text)
        if not self._cached(st, key):
            iid = self._commit(st, cfg, text)
            self.cache.put(key, iid)
        self._done(st)

    def _ensure_image(self, st: Stage) -> str:
        if st.image_id is None:
            self._commit_empty(st)
        return st.image_id  # type: ignore[return-value]

    def _commit_empty(self, st: Stage) -> None:
        from berth.images.blobs import put_image

        mdesc = put_image(self.store.content, [], st.raw, lease=self.lease)
        st.image_id = self.store.add(mdesc).id

    # -- layers ------------------------------------------------------------------------------------
    def _scrub(self, key: str) -> None:
        """Drop the mount points the runtime made in a RUN container's upper dir (Docker keeps them
        in an init layer): empty /etc/{hosts,hostname,resolv.conf} and empty /dev, /proc, /sys dirs
        the image does not have; then /etc itself if only that copy-up is left of it.

        The container controls the upper dir: every path is opened fd-relatively without following
        symlinks, so a RUN that made ``/etc`` a symlink to a host path cannot steer this."""
        import stat as _stat

        upper = os.open(self.snap.upper_dir(key), _DIR_NOFOLLOW)
        lowers = []
        try:
            for d in self.snap.lower_dirs(key):
                with contextlib.suppress(OSError):
                    lowers.append(os.open(d, _DIR_NOFOLLOW))

            def in_lower(rel: str) -> os.stat_result | None:
                for lfd in lowers:
                    st = _lstat_at(lfd, rel)
                    if st is not None:
                        return st
                return None

            for rel in ("etc/hostname", "etc/hosts", "etc/resolv.conf"):
                st = _lstat_at(upper, rel)
                if st is not None and _stat.S_ISREG(st.st_mode) and st.st_size == 0 and in_lower(rel) is None:
                    with _parent_at(upper, rel) as (pfd, leaf):
                        os.unlink(leaf, dir_fd=pfd)
            for rel in ("dev/pts", "dev/shm", "dev/mqueue", "dev", "proc", "sys", "etc"):
                st = _lstat_at(upper, rel)
                if st is None or not _stat.S_ISDIR(st.st_mode):
                    continue
                with _parent_at(upper, rel) as (pfd, leaf):
                    dfd = os.open(leaf, _DIR_NOFOLLOW, dir_fd=pfd)
                    try:
                        if os.listdir(dfd):
                            continue
                        opaque = _opaque(dfd)
                    finally:
                        os.close(dfd)
                    low = in_lower(rel)
                    if low is None and rel != "etc":
                        os.rmdir(leaf, dir_fd=pfd)
                    elif low is not None and _stat.S_ISDIR(low.st_mode) and not opaque and \
                            (low.st_mode, low.st_uid, low.st_gid) == (st.st_mode, st.st_uid, st.st_gid):
                        os.rmdir(leaf, dir_fd=pfd)
        except OSError as e:
            log.debug("scrubbing %s: %s", key, e)
        finally:
            for fd in (upper, *lowers):
                os.close(fd)

    def _diff(self, key: str) -> Any:
        from berth.archive import write_diff
        from berth.images.blobs import Layer, _Tee
        from berth.oci import image as oci

        with self.store.content.writer(f"build-{secrets.token_hex(8)}") as w:
            res = write_diff(self.snap.upper_dir(key), _Tee(w), whiteout_mode=self.snap.whiteout_mode,
                             lower_dirs=self.snap.lower_dirs(key), compression="gzip",
                             source_date_epoch=self.sde)
            dg = w.commit()
        self.lease.add("content", dg)
        return Layer(oci.Descriptor(res.media_type, res.digest, res.compressed_size), res.diff_id, res.size)

    def adopt(self, key: str, st: Stage) -> bool:
        """Commit the finished active snapshot ``key`` (a RUN container's, or a COPY/WORKDIR scratch)
        whose changes are ``st``'s top layer as that layer's chain snapshot, so the next step does
        not extract the layer just diffed from it (Docker's overlay2 keeps the container's layer
        too). Skipped when the chain exists already or ``key`` is still mounted; False then."""
        from berth.errors import AlreadyExists
        from berth.oci import image as oci

        if not st.layers:
            return False
        top = st.layers[-1]
        chain = oci.chain_ids([layer.diff_id for layer in st.layers])[-1]
        try:
            self.snap.stat(chain)
            return False
        except NotFound:
            pass
        try:
            upper = self.snap.upper_dir(key)
            with open("/proc/self/mountinfo") as f:
                if any(upper in line for line in f):
                    return False
            self.snap.commit(chain, key, labels={"berth.unpack.chain": chain})
        except (AlreadyExists, BerthError, OSError) as e:
            log.debug("keeping snapshot %s out of the chain: %s", key, e)
            return False
        self.store.record_layer(chain, top.diff_id, int(top.uncompressed_size or 0))
        return True

    @contextlib.contextmanager
    def _scratch_snapshot(self, parent_image: str | None):
        """A private active snapshot on the parent image's chain, removed afterwards (unless it was
        adopted as a layer's chain snapshot meanwhile)."""
        from berth.images.unpack import owner_labels

        chain = self.store.unpack(parent_image) if parent_image else ""
        key = f"{SNAPSHOT_PREFIX}{secrets.token_hex(8)}"
        self.snap.prepare(key, chain, labels={"berth.build": "1", **owner_labels()})
        try:
            yield key
        finally:
            try:
                self.snap.remove(key)
            except NotFound:
                pass  # adopted: committed under its chain ID
            except BerthError as e:
                log.warning("removing build snapshot %s: %s", key, e)

    @contextlib.contextmanager
    def _view(self, image_id: str | None):
        """An fd of a read-only view of an image's rootfs (an empty dir for no layers)."""
        from berth.images.unpack import owner_labels

        chain = self.store.unpack(image_id) if image_id else ""
        if not chain:
            d = tempfile.mkdtemp(prefix="berth-build-empty-")
            fd = os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                yield fd
            finally:
                os.close(fd)
                shutil.rmtree(d, ignore_errors=True)
            return
        key = f"{SNAPSHOT_PREFIX}view-{secrets.token_hex(8)}"
        mounts = self.snap.view(key, chain, labels={"berth.build": "1", **owner_labels()})
        try:
            with fsops.snapshot_root(mounts) as fd:
                yield fd
        finally:
            try:
                self.snap.remove(key)
            except BerthError as e:
                log.warning("removing build view %s: %s", key, e)

    def cleanup_stale(self) -> None:
        """Remove build snapshots left by builder processes that died."""
        from berth.images.unpack import owner_alive

        if self.snap is None:
            return
        for info in list(self.snap.walk()):
            if info.key.startswith(SNAPSHOT_PREFIX) and info.kind != "committed" and \
                    not owner_alive(info.labels or {}):
                with contextlib.suppress(BerthError):
                    self.snap.remove(info.key)

    # -- the build ---------------------------------------------------------------------------------
    def _plan(self) -> tuple[list[Instruction], list[list[Instruction]]]:
        ins = self.df.instructions
        if not ins:
            raise InvalidArgument("the Dockerfile (Dockerfile) cannot be empty")
        pre: list[Instruction] = []
        i = 0
        while i < len(ins) and ins[i].cmd != "FROM":
            if ins[i].cmd != "ARG":
                raise InvalidArgument(f"dockerfile parse error on line {ins[i].line}: "
                                      "no build stage in current context")
            pre.append(ins[i])
            i += 1
        if i == len(ins):
            raise InvalidArgument("no build stage in current context")
        stages: list[list[Instruction]] = []
        for x in ins[i:]:
            if x.cmd == "FROM":
                stages.append([x])
            else:
                stages[-1].append(x)
        names = [_stage_name(s[0]) for s in stages]
        dup = {n for n in names if n and names.count(n) > 1}
        if dup:
            raise InvalidArgument(f"duplicate stage name {sorted(dup)[0]!r} in Dockerfile")
        if self.target:
            if self.target.lower() not in names:
                raise NotFound(f"failed to reach build target {self.target} in Dockerfile")
            stages = stages[: names.index(self.target.lower()) + 1]
        return pre, stages

    async def execute(self) -> None:
        """The whole build; failures become an error message (nothing is raised but cancellation)."""
        try:
            with self.store.hold("build") as lease:
                self.lease = lease
                await asyncio.to_thread(self.cleanup_stale)
                await self._build()
        except BuildFailed as e:
            detail: dict[str, Any] = {"message": str(e)}
            if e.code is not None:
                detail["code"] = e.code
            self.emit({"errorDetail": detail, "error": str(e)})
        except BerthError as e:
            self.emit({"errorDetail": {"message": str(e)}, "error": str(e)})
        except OSError as e:
            msg = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
            self.emit({"errorDetail": {"message": msg}, "error": msg})
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - reported to the client, logged for us
            log.exception("build failed")
            msg = f"internal error: {e!r}"
            self.emit({"errorDetail": {"message": msg}, "error": msg})

    async def _build(self) -> None:
        from berth.oci import reference

        for t in self.tags:
            ref = reference.parse(t)
            if ref.digest:
                raise InvalidArgument(f"invalid tag {t!r}: a tag cannot contain a digest")
        pre, stages = self._plan()
        total = len(pre) + sum(len(s) for s in stages) + len(self.labels)
        n = 0
        genv: dict[str, str] = _platform_args()
        self.globals.update(genv)
        from berth.build.parser import name_values

        for ins in pre:
            n += 1
            self.say(f"Step {n}/{total} : {ins.original}\n")
            for k, raw in name_values(ins, self.escape):
                default = None if raw == "\0" else process_word(raw, genv, self.escape)
                self.consumed.add(k)
                v = self.build_args.get(k, default)
                self.globals[k] = v
                if v is not None:
                    genv[k] = v
        st: Stage | None = None
        for sidx, block in enumerate(stages):
            for ins in block:
                n += 1
                self.say(f"Step {n}/{total} : {ins.original}\n")
                if ins.cmd == "FROM":
                    st = await self._from(ins, sidx, genv)
                    continue
                assert st is not None
                await step_for(ins).run(self, st)
        assert st is not None
        for k, v in sorted(self.labels.items()):  # moby's buildLabelOptions: one LABEL step each
            n += 1
            self.say(f"Step {n}/{total} : LABEL {k}={v}\n")
            cfg = json.loads(json.dumps(st.raw.get("config") or {}))
            cfg["Labels"] = {**(cfg.get("Labels") or {}), k: v}
            await self.commit_meta(st, f"{NOP} LABEL {k}={v}", cfg)
        final = self._ensure_image(st)
        unused = sorted(k for k in self.build_args if k not in self.consumed and k not in PROXY_ARGS)
        if unused:
            self.say(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n")
        self.emit({"aux": {"ID": final}})
        if self.quiet:
            self.emit({"stream": final + "\n"})
        self.say(f"Successfully built {final[7:19]}\n")
        for t in self.tags:
            full = self.store.tag(final, t)
            self.say(f"Successfully tagged {reference.parse(full).familiar()}\n")

    async def _from(self, ins: Instruction, index: int, genv: dict[str, str]) -> Stage:
        from berth.oci import image as oci

        for f in ins.flags:
            if f != "platform":
                raise InvalidArgument(f"dockerfile parse error on line {ins.line}: unknown flag: {f}")
        words = ins.args.split()
        if len(words) not in (1, 3) or (len(words) == 3 and words[1].upper() != "AS"):
            raise InvalidArgument(f"dockerfile parse error on line {ins.line}: FROM requires either one "
                                  "or three arguments")
        ref = process_word(words[0], genv, self.escape)
        name = words[2].lower() if len(words) == 3 else ""
        plat = ins.flag("platform")
        if plat:
            plat = process_word(plat, genv, self.escape)
            want = oci.normalize_platform(oci.parse_platform(plat))
            host = oci.normalize_platform(oci.host_platform())
            if (want.os, want.architecture) != (host.os, host.architecture):
                raise InvalidArgument(f"FROM --platform={plat}: berth builds only for the host platform "
                                      f"({host.os}/{host.architecture})")
        st = Stage(index=index, name=name, image_id=None, raw={}, layers=[])
        prior = self._stage(ref, exact=True)
        if prior is not None:
            self._load(st, self._ensure_image(prior))
        elif ref.lower() == "scratch":
            st.raw = oci.new_config(diff_ids=[], history=[], created="")  # the same every build
            st.raw.pop("history", None)
        else:
            try:
                img = self.store.get(ref)
            except (NotFound, InvalidArgument):
                raise NotFound(f"No such image: {ref}: berth has no registry client; bootstrap or load "
                               "the base image first") from None
            self._load(st, img.id)
        st.shell = list((st.raw.get("config") or {}).get("Shell") or DEFAULT_SHELL)
        self.stages.append(st)
        self._done(st) if st.image_id else None
        cfg = st.raw.get("config") or {}
        triggers = list(cfg.get("OnBuild") or [])
        if triggers:
            cfg = dict(cfg)
            cfg["OnBuild"] = None
            st.raw["config"] = cfg
            self.say(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
            for text in triggers:
                df = parse(text)
                for tins in df.instructions:
                    await step_for(tins).run(self, st)
        return st

    def _stage(self, ref: str, *, exact: bool = False) -> Stage | None:
        low = ref.lower()
        for s in self.stages:
            if s.name and s.name == low:
                return s
        if not exact and ref.isdigit() and int(ref) < len(self.stages):
            return self.stages[int(ref)]
        return None

    # -- RUN ---------------------------------------------------------------------------------------
    async def stop_run(self, cid: str, why: str) -> None:
        if cid in self.killed:
            return
        self.killed[cid] = why
        with contextlib.suppress(BerthError):
            await self.engine.kill(cid, "KILL")

    async def _watchdog(self, cid: str, key: str) -> None:
        lim = self.limits
        start = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(lim.poll)
            try:
                vfs = os.statvfs(self.engine.cfg.data_root)
                free = vfs.f_bavail * vfs.f_frsize
                if free < lim.min_free:
                    await self.stop_run(cid, f"RUN stopped: the data root has only {free} bytes free "
                                             f"(minimum {lim.min_free})")
                    return
                if lim.max_layer:
                    used = (await asyncio.to_thread(self.snap.usage, key)).size
                    if used > lim.max_layer:
                        await self.stop_run(cid, f"RUN stopped: its changes exceed {lim.max_layer} bytes")
                        return
                if lim.run_timeout and asyncio.get_running_loop().time() - start > lim.run_timeout:
                    await self.stop_run(cid, f"RUN stopped: it ran longer than {lim.run_timeout:g}s")
                    return
            except BerthError:
                return

    async def run(self, st: Stage, argv: list[str], shown: str, *, network: str | None = None) -> None:
        """RUN (``berth.build.runstep``)."""
        from berth.build.runstep import run_step

        await run_step(self, st, argv, shown, network=network)

    async def copy(self, st: Stage, ins: Instruction, *, add: bool) -> None:
        """COPY / ADD (``berth.build.copystep``)."""
        from berth.build.copystep import copy_step

        await copy_step(self, st, ins, add=add)

    async def workdir(self, st: Stage, cfg: dict, text: str) -> None:
        """WORKDIR (``berth.build.copystep``)."""
        from berth.build.copystep import workdir_step

        await workdir_step(self, st, cfg, text)


def _platform_args() -> dict[str, str]:
    """BuildKit's automatic platform args (global scope): the host's platform for both."""
    from berth.oci import image as oci

    p = oci.normalize_platform(oci.host_platform())
    full = f"{p.os}/{p.architecture}" + (f"/{p.variant}" if p.variant else "")
    out = {}
    for pre in ("TARGET", "BUILD"):
        out.update({f"{pre}PLATFORM": full, f"{pre}OS": p.os, f"{pre}ARCH": p.architecture,
                    f"{pre}VARIANT": p.variant or ""})
    return out


def _stage_name(ins: Instruction) -> str:
    words = ins.args.split()
    return words[2].lower() if len(words) == 3 else ""


_DIR_NOFOLLOW = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _opaque(fd: int) -> bool:
    try:
        return os.getxattr(fd, "trusted.overlay.opaque") == b"y"
    except OSError:
        return False


@contextlib.contextmanager
def _parent_at(base: int, rel: str):
    """(dir fd, leaf name) of rel below base, every directory opened without following symlinks."""
    parts = rel.split("/")
    fd = os.dup(base)
    try:
        for part in parts[:-1]:
            nfd = os.open(part, _DIR_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
        yield fd, parts[-1]
    finally:
        os.close(fd)


def _lstat_at(base: int, rel: str) -> os.stat_result | None:
    try:
        with _parent_at(base, rel) as (pfd, leaf):
            return os.stat(leaf, dir_fd=pfd, follow_symlinks=False)
    except OSError:
        return None


def _open(engine: Any, context: Any, dockerfile: Any) -> tuple[BuildContext, Dockerfile]:
    import io

    tmp = os.path.join(engine.cfg.data_root, "tmp")
    os.makedirs(tmp, mode=0o700, exist_ok=True)
    if isinstance(context, BuildContext):
        ctx = context
    elif isinstance(context, (str, os.PathLike)):
        ctx = BuildContext.from_dir(os.fspath(context))
    elif isinstance(context, (bytes, bytearray)):
        ctx = BuildContext.from_tar(io.BytesIO(bytes(context)), tmp)
    elif hasattr(context, "read"):
        ctx = BuildContext.from_tar(context, tmp)
    else:
        raise InvalidArgument("build context must be a directory, a tar stream or tar bytes")
    try:
        if isinstance(dockerfile, (bytes, bytearray)):
            data = bytes(dockerfile)
        elif isinstance(dockerfile, os.PathLike):
            with open(os.fspath(dockerfile), "rb") as f:
                data = f.read(4 << 20 + 1)
        else:
            data = ctx.read_dockerfile(dockerfile or "Dockerfile")
        return ctx, parse(data)
    except BaseException:
        ctx.close()
        raise


async def build(engine: BuildEngine, context: str | os.PathLike | bytes | BinaryIO | BuildContext, *,
                dockerfile: str | bytes | os.PathLike = "Dockerfile", tags: Sequence[str] = (),
                build_args: Mapping[str, str] | None = None, target: str | None = None,
                no_cache: bool = False, labels: Mapping[str, str] | None = None, network: str = "none",
                rm: bool = True, force_rm: bool = False, quiet: bool = False,
                limits: BuildLimits | None = None) -> AsyncIterator[dict]:
    """Build an image; yields Docker's JSON messages (``stream``, ``aux``, ``errorDetail``).

    context: a directory, a tar stream (file object) or tar bytes (plain, gzip or zstd).
    dockerfile: a path inside the context (str), the Dockerfile's content (bytes), or a host file
    outside the context (``os.PathLike``, e.g. ``pathlib.Path``).
    """
    try:
        ctx, df = await asyncio.to_thread(_open, engine, context, dockerfile)
    except BerthError as e:
        yield {"errorDetail": {"message": str(e)}, "error": str(e)}
        return
    q: asyncio.Queue = asyncio.Queue()
    try:
        b = Builder(engine, ctx, df, emit=q.put_nowait, tags=tags, build_args=build_args, target=target,
                    no_cache=no_cache, labels=labels, network=network, rm=rm, force_rm=force_rm, quiet=quiet,
                    limits=limits)
    except BerthError as e:
        if ctx is not context:
            ctx.close()
        yield {"errorDetail": {"message": str(e)}, "error": str(e)}
        return
    task = asyncio.get_running_loop().create_task(b.execute())
    task.add_done_callback(lambda _t: q.put_nowait(_DONE))
    try:
        while True:
            m = await q.get()
            if m is _DONE:
                break
            yield m
    finally:
        if not task.done():
            for cid in list(b.active):  # the client went away: stop what runs for it
                await b.stop_run(cid, "build cancelled")
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if ctx is not context:
            await asyncio.to_thread(ctx.close)
