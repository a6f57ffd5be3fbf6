"""The Engine's image operations: list, inspect, tag, remove, history, prune, load, save, import,
commit, bootstrap, and the pull/push stand-ins until berth has a registry client."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator

from berth.errors import BerthError, Conflict, InvalidArgument, NotFound

SPOOL_LIMIT = 64 << 30


class ImageOps:
    """Mixed into Engine; uses ``self.images`` (ImageStore), ``self.bus`` and ``self.containers``."""

    def _get_image(self, ref: str):
        try:
            return self.images.get(ref)
        except NotFound:
            try:
                from berth.oci.reference import familiar

                shown = familiar(ref)
            except BerthError:
                shown = ref
            raise NotFound(f"No such image: {shown}") from None

    def list_images(
        self, all: bool = False, filters: dict[str, list[str]] | None = None, digests: bool = False
    ) -> list[dict]:
        return self.images.list(all=all, filters=filters)

    def inspect_image(self, name: str) -> dict:
        self._get_image(name)
        return self.images.inspect(name)

    def tag_image(self, name: str, repo: str, tag: str | None) -> None:
        img = self._get_image(name)
        target = f"{repo}:{tag}" if tag else repo
        self.images.tag(name, target)
        from berth.oci import reference
        self.bus.emit("image", "tag", img.id, {"name": reference.familiar(target)})   # as Docker: x:1

    def remove_image(self, name: str, force: bool = False, noprune: bool = False) -> list[dict]:
        img = self._get_image(name)
        users = self.containers.using_image(img.id)
        if users and force:
            running = [cid for cid in users if self.containers.get(cid).state.status in ("running", "paused")]
            if running:
                raise Conflict(
                    f"conflict: unable to delete {img.short_id} (cannot be forced) - image is "
                    f"being used by running container {running[0][:12]}"
                )
        items = self.images.remove(name, force=force, prune=not noprune)
        for it in items:
            if "Untagged" in it:
                self.bus.emit("image", "untag", img.id, {"name": it["Untagged"]})
            if "Deleted" in it:
                self.bus.emit("image", "delete", it["Deleted"], {"name": name})
        return items

    def image_history(self, name: str) -> list[dict]:
        self._get_image(name)
        return self.images.history(name)

    def prune_images(self, filters: dict[str, list[str]] | None = None) -> dict:
        """``docker image prune``: filters dangling (default true; false = also unused named images),
        label, label!, until (one value), as moby's ImagesPrune."""
        from berth.engine.build_ops import until_time

        filters = dict(filters or {})
        unknown = sorted(set(filters) - {"dangling", "label", "label!", "until"})
        if unknown:
            raise InvalidArgument(f"invalid filter '{unknown[0]}'")
        values = filters.pop("dangling", None) or ["true"]
        if values[0].lower() not in ("true", "1", "false", "0"):
            raise InvalidArgument(f"invalid filter 'dangling={values[0]}'")
        dangling = values[0].lower() in ("true", "1")
        until_vals = filters.pop("until", [])
        if len(until_vals) > 1:
            raise InvalidArgument("filters expect only one value for until")
        until = until_time(until_vals[0]) if until_vals else None
        out = self.images.prune(all=not dangling, filters=filters, until=until)
        for it in out.get("ImagesDeleted") or []:
            if "Deleted" in it:
                self.bus.emit("image", "delete", it["Deleted"], {})
        self.bus.emit("image", "prune", "", {"reclaimed": str(out.get("SpaceReclaimed", 0))})
        return out

    # -- streams in and out ---------------------------------------------------------------
    async def _spool(self, source: AsyncIterator[bytes]) -> tempfile.SpooledTemporaryFile:
        spool = tempfile.TemporaryFile(dir=self._tmp_root())
        total = 0
        async for chunk in source:
            total += len(chunk)
            if total > SPOOL_LIMIT:
                spool.close()
                raise InvalidArgument("request body too large")
            await asyncio.to_thread(spool.write, chunk)
        spool.seek(0)
        return spool

    def _tmp_root(self) -> str:
        """The engine's scratch dir for spooled streams and temporary mounts (on the data root)."""
        d = os.path.join(self.cfg.data_root, "tmp")
        os.makedirs(d, mode=0o700, exist_ok=True)
        return d

    async def load_images(self, source: AsyncIterator[bytes], quiet: bool) -> AsyncIterator[dict]:
        from berth.images.saveload import load

        spool = await self._spool(source)
        try:
            result = await asyncio.to_thread(load, self.images, spool)
        except BerthError as e:
            yield {"errorDetail": {"message": str(e)}, "error": str(e)}
            return
        finally:
            spool.close()
        for img in result.images:
            self.bus.emit("image", "load", img.id, {"name": (img.repo_tags or [img.id])[0]})
        for line in result.messages:
            yield {"stream": line if line.endswith("\n") else line + "\n"}

    async def save_images(self, names: list[str]) -> AsyncIterator[bytes]:
        from berth.images.saveload import save

        for n in names:
            self._get_image(n)
        out = tempfile.TemporaryFile(dir=self._tmp_root())
        try:
            await asyncio.to_thread(save, self.images, names, out)
            out.seek(0)
            while True:
                chunk = await asyncio.to_thread(out.read, 1 << 20)
                if not chunk:
                    break
                yield chunk
        finally:
            out.close()

    async def import_image(
        self,
        source: AsyncIterator[bytes],
        repo: str | None,
        tag: str | None,
        message: str | None,
        changes: list[str],
    ) -> AsyncIterator[dict]:
        from berth.images.importer import import_image

        ref = None
        if repo:
            ref = f"{repo}:{tag}" if tag else repo
        spool = await self._spool(source)
        try:
            img = await asyncio.to_thread(
                import_image, self.images, spool, ref=ref, changes=changes or (), message=message or ""
            )
        except BerthError as e:
            yield {"errorDetail": {"message": str(e)}, "error": str(e)}
            return
        finally:
            spool.close()
        self.bus.emit("image", "import", img.id, {"name": ref or ""})
        yield {"status": img.id}

    def commit_container(
        self,
        id: str,
        *,
        repo: str | None = None,
        tag: str | None = None,
        comment: str = "",
        author: str = "",
        changes: list[str] | None = None,
        pause: bool = True,
        config: dict | None = None,
    ) -> dict:
        from berth.images.commit import commit_snapshot

        c = self.containers.get(id)
        ref = (f"{repo}:{tag}" if tag else repo) if repo else None
        paused = False
        if pause and c.state.status == "running":
            self._freeze(c, True)
            paused = True
        try:
            img = commit_snapshot(
                self.images,
                c.snapshot_key,
                parent=c.image_id,
                ref=ref,
                changes=changes or (),
                comment=comment,
                author=author,
                container_id=c.id,
                container_config=c.config,
            )
        finally:
            if paused:
                self._freeze(c, False)
        self.bus.emit("container", "commit", c.id, {"name": c.name, "image": c.image_name})
        return {"Id": img.id}

    def bootstrap_image(self, name: str) -> dict:
        """berth's own base images: ``busybox`` (from busybox-static) or ``debian[:suite]`` (debootstrap)."""
        from berth.images import bootstrap

        base, _, suite = name.partition(":")
        if base == "busybox":
            img = bootstrap.busybox_image(self.images, name=f"busybox:{suite or 'latest'}")
        elif base == "debian":
            img = bootstrap.debian_image(self.images, suite=suite or "bookworm")
        else:
            raise InvalidArgument(
                f"unknown base image {name!r}: berth can bootstrap busybox and debian[:suite]"
            )
        self.bus.emit("image", "bootstrap", img.id, {"name": name})
        return {"Id": img.id, "RepoTags": img.repo_tags}

    async def pull(
        self, image: str, tag: str | None, platform: str | None, auth: dict
    ) -> AsyncIterator[dict]:
        ref = f"{image}:{tag}" if tag and "@" not in image else image
        try:
            img = self.images.get(ref)
        except (NotFound, InvalidArgument):
            msg = (
                f"pull access denied for {image}: berth has no registry client yet; "
                "make base images with `berth image bootstrap busybox` or load them with `berth load`"
            )
            yield {"errorDetail": {"message": msg}, "error": msg}
            return
        from berth.oci.reference import familiar

        yield {"status": f"Pulling from {image}", "id": tag or "latest"}
        yield {"status": f"Digest: {img.manifest.digest}"}
        yield {"status": f"Status: Image is up to date for {familiar(ref)}"}

    async def push(self, name: str, tag: str | None, auth: dict) -> AsyncIterator[dict]:
        msg = "push is not available yet: berth has no registry client"
        yield {"errorDetail": {"message": msg}, "error": msg}
