"""Where a container's cgroup lives: cgroupsPath resolution (cgroupfs and systemd forms).

cgroupfs form (as runc): an absolute path is relative to each hierarchy's root; a relative path is
relative to the calling process's own cgroup (from /proc/self/cgroup); an empty path means
"/<container_id>". ".." can never climb above the hierarchy root (paths are cleaned as runc's
CleanPath does).

systemd form "slice:prefix:name" maps to "<expanded slice>/<prefix>-<name>.scope", e.g.
"system.slice:berth:abc" → "/system.slice/berth-abc.scope" and "a-b.slice" expands to
"/a.slice/a-b.slice". An empty path becomes "system.slice:berth:<container_id>".
"""

from __future__ import annotations

import os
import posixpath

from berth.errors import InvalidArgument

SYSTEMD_RUN_DIR = "/run/systemd/system"


def clean_path(path: str) -> str:
    """Normalise like runc's CleanPath: ".." stops at "/", relative stays relative."""
    if "\0" in path:
        raise InvalidArgument("cgroupsPath must not contain NUL bytes")
    if not path:
        return ""
    if posixpath.isabs(path):
        return posixpath.normpath(path).replace("//", "/")
    cleaned = posixpath.normpath("/" + path)
    return posixpath.relpath(cleaned, "/") if cleaned != "/" else ""


def expand_slice(slice_name: str) -> str:
    """systemd slice → path: "a-b-c.slice" → "/a.slice/a-b.slice/a-b-c.slice", "-.slice" → "/"."""
    suffix = ".slice"
    if not slice_name.endswith(suffix) or "/" in slice_name or len(slice_name) <= len(suffix):
        raise InvalidArgument(f"invalid systemd slice name {slice_name!r}")
    if slice_name == "-.slice":
        return "/"
    base = slice_name[: -len(suffix)]
    if base.startswith("-") or base.endswith("-") or "--" in base:
        raise InvalidArgument(f"invalid systemd slice name {slice_name!r}")
    path, prefix = "", ""
    for component in base.split("-"):
        path += "/" + prefix + component + suffix
        prefix += component + "-"
    return path


def systemd_path(cgroups_path: str, container_id: str) -> str:
    """"slice:prefix:name" → absolute cgroup path of the scope (or slice) systemd would create."""
    if not cgroups_path:
        cgroups_path = f"system.slice:berth:{container_id}"
    parts = cgroups_path.split(":")
    if len(parts) != 3:
        raise InvalidArgument(
            'expected cgroupsPath to be of format "slice:prefix:name" for systemd cgroups, '
            f"got {cgroups_path!r}")
    slice_name, prefix, name = parts
    if "/" in prefix or "/" in name or not name or name in (".", ".."):
        raise InvalidArgument(f"invalid systemd cgroupsPath {cgroups_path!r}")
    parent = expand_slice(slice_name or "system.slice")
    unit = name if name.endswith(".slice") else (f"{prefix}-{name}.scope" if prefix else f"{name}.scope")
    return posixpath.join(parent, unit)


def require_systemd(run_dir: str = SYSTEMD_RUN_DIR) -> None:
    if not os.path.isdir(run_dir):
        raise InvalidArgument("systemd cgroup driver requested, but systemd is not running")


def own_cgroups(proc_file: str = "/proc/self/cgroup") -> dict[str, str]:
    """The calling process's cgroup per controller ("" = v2 unified, "name=systemd" for named)."""
    out: dict[str, str] = {}
    try:
        with open(proc_file) as f:
            text = f.read()
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        ctrls, path = parts[1], parts[2]
        if not ctrls:
            out[""] = path
            continue
        for c in ctrls.split(","):
            out[c] = path
    return out


def container_path(cgroups_path: str, container_id: str, *, systemd: bool) -> str:
    """The cleaned cgroup path: absolute, or relative to the caller's cgroup."""
    if systemd:
        return systemd_path(cgroups_path, container_id)
    if not cgroups_path:
        if not container_id or "/" in container_id or container_id in (".", ".."):
            raise InvalidArgument(f"invalid container id {container_id!r} for a cgroup name")
        return "/" + container_id
    path = clean_path(cgroups_path)
    if path in ("", "/"):
        raise InvalidArgument(f"cgroupsPath {cgroups_path!r} names the root cgroup")
    return path


def join(mount: str, own: str, path: str) -> str:
    """mount + path (absolute) or mount + own cgroup + path (relative)."""
    if posixpath.isabs(path):
        return mount.rstrip("/") + path
    return posixpath.join(mount.rstrip("/") + "/" + own.strip("/"), path).replace("//", "/")
