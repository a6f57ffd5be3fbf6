"""``docker import``: a rootfs tar (file or stream, any compression) → a one-layer image.

Config changes use Docker's ``--change`` syntax: ``CMD``, ``ENTRYPOINT``, ``ENV``, ``EXPOSE``,
``LABEL``, ``ONBUILD``, ``STOPSIGNAL``, ``USER``, ``VOLUME``, ``WORKDIR``.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from berth.errors import InvalidArgument
from berth.images.blobs import now_rfc3339, put_compressed_layer, put_image
from berth.oci import image as oci
from berth.oci import reference

if TYPE_CHECKING:
    from berth.images.store import Image, ImageStore

ALLOWED_CHANGES = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER",
                   "VOLUME", "WORKDIR")
_PORT_RE = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?(?:/(tcp|udp|sctp))?$", re.IGNORECASE)
MAX_CHANGE = 64 << 10


def _json_list(value: str) -> list[str] | None:
    v = value.strip()
    if not v.startswith("["):
        return None
    try:
        parsed = json.loads(v)
    except ValueError:
        return None
    if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
        return parsed
    return None


def _pairs(instr: str, value: str) -> list[tuple[str, str]]:
    """``K=V K2="v 2"`` or the legacy ``K value with spaces`` form."""
    try:
        words = shlex.split(value, posix=True)
    except ValueError as e:
        raise InvalidArgument(f"{instr}: {e}") from None
    if not words:
        raise InvalidArgument(f"{instr} requires at least one argument")
    if "=" not in words[0]:
        key, _, rest = value.strip().partition(" ")
        rest = rest.strip()
        if not rest:
            raise InvalidArgument(f"{instr} names must be followed by a value (or use {instr} key=value)")
        return [(key, rest)]
    out = []
    for w in words:
        k, eq, v = w.partition("=")
        if not eq or not k:
            raise InvalidArgument(
                f"{instr}: syntax error - can't find = in {w!r}. Must be of the form: name=value")
        out.append((k, v))
    return out


def _ports(value: str) -> list[str]:
    out = []
    for word in value.split():
        m = _PORT_RE.match(word)
        if not m:
            raise InvalidArgument(f"EXPOSE: invalid port {word!r}")
        start = int(m.group(1))
        end = int(m.group(2) or start)
        proto = (m.group(3) or "tcp").lower()
        if not 0 < start <= end <= 65535 or end - start > 65535:
            raise InvalidArgument(f"EXPOSE: invalid port range {word!r}")
        out.extend(f"{p}/{proto}" for p in range(start, end + 1))
    if not out:
        raise InvalidArgument("EXPOSE requires at least one argument")
    return out


def apply_changes(config: dict, changes: Sequence[str]) -> dict:
    """Return a copy of an image's ``config`` section with Docker ``--change`` lines applied."""
    cfg: dict[str, Any] = json.loads(json.dumps(config or {}))
    for line in changes:
        if not isinstance(line, str) or len(line) > MAX_CHANGE:
            raise InvalidArgument("invalid change: not a string or too long")
        line = line.strip()
        if not line:
            continue
        instr, _, value = line.partition(" ")
        instr = instr.upper()
        value = value.strip()
        if instr not in ALLOWED_CHANGES:
            raise InvalidArgument(f"{instr} is not a valid change command")
        if instr in ("CMD", "ENTRYPOINT"):
            args = _json_list(value)
            if args is None:
                args = ["/bin/sh", "-c", value] if value else []
            cfg["Cmd" if instr == "CMD" else "Entrypoint"] = args
            if instr == "ENTRYPOINT":
                cfg["Cmd"] = None  # as Docker: a new ENTRYPOINT resets CMD
        elif instr == "ENV":
            env = list(cfg.get("Env") or [])
            for k, v in _pairs(instr, value):
                env = [e for e in env if e.partition("=")[0] != k] + [f"{k}={v}"]
            cfg["Env"] = env
        elif instr == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            for k, v in _pairs(instr, value):
                labels[k] = v
            cfg["Labels"] = labels
        elif instr == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            for p in _ports(value):
                ports[p] = {}
            cfg["ExposedPorts"] = ports
        elif instr == "VOLUME":
            vols = _json_list(value)
            if vols is None:
                vols = value.split()
            if not vols or any(not v for v in vols):
                raise InvalidArgument("VOLUME specified can not be an empty string")
            volumes = dict(cfg.get("Volumes") or {})
            for v in vols:
                volumes[v] = {}
            cfg["Volumes"] = volumes
        elif instr == "WORKDIR":
            if not value:
                raise InvalidArgument("WORKDIR requires exactly one argument")
            base = cfg.get("WorkingDir") or "/"
            cfg["WorkingDir"] = posixpath.normpath(posixpath.join(base, value))
        elif instr == "USER":
            if not value:
                raise InvalidArgument("USER requires exactly one argument")
            cfg["User"] = value
        elif instr == "STOPSIGNAL":
            if not value:
                raise InvalidArgument("STOPSIGNAL requires exactly one argument")
            cfg["StopSignal"] = value
        elif instr == "ONBUILD":
            if not value:
                raise InvalidArgument("ONBUILD requires at least one argument")
            cfg["OnBuild"] = list(cfg.get("OnBuild") or []) + [value]
    return cfg


def import_image(store: ImageStore, src: BinaryIO | str, *, ref: str | None = None,
                 changes: Sequence[str] = (), message: str = "", source: str = "-",
                 platform: str | None = None, created: str | None = None) -> Image:
    """Import a rootfs tar (a stream or a file path) as a one-layer image, optionally tagged ``ref``.

    The layer is stored gzip-compressed whatever the input compression; the history entry and
    config carry ``message`` (default ``Imported from <source>``).
    """
    if ref:
        parsed = reference.parse(ref)
        if parsed.digest:
            raise InvalidArgument(f"cannot import with a digest reference: {ref}")
    cfg_section = apply_changes({}, changes)
    plat = oci.parse_platform(platform) if platform else oci.host_platform()
    with store.hold("import") as held:
        if isinstance(src, str):
            with open(src, "rb") as f:
                layer = put_compressed_layer(store.content, f, compression="gzip", check_tar=True, lease=held)
            source = source if source != "-" else src
        else:
            layer = put_compressed_layer(store.content, src, compression="gzip", check_tar=True, lease=held)
        created = created or now_rfc3339()
        msg = message or f"Imported from {source}"
        cfg = oci.new_config(diff_ids=[layer.diff_id], history=[{"created": created, "comment": msg}],
                             config=cfg_section, created=created, architecture=plat.architecture,
                             os=plat.os, variant=plat.variant)
        cfg["comment"] = msg
        mdesc = put_image(store.content, [layer], cfg, lease=held)
        return store.add(mdesc, names=[ref] if ref else [])
