"""The local driver's options (``type``, ``device``, ``o``) and the mounts they describe.

A volume created with options is mounted on its ``_data`` directory while at least one
container uses it (reference-counted by the store) and unmounted after the last one, as
Docker's local driver does. Mounting goes through :mod:`berth.mount`.
"""

from __future__ import annotations

import re

from berth.errors import BerthError, InvalidArgument
from berth.mount import Mount, is_mountpoint, mount_all, unmount_all

VALID_OPTIONS = ("type", "o", "device", "size")
_REQUIRED = {"device": ("type",), "type": ("device",), "o": ("device", "type")}


def validate_options(opts: dict[str, str] | None) -> dict[str, str]:
    """Check driver options as Docker's local driver does; returns a clean copy."""
    opts = dict(opts or {})
    for key in opts:
        if key not in VALID_OPTIONS:
            raise InvalidArgument(f'invalid option: "{key}"')
    if opts.get("size"):
        raise InvalidArgument("quota size requested but no quota support")
    for key, needs in _REQUIRED.items():
        if key in opts:
            for need in needs:
                if need not in opts:
                    raise InvalidArgument(f'missing required option: "{need}"')
    if opts.get("type") and not re.match(r"^[a-zA-Z0-9_.-]+$", opts["type"]):
        raise InvalidArgument(f'invalid option: "type={opts["type"]}"')
    for key, val in opts.items():
        if "\x00" in key or "\x00" in val:
            raise InvalidArgument(f'invalid option: "{key}"')
    return opts


def needs_mount(opts: dict[str, str] | None) -> bool:
    """True when the volume's data lives on a device mounted at use time."""
    return bool(opts and opts.get("device"))


def describe(opts: dict[str, str]) -> Mount:
    """The mount description of a volume with device options (``type=tmpfs,device=tmpfs,o=size=64m``)."""
    typ = opts["type"]
    options = [o for o in (opts.get("o") or "").split(",") if o]
    if typ in ("none", "bind") or "bind" in options or "rbind" in options:
        return Mount(type="bind", source=opts["device"], options=options)
    return Mount(type=typ, source=opts["device"], options=options)


def mount_device(opts: dict[str, str], target: str) -> None:
    """Mount the volume's device on target (its _data directory)."""
    try:
        mount_all([describe(opts)], target)
    except OSError as e:
        msg = str(e)
        pw = re.search(r"password=([^,]*)", opts.get("o") or "")
        if pw and pw.group(1):
            msg = msg.replace(pw.group(1), "********")
        raise BerthError(f"failed to mount local volume: {msg}") from None


def unmount_device(target: str) -> None:
    """Unmount whatever is mounted on target (nothing mounted is fine)."""
    if is_mountpoint(target):
        unmount_all(target, detach=True)
