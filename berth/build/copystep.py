"""COPY, ADD and WORKDIR: sources selected and hashed for the cache key, then written into a
private snapshot through a detached mount (``berth.build.fsops``) and diffed into a layer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import posixpath
import shutil
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

from berth.build import fsops
from berth.build.cache import cache_key
from berth.build.context import Source, SourceTree
from berth.build.instructions import NOP
from berth.build.parser import Instruction
from berth.build.shell import expand_heredoc
from berth.build.state import BuildFailed, Stage
from berth.errors import InvalidArgument, NotFound

if TYPE_CHECKING:
    from berth.build.builder import Builder


def _heredoc_name(word: str) -> str | None:
    if not word.startswith("<<"):
        return None
    name = word[2:].lstrip("-")
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "\"'":
        name = name[1:-1]
    return name or None


@dataclass
class _CopyPlan:
    what: str
    srcs: list[str]
    dest: str
    dest_dir: bool
    chown: str
    chmod: int | None
    from_ref: str
    checksum: str
    heredocs: dict[str, bytes]


def _plan_copy(b: Builder, st: Stage, ins: Instruction, add: bool) -> _CopyPlan:
    what = "ADD" if add else "COPY"
    if ins.json_args is not None:
        words = [b.expand(st, w) for w in ins.json_args]
    else:
        words = b.words(st, ins.args)
    if len(words) < 2:
        raise InvalidArgument(f"{what} requires at least two arguments, but only one was provided. "
                              "Destination could not be determined.")
    if ins.flag("link") not in (None, "false") or ins.flag("parents") or ins.flag("exclude"):
        raise InvalidArgument(f"{what} --link/--parents/--exclude need BuildKit; "
                              "berth's builder does not have them")
    if add and ins.flag("keep-git-dir"):
        raise InvalidArgument("ADD --keep-git-dir: git sources are not supported")
    dest_word = words[-1]
    cfg = st.raw.get("config") or {}
    wd = cfg.get("WorkingDir") or "/"
    dest = posixpath.normpath(dest_word if dest_word.startswith("/") else posixpath.join(wd, dest_word))
    dest_dir = dest_word.endswith("/") or dest_word in (".", "./") or len(words) > 2
    chmod = None
    chmod_s = ins.flag("chmod")
    if chmod_s is not None:
        chmod_s = b.expand(st, chmod_s)
        try:
            chmod = int(chmod_s, 8)
        except ValueError:
            raise InvalidArgument(f"invalid chmod parameter: {chmod_s!r}: must be octal") from None
        if not 0 <= chmod <= 0o7777:
            raise InvalidArgument(f"invalid chmod parameter: {chmod_s!r}")
    heredocs: dict[str, bytes] = {}
    env = b.env(st)
    for h in ins.heredocs:
        text = expand_heredoc(h.content, env) if h.expand else h.content
        heredocs[h.name] = text.encode()
    return _CopyPlan(what, words[:-1], dest, dest_dir, b.expand(st, ins.flag("chown") or ""), chmod,
                     b.expand(st, ins.flag("from") or ""), ins.flag("checksum") or "", heredocs)


def _is_archive(tree: SourceTree, rel: str) -> bool:
    from berth.archive.compression import detect

    fd = tree.open_file(rel)
    try:
        head = os.pread(fd, 512, 0)
    finally:
        os.close(fd)
    if detect(head) in ("gzip", "zstd"):
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


def _download(b: Builder, url: str, checksum: str, tmp: str) -> tuple[SourceTree, list[Source]]:
    import email.utils
    import hashlib
    import urllib.parse
    import urllib.request

    proxies = {k.lower().removesuffix("_proxy"): v for k, v in b.build_args.items()
               if k.lower() in ("http_proxy", "https_proxy")}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))
    name = posixpath.basename(urllib.parse.urlparse(url).path) or "index.html"
    if name in (".", "..") or "/" in name:
        name = "download"
    d = tempfile.mkdtemp(prefix="dl-", dir=tmp)
    path = os.path.join(d, name)
    h = hashlib.sha256()
    total = 0
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "berth-builder"})
        with opener.open(req, timeout=60) as r, open(path, "wb") as f:
            lm = r.headers.get("Last-Modified")
            while True:
                chunk = r.read(1 << 20)
                if not chunk:
                    break
                total += len(chunk)
                if total > b.limits.max_download:
                    raise BuildFailed(f"ADD {url}: download larger than {b.limits.max_download} bytes")
                h.update(chunk)
                f.write(chunk)
    except OSError as e:
        raise BuildFailed(f"failed to download {url}: {e}") from None
    if checksum:
        algo, _, want = checksum.partition(":")
        if algo != "sha256" or not want:
            raise InvalidArgument(f"unsupported checksum {checksum!r} (want sha256:<hex>)")
        if h.hexdigest() != want.lower():
            raise BuildFailed(f"ADD {url}: checksum mismatch: expected {checksum}, "
                              f"got sha256:{h.hexdigest()}")
    os.chmod(path, 0o600)
    if lm:
        with contextlib.suppress(TypeError, ValueError):
            ts = email.utils.parsedate_to_datetime(lm).timestamp()
            os.utime(path, (ts, ts))
    fd = os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    tree = SourceTree(fd)
    os.chown(path, 0, 0)  # a download belongs to root (or --chown)
    return tree, [Source(name, name, os.lstat(path))]


def _copy_work(b: Builder, st: Stage, plan: _CopyPlan, key_out: list[str]) -> bool:
    """Select and hash the sources, look the step up in the cache, copy on a miss (in a thread).

    Returns True on a cache hit."""
    import hashlib

    with contextlib.ExitStack() as stack:
        tmp = tempfile.mkdtemp(prefix="berth-build-")
        stack.callback(shutil.rmtree, tmp, True)
        from_id = ""
        tree = b.ctx.tree
        if plan.from_ref:
            if plan.what == "ADD":
                raise InvalidArgument("ADD does not take --from; use COPY --from")
            prior = b._stage(plan.from_ref)
            if prior is not None:
                if prior is st:
                    raise InvalidArgument(f"COPY --from={plan.from_ref}: a stage cannot copy from itself")
                from_id = b._ensure_image(prior)
            else:
                try:
                    from_id = b.store.get(plan.from_ref).id
                except (NotFound, InvalidArgument):
                    raise NotFound(f"COPY --from={plan.from_ref}: no such stage or image") from None
            root_fd = stack.enter_context(b._view(from_id))
            tree = SourceTree(root_fd)
        groups: list[tuple[SourceTree, list[Source], bool]] = []
        h = hashlib.sha256()
        tops = 0
        for src in plan.srcs:
            name = _heredoc_name(src)
            if name is not None and name in plan.heredocs:
                data = plan.heredocs[name]
                h.update(b"heredoc\0" + name.encode() + b"\0" + hashlib.sha256(data).digest())
                tops += 1
                continue
            if plan.what == "ADD" and src.startswith(("http://", "https://")):
                utree, sources = _download(b, src, plan.checksum, tmp)
                stack.callback(os.close, utree.root_fd)
                groups.append((utree, sources, False))
                h.update(b"url\0" + src.encode() + b"\0" + utree.content_hash(sources).encode())
                tops += 1
                continue
            if plan.checksum:
                raise InvalidArgument("ADD --checksum is only supported for HTTP(S) sources")
            sources = tree.select(src)
            top_dir = bool(sources) and sources[0].dest == ""
            archive = (plan.what == "ADD" and len(sources) == 1 and not top_dir
                       and _stat_isreg(sources[0]) and _is_archive(tree, sources[0].src))
            groups.append((tree, sources, archive))
            tops += sum(1 for s in sources if "/" not in s.dest)
            if top_dir or archive:
                tops += 1
            h.update(b"src\0" + src.encode() + b"\0" + tree.content_hash(sources).encode())
        dest_dir = plan.dest_dir or tops > 1
        kind = "multi" if len(plan.srcs) > 1 else ("dir" if dest_dir and groups and groups[0][1] and
                                                   groups[0][1][0].dest == "" else "file")
        text = f"{NOP}{plan.what} {kind}:{h.hexdigest()} in {plan.dest}{'/' if plan.dest_dir else ''} "
        parent = st.image_id or ""
        key = cache_key(parent, text, content=h.hexdigest(),
                        extra={"chown": plan.chown, "chmod": plan.chmod or "", "from": from_id})
        key_out.append(key)
        if b._cached(st, key, say=False):
            return True
        cfg = json.loads(json.dumps(st.raw.get("config") or {}))
        with b._scratch_snapshot(st.image_id) as skey:
            with fsops.snapshot_root(b.snap.mounts(skey)) as root:
                owner = fsops.resolve_chown(root, plan.chown) if plan.chown else None
                if not dest_dir and fsops.is_dir(root, plan.dest):
                    dest_dir = True
                for gtree, sources, archive in groups:
                    if archive:
                        _extract(root, gtree, sources[0], plan.dest, tmp)
                        continue
                    top_dir = sources[0].dest == ""
                    fsops.copy_sources(root, gtree, sources, plan.dest, dest_is_dir=dest_dir or top_dir,
                                       chown=owner if (owner or gtree is not b.ctx.tree) else (0, 0),
                                       chmod=plan.chmod)
                for src in plan.srcs:
                    name = _heredoc_name(src)
                    if name is not None and name in plan.heredocs:
                        path = posixpath.join(plan.dest, name) if dest_dir else plan.dest
                        uid, gid = owner or (0, 0)
                        fsops.write_file(root, path, plan.heredocs[name], uid=uid, gid=gid,
                                         mode=plan.chmod if plan.chmod is not None else 0o644)
            layer = b._diff(skey)
            iid = b._commit(st, cfg, text, layer)
            b.adopt(skey, st)
        b.cache.put(key, iid)
        return False


def _stat_isreg(s: Source) -> bool:
    import stat

    return stat.S_ISREG(s.st.st_mode)


def _extract(root: int, tree: SourceTree, src: Source, dest: str, tmp: str) -> None:
    """ADD of a local archive: applied (safely) into a private dir, then copied fd-relatively."""
    from berth.archive import apply_layer

    d = tempfile.mkdtemp(prefix="x-", dir=tmp)
    f = tree.open_file(src.src)
    with os.fdopen(f, "rb") as fh:
        apply_layer(fh, d, whiteout_mode="delete")
    fd = os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        xtree = SourceTree(fd)
        fsops.copy_sources(root, xtree, xtree.select("/"), dest, dest_is_dir=True, chown=None, chmod=None)
    finally:
        os.close(fd)


async def copy_step(b: Builder, st: Stage, ins: Instruction, *, add: bool) -> None:
    """COPY / ADD: sources hashed for the cache key, written into a private snapshot, diffed."""
    plan = _plan_copy(b, st, ins, add)
    hit = await asyncio.to_thread(_copy_work, b, st, plan, [])
    if hit:
        b.say(" ---> Using cache\n")
    b._done(st)


async def workdir_step(b: Builder, st: Stage, cfg: dict, text: str) -> None:
    """WORKDIR: the directory is made (a layer) if the image does not have it, else metadata only."""
    key = cache_key(st.image_id or "", text)
    if b._cached(st, key):
        b._done(st)
        return

    def work() -> None:
        layer = None
        with b._scratch_snapshot(st.image_id) as skey:
            with fsops.snapshot_root(b.snap.mounts(skey)) as root:
                created: list[str] = []
                os.close(fsops.mkdirs(root, cfg["WorkingDir"], created=created))
            if created:
                layer = b._diff(skey)
            iid = b._commit(st, cfg, text, layer)
            if layer is not None:
                b.adopt(skey, st)
        b.cache.put(key, iid)

    await asyncio.to_thread(work)
    b._done(st)
