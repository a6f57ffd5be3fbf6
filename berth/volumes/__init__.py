"""berth.volumes: the local volume driver, copy-up, and Docker mount-spec parsing.

- :mod:`berth.volumes.mountspec` (pure): ``-v``/Binds, Mounts, ``--mount``, ``--tmpfs``,
  ``--volumes-from`` → :class:`~berth.volumes.mountspec.ResolvedMount` (``plan_mounts``).
- :mod:`berth.volumes.store`: :class:`~berth.volumes.store.VolumeStore` (create/inspect/list/
  remove/prune, and the container life cycle: ``prepare`` → ``attach`` → ``detach`` →
  ``remove_anonymous``).
- :mod:`berth.volumes.copyup`: image content into an empty volume, resolved inside the rootfs.
- :mod:`berth.volumes.rootview`: a read-only view of a snapshot's mounts to copy up from.

Typical engine use::

    mounts = plan_mounts(binds=host["Binds"], mounts=host["Mounts"], tmpfs=host["Tmpfs"],
                         volumes=list(image_volumes | cfg_volumes), volumes_from_specs=...,
                         get_mounts=lambda c: [ResolvedMount.from_dict(d) for d in ...])
    mounts = store.prepare(mounts)                 # at create; persist [m.to_dict() ...]
    store.attach(mounts, cid, rootfs_mounts=snapshotter.mounts(key))  # at start (or rootfs=<dir>)
    spec["mounts"] += [m.to_oci() for m in mounts]
    store.detach(mounts, cid)                      # after exit
    store.remove_anonymous(mounts, cid)            # rm -v / --rm
"""
