"""Engine operations for named and anonymous volumes: the /volumes API, and the volume side of
a container's life cycle (plan + prepare at create, attach at start, detach at exit, remove of
anonymous volumes with ``rm -v``/``--rm``). See docs/design/volumes.md."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from berth.errors import BerthError, NotFound

if TYPE_CHECKING:
    from berth.containers.store import Container
    from berth.volumes.mountspec import ResolvedMount
    from berth.volumes.store import VolumeStore

log = logging.getLogger("berth.engine")


class VolumeOps:
    """Mixin of :class:`berth.engine.engine.Engine`: volume create/list/inspect/remove/prune."""

    volumes: VolumeStore

    def _open_volumes(self) -> None:
        from berth.volumes.store import VolumeStore

        self.volumes = VolumeStore(self.db, self.cfg.data_root, in_use=self._volume_users)

    def _volume_users(self, name: str) -> list[str]:
        """Containers (in any state) whose mounts name the volume: Docker's rule for rm/prune."""
        return [c.id for c in self.containers.all()
                if any(m.get("volume_name") == name for m in c.extra.get("volume_mounts") or ())]

    def _emit_volume(self, action: str, name: str, extra: dict | None = None) -> None:
        attrs = {"driver": "local"}
        attrs.update(extra or {})
        self.bus.emit("volume", action, name, attrs)

    # -- container life cycle ---------------------------------------------------------------
    def _resolved_mounts(self, c: Container) -> list[ResolvedMount]:
        from berth.volumes.mountspec import ResolvedMount

        return [ResolvedMount.from_dict(d) for d in c.extra.get("volume_mounts") or ()]

    def _plan_volumes(self, cfg: dict, host: dict) -> list[ResolvedMount]:
        """Every mount of a new container (Binds, Mounts, Tmpfs, volumes-from, image VOLUMEs),
        validated, anonymous volumes named; nothing is created yet (``_prepare_volumes``)."""
        from dataclasses import replace

        from berth.volumes.mountspec import plan_mounts
        from berth.volumes.names import new_anonymous_name

        def get_mounts(ident: str) -> list[ResolvedMount]:
            try:
                other = self.containers.get(ident)
            except NotFound:
                raise NotFound(f"No such container: {ident}") from None
            return self._resolved_mounts(other)

        planned = plan_mounts(
            binds=host.get("Binds") or (),
            mounts=host.get("Mounts") or (),
            tmpfs=host.get("Tmpfs") or {},
            volumes=list((cfg.get("Volumes") or {}).keys()),
            volumes_from_specs=host.get("VolumesFrom") or (),
            get_mounts=get_mounts,
            volume_driver=host.get("VolumeDriver") or "",
        )
        # anonymous volumes get their names now, so the record can name them before they exist
        return [replace(m, volume_name=new_anonymous_name()) if m.type == "volume" and not m.volume_name
                else m for m in planned]

    def _prepare_volumes(self, planned: list[ResolvedMount]) -> list[ResolvedMount]:
        """Create the volumes the mounts name (where missing) and missing ``-v`` bind sources;
        the mounts with their sources. Idempotent: a start re-runs it after a crash at create."""
        before = {m.volume_name for m in planned if m.type == "volume" and self.volumes.exists(m.volume_name)}
        prepared = self.volumes.prepare(planned)
        for m in prepared:
            if m.type == "volume" and m.volume_name not in before:
                before.add(m.volume_name)
                self._emit_volume("create", m.volume_name)
        return prepared

    def _set_mounts(self, c: Container, mounts: list[ResolvedMount]) -> None:
        c.extra["volume_mounts"] = [m.to_dict() for m in mounts]
        c.extra["mounts"] = [m.to_inspect() for m in mounts]

    def _attach_volumes(self, c: Container, rootfs: str) -> list[dict]:
        """At start: take the container's volume references, copy image content into empty new
        volumes (from the mounted rootfs); the runtime-spec mounts."""
        mounts = self._resolved_mounts(c)
        if not mounts:
            return []
        if any(m.type == "volume" and not self.volumes.exists(m.volume_name) for m in mounts):
            mounts = self._prepare_volumes(mounts)  # the daemon died between record and prepare
            self._set_mounts(c, mounts)
            self.containers.save_state(c)
        self.volumes.attach(mounts, c.id, rootfs=rootfs)
        for m in mounts:
            if m.type == "volume":
                self._emit_volume("mount", m.volume_name, {
                    "container": c.id, "destination": m.destination,
                    "read/write": str(not m.read_only).lower(),
                    "propagation": m.propagation or ""})
        return [m.to_oci() for m in mounts]

    def _detach_volumes(self, c: Container) -> None:
        """After exit (or a failed start): drop the container's volume references."""
        try:
            names = [r["name"] for r in self.volumes.db.query(
                "SELECT name FROM volume_refs WHERE ref=?", (c.id,))]
            self.volumes.detach(None, c.id)
        except Exception as e:  # noqa: BLE001 - keep cleaning up the rest
            log.warning("detaching volumes of %s: %s", c.id, e)
            return
        for name in names:
            self._emit_volume("unmount", name, {"container": c.id})

    def _drop_volumes(self, c: Container, anonymous: bool) -> None:
        """At remove: release the references; with ``rm -v``/``--rm`` also remove the
        container's anonymous volumes that no other container uses."""
        self._detach_volumes(c)
        if not anonymous:
            return
        try:
            for name in self.volumes.remove_anonymous(self._resolved_mounts(c), c.id):
                self._emit_volume("destroy", name)
        except BerthError as e:
            log.warning("removing anonymous volumes of %s: %s", c.id, e)

    # -- API --------------------------------------------------------------------------------
    def create_volume(self, body: dict | None) -> dict:
        from berth.errors import InvalidArgument

        body = body or {}
        if not isinstance(body, dict):
            raise InvalidArgument("invalid JSON: volume create options must be an object")
        name = body.get("Name") or ""
        existed = bool(name) and self.volumes.exists(name)
        v = self.volumes.create(name or None, driver=body.get("Driver") or "local",
                                labels=body.get("Labels"), options=body.get("DriverOpts"))
        if not existed:
            self._emit_volume("create", v["Name"])
        return v

    def inspect_volume(self, name: str) -> dict:
        return self.volumes.inspect(name)

    def list_volumes(self, filters: dict | None = None) -> dict:
        return {"Volumes": self.volumes.list(filters or None), "Warnings": []}

    def remove_volume(self, name: str, force: bool = False) -> None:
        existed = self.volumes.exists(name)
        self.volumes.remove(name, force=force)
        if existed:
            self._emit_volume("destroy", name)

    def prune_volumes(self, filters: dict | None = None) -> dict:
        out = self.volumes.prune(filters or None)
        for name in out["VolumesDeleted"]:
            self._emit_volume("destroy", name)
        self._emit_volume("prune", "", {"reclaimed": str(out["SpaceReclaimed"])})
        out["VolumesDeleted"] = out["VolumesDeleted"] or None
        return out
