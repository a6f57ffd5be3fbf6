"""A read-only view of a container's snapshot, for copy-up before the container runs.

The runtime mounts a container's rootfs only inside its own mount namespace, so the engine
has no host path to copy from at start time. :func:`mounted_view` mounts the snapshot's
mounts read-only at a scratch directory instead. An overlay's upper layer becomes its top
lower layer, so no upperdir or workdir is shared with a later read-write mount, and whiteouts
and opaque directories keep their meaning. The view is unmounted when the block ends.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from berth.errors import InvalidArgument
from berth.mount import Mount, mount_all, unmount_all

_DROP = ("lowerdir", "upperdir", "workdir")


def readonly_view(mounts: list[Mount]) -> list[Mount]:
    """Descriptions of the same filesystem, read-only and without an overlay upper layer."""
    out = []
    for m in mounts:
        if m.type == "overlay":
            lowers: list[str] = []
            upper = ""
            rest = []
            for o in m.options:
                key, _, val = o.partition("=")
                if key == "lowerdir":
                    lowers = [p for p in val.split(":") if p]
                elif key == "upperdir":
                    upper = val
                elif key in _DROP or o in ("ro", "rw"):
                    continue
                else:
                    rest.append(o)
            layers = ([upper] if upper else []) + lowers
            if not layers:
                raise InvalidArgument("overlay mount without layers")
            if len(layers) == 1:
                out.append(Mount("bind", layers[0], ["rbind", "ro"]))
            else:
                if "index=off" not in rest:
                    rest.append("index=off")
                out.append(Mount("overlay", "overlay", ["ro", *rest, "lowerdir=" + ":".join(layers)]))
        elif m.type == "bind":
            out.append(Mount("bind", m.source, ["rbind", "ro"]))
        else:
            raise InvalidArgument(f"cannot make a read-only view of a {m.type!r} mount")
    return out


@contextmanager
def mounted_view(mounts: list[Mount], scratch: str) -> Iterator[str]:
    """Mount :func:`readonly_view` of mounts at a new directory under scratch; yields its path."""
    view = readonly_view(mounts)
    os.makedirs(scratch, 0o700, exist_ok=True)
    target = os.path.join(scratch, f"view-{secrets.token_hex(6)}")
    os.mkdir(target, 0o700)
    try:
        try:
            mount_all(view, target)
        except BaseException:
            unmount_all(target)
            raise
        try:
            yield target
        finally:
            unmount_all(target)
    finally:
        os.rmdir(target)
