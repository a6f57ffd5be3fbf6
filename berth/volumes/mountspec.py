"""Mount specifications as Docker takes them, parsed into resolved mounts (pure logic).

Inputs: ``-v``/``Binds`` strings, Engine API ``Mounts`` objects, the CLI's ``--mount`` CSV,
``--tmpfs``/``HostConfig.Tmpfs``, ``Config.Volumes`` (image ``VOLUME`` and ``-v /path``) and
``--volumes-from``. Output: :class:`ResolvedMount` records that the engine turns into OCI
runtime-spec mounts (:meth:`ResolvedMount.to_oci`). Errors are ``InvalidArgument`` with Docker's
wording. The only I/O is the injected ``path_exists`` (bind sources given with ``--mount``).
"""

from __future__ import annotations

import csv
import os
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace

from berth.errors import InvalidArgument
from berth.volumes.names import ANONYMOUS_LABEL, validate_name

_RW_MODES = {"rw", "ro"}
_LABEL_MODES = {"z", "Z"}
PROPAGATIONS = ("private", "rprivate", "slave", "rslave", "shared", "rshared")
_COPY_MODES = {"nocopy"}
_CONSISTENCY_MODES = {"consistent", "cached", "delegated", "default"}
DEFAULT_PROPAGATION = "rprivate"
_TMPFS_DATA_KEYS = {"size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol"}
# tmpfs flag options: name -> collision key (options with the same key override each other)
_TMPFS_FLAGS = {
    "ro": "rdonly", "rw": "rdonly", "nosuid": "nosuid", "suid": "nosuid", "nodev": "nodev",
    "dev": "nodev", "noexec": "noexec", "exec": "noexec", "sync": "sync", "async": "sync",
    "dirsync": "dirsync", "mand": "mand", "nomand": "mand", "atime": "noatime",
    "noatime": "noatime", "diratime": "nodiratime", "nodiratime": "nodiratime",
    "relatime": "relatime", "norelatime": "relatime", "strictatime": "strictatime",
    "nostrictatime": "strictatime", "nosymfollow": "nosymfollow",
    **{p: "propagation" for p in PROPAGATIONS}, "unbindable": "propagation",
    "runbindable": "propagation",
}
MOUNT_TYPES = ("bind", "volume", "tmpfs")


@dataclass
class ResolvedMount:
    """One mount of a container, resolved from whatever syntax asked for it.

    For ``volume`` mounts ``source`` stays empty until the volume store has created the volume
    (``VolumeStore.prepare``) and filled in its mountpoint.
    """

    type: str
    destination: str
    source: str = ""
    options: list[str] = field(default_factory=list)
    read_only: bool = False
    volume_name: str = ""
    anonymous: bool = False
    copy_up: bool = False
    driver: str = ""
    driver_options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    propagation: str = ""
    non_recursive: bool = False
    create_source: bool = False
    mode: str = ""

    def to_oci(self) -> dict:
        """The runtime-spec mount: ``{destination, type, source, options}``."""
        if self.type == "tmpfs":
            return {"destination": self.destination, "type": "tmpfs", "source": "tmpfs",
                    "options": list(self.options)}
        if not self.source:
            raise InvalidArgument(f"mount {self.destination}: volume {self.volume_name!r} has no source "
                                  "(VolumeStore.prepare was not called)")
        return {"destination": self.destination, "type": "bind", "source": self.source,
                "options": list(self.options)}

    def to_inspect(self) -> dict:
        """The container-inspect ``Mounts`` entry, as Docker shows it."""
        d = {"Type": self.type, "Source": "" if self.type == "tmpfs" else self.source,
             "Destination": self.destination,
             "Mode": self.mode, "RW": not self.read_only, "Propagation": self.propagation}
        if self.type == "volume":
            d = {"Type": "volume", "Name": self.volume_name, **{k: v for k, v in d.items() if k != "Type"},
                 "Driver": self.driver or "local"}
        return d

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> ResolvedMount:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})


# ---------------------------------------------------------------- errors and small helpers

def _invalid_spec(raw: str) -> InvalidArgument:
    return InvalidArgument(f"invalid volume specification: '{raw}'")


class _MountConfigError(InvalidArgument):
    def __init__(self, typ: str, msg: str) -> None:
        super().__init__(f'invalid mount config for type "{typ}": {msg}')


def _validate_target(target: str) -> None:
    if target == "/" or (target and posixpath.normpath(target) == "/"):
        raise InvalidArgument("invalid specification: destination can't be '/'")
    if not target.startswith("/"):
        raise InvalidArgument(f"invalid mount path: '{target}' mount path must be absolute")


def _clean(p: str) -> str:
    c = posixpath.normpath(p)
    return "/" + c.lstrip("/") if c.startswith("//") else c


def valid_mode(mode: str) -> bool:
    """Docker's linuxValidMountMode: at most one of each kind of ``-v`` mode option."""
    if mode == "":
        return True
    counts = [0, 0, 0, 0, 0]
    for o in mode.split(","):
        for i, kind in enumerate((_RW_MODES, _LABEL_MODES, PROPAGATIONS, _COPY_MODES, _CONSISTENCY_MODES)):
            if o in kind:
                counts[i] += 1
                break
        else:
            return False
    return max(counts) <= 1


def _mode_parts(mode: str) -> list[str]:
    return [o for o in mode.split(",") if o] if mode else []


def bind_options(read_only: bool, propagation: str, non_recursive: bool = False) -> list[str]:
    """OCI options of a bind (or volume) mount."""
    return ["bind" if non_recursive else "rbind", "ro" if read_only else "rw",
            propagation or DEFAULT_PROPAGATION]


def merge_tmpfs_options(options: Iterable[str]) -> list[str]:
    """Docker's MergeTmpfsOptions: later options override earlier ones of the same kind."""
    opts = list(options)
    seen_flags: set[str] = set()
    seen_data: set[str] = set()
    out: list[str] = []
    for o in reversed(opts):
        if o in ("defaults", ""):
            continue
        if o in _TMPFS_FLAGS:
            key = _TMPFS_FLAGS[o]
            if key not in seen_flags:
                out.insert(0, o)
                seen_flags.add(key)
            continue
        k, sep, _ = o.partition("=")
        if not sep or k not in _TMPFS_DATA_KEYS:
            raise InvalidArgument(f"invalid tmpfs option {o!r}")
        if k not in seen_data:
            out.insert(0, o)
            seen_data.add(k)
    return out


def _tmpfs_oci_options(data: str, read_only: bool = False) -> list[str]:
    base = ["nosuid", "nodev", "noexec", DEFAULT_PROPAGATION]
    extra = [o for o in data.split(",") if o] if data else []
    if read_only and "ro" not in extra:
        extra.insert(0, "ro")
    return merge_tmpfs_options(base + extra)


def tmpfs_size_option(size: int) -> str:
    """``size=`` in the largest unit (g/m/k) that divides the byte count, as Docker writes it."""
    for suffix, div in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if size % div == 0:
            return f"size={size // div}{suffix}"
    return f"size={size}"


_RAM_RE = re.compile(r"^(\d+(?:\.\d+)?) ?([kKmMgGtTpP])?[iI]?[bB]?$")


def ram_in_bytes(s: str) -> int:
    """Docker's units.RAMInBytes: ``64m``, ``1.5g``, ``100``, binary multiples."""
    m = _RAM_RE.match(s.strip())
    if not m:
        raise InvalidArgument(f"invalid size: '{s}'")
    mult = 1024 ** ("kmgtp".index(m.group(2).lower()) + 1) if m.group(2) else 1
    return int(float(m.group(1)) * mult)


# ---------------------------------------------------------------- -v / Binds

def parse_bind(raw: str, *, volume_driver: str = "") -> ResolvedMount:
    """Parse one ``-v``/``Binds`` string: ``name:/dst[:mode]``, ``/src:/dst[:mode]``, ``/dst``.

    A missing bind source is not an error here: ``create_source`` is set and
    :func:`create_bind_sources` makes the directory, as Docker does for ``-v``.
    """
    arr = raw.split(":", 3)
    if arr[0] == "" or len(arr) > 3:
        raise _invalid_spec(raw)
    source, mode = "", ""
    if len(arr) == 1:
        target = arr[0]
    elif len(arr) == 2:
        if valid_mode(arr[1]):
            raise _invalid_spec(raw)
        source, target = arr
    else:
        source, target, mode = arr
    if not valid_mode(mode):
        raise InvalidArgument(f"invalid mode: {mode}")
    parts = _mode_parts(mode)
    typ = "bind" if source.startswith("/") else "volume"
    read_only = "ro" in parts
    prop = next((p for p in parts if p in PROPAGATIONS), "")
    try:
        _validate_target(target)
        if typ == "volume" and source:
            validate_name(source)
        if typ == "bind" and "nocopy" in parts:
            raise InvalidArgument("field VolumeOptions must not be specified")
        if typ == "volume" and prop:
            raise InvalidArgument("field BindOptions must not be specified")
    except InvalidArgument as e:
        raise InvalidArgument(f"invalid volume specification: '{raw}': "
                              f"{_MountConfigError(typ, e.message).message}") from None
    if typ == "bind":
        m = ResolvedMount(type="bind", destination=_clean(target), source=_clean(source),
                          read_only=read_only, propagation=prop or DEFAULT_PROPAGATION,
                          create_source=True, mode=mode)
        m.options = bind_options(read_only, m.propagation)
        return m
    m = ResolvedMount(type="volume", destination=_clean(target), volume_name=source,
                      anonymous=not source, read_only=read_only, copy_up="nocopy" not in parts,
                      driver=volume_driver or "local", mode=mode)
    if m.anonymous:
        m.labels = {ANONYMOUS_LABEL: ""}
    m.options = bind_options(read_only, "")
    return m


# ---------------------------------------------------------------- Mounts (Engine API) and --mount

def parse_api_mount(spec: Mapping, *, path_exists: Callable[[str], bool] = os.path.exists) -> ResolvedMount:
    """Parse one ``HostConfig.Mounts`` object (``Type, Source, Target, ReadOnly, *Options``)."""
    if not isinstance(spec, Mapping):
        raise InvalidArgument("invalid mount config: a mount must be an object")
    typ = str(spec.get("Type") or "")
    source = str(spec.get("Source") or "")
    target = str(spec.get("Target") or "")
    read_only = bool(spec.get("ReadOnly"))
    bopts, vopts, topts = spec.get("BindOptions"), spec.get("VolumeOptions"), spec.get("TmpfsOptions")

    def err(msg: str) -> InvalidArgument:
        return _MountConfigError(typ, msg)

    if not target:
        raise err("field Target must not be empty")
    try:
        _validate_target(target)
    except InvalidArgument as e:
        raise err(e.message) from None
    if typ not in MOUNT_TYPES:
        raise err("mount type unknown")
    for name, val, allowed in (("BindOptions", bopts, "bind"), ("VolumeOptions", vopts, "volume"),
                               ("TmpfsOptions", topts, "tmpfs")):
        if val is not None and typ != allowed:
            raise err(f"field {name} must not be specified")
    dest = _clean(target)
    if typ == "bind":
        bopts = bopts or {}
        if not source:
            raise err("field Source must not be empty")
        prop = str(bopts.get("Propagation") or "")
        if prop and prop not in PROPAGATIONS:
            raise err(f"invalid propagation mode: {prop}")
        if not source.startswith("/"):
            raise err(f"invalid mount path: '{source}' mount path must be absolute")
        create = bool(bopts.get("CreateMountpoint"))
        if not create and not path_exists(source):
            raise err(f"bind source path does not exist: {source}")
        non_rec = bool(bopts.get("NonRecursive"))
        m = ResolvedMount(type="bind", destination=dest, source=_clean(source), read_only=read_only,
                          propagation=prop or DEFAULT_PROPAGATION, non_recursive=non_rec,
                          create_source=create)
        m.options = bind_options(read_only, m.propagation, non_rec)
        return m
    if typ == "volume":
        vopts = vopts or {}
        if vopts.get("Subpath"):
            raise err("volume subpaths are not supported")
        if read_only and not source:
            raise err("must not set ReadOnly mode when using anonymous volumes")
        if source:
            try:
                validate_name(source)
            except InvalidArgument as e:
                raise err(e.message) from None
        drv = vopts.get("DriverConfig") or {}
        labels = {str(k): str(v) for k, v in (vopts.get("Labels") or {}).items()}
        if not source:
            labels[ANONYMOUS_LABEL] = ""
        m = ResolvedMount(type="volume", destination=dest, volume_name=source, anonymous=not source,
                          read_only=read_only, copy_up=not vopts.get("NoCopy"),
                          driver=str(drv.get("Name") or "local"),
                          driver_options={str(k): str(v) for k, v in (drv.get("Options") or {}).items()},
                          labels=labels)
        m.options = bind_options(read_only, "")
        return m
    # tmpfs
    if source:
        raise err("field Source must not be specified")
    topts = topts or {}
    data: list[str] = []
    try:
        mode = int(topts.get("Mode") or 0)
        size = int(topts.get("SizeBytes") or 0)
    except (TypeError, ValueError):
        raise err("invalid TmpfsOptions") from None
    if size < 0:
        raise err("invalid tmpfs size: must not be negative")
    if mode:
        data.append(f"mode={mode & 0o7777:o}")
    if size:
        data.append(tmpfs_size_option(size))
    for opt in topts.get("Options") or []:
        if isinstance(opt, (list, tuple)) and opt:
            data.append("=".join(str(x) for x in opt[:2]))
    try:
        options = _tmpfs_oci_options(",".join(data), read_only)
    except InvalidArgument as e:
        raise err(e.message) from None
    return ResolvedMount(type="tmpfs", destination=dest, source="tmpfs", read_only=read_only,
                         options=options)


def _parse_bool(key: str, val: str) -> bool:
    v = val.strip().lower()
    if v in ("1", "t", "true"):
        return True
    if v in ("0", "f", "false"):
        return False
    raise InvalidArgument(f"invalid value for {key}: {val}")


def parse_mount_flag(value: str, *, cwd: str | None = None) -> dict:
    """The CLI's ``--mount type=...,source=...,target=...`` → an Engine API ``Mounts`` object."""
    try:
        fields = next(csv.reader([value]))
    except (csv.Error, StopIteration):
        raise InvalidArgument(f"invalid argument {value!r} for --mount") from None
    m: dict = {"Type": "volume"}

    def sub(key: str) -> dict:
        return m.setdefault(key, {})

    for f in fields:
        key, sep, val = f.partition("=")
        key = key.strip().lower()
        if not sep:
            if key in ("readonly", "ro"):
                m["ReadOnly"] = True
            elif key == "volume-nocopy":
                sub("VolumeOptions")["NoCopy"] = True
            elif key == "bind-nonrecursive":
                sub("BindOptions")["NonRecursive"] = True
            else:
                raise InvalidArgument(f"invalid field '{f}' must be a key=value pair")
            continue
        if key == "type":
            m["Type"] = val.lower()
        elif key in ("source", "src"):
            if (val == "." or val.startswith("./") or val == "..") and cwd is not None:
                val = _clean(posixpath.join(cwd, val))
            m["Source"] = val
        elif key in ("target", "dst", "destination"):
            m["Target"] = val
        elif key in ("readonly", "ro"):
            m["ReadOnly"] = _parse_bool(key, val)
        elif key == "consistency":
            m["Consistency"] = val.lower()
        elif key == "bind-propagation":
            sub("BindOptions")["Propagation"] = val.lower()
        elif key == "bind-nonrecursive":
            sub("BindOptions")["NonRecursive"] = _parse_bool(key, val)
        elif key == "bind-create-mountpoint":
            sub("BindOptions")["CreateMountpoint"] = _parse_bool(key, val)
        elif key == "volume-nocopy":
            sub("VolumeOptions")["NoCopy"] = _parse_bool(key, val)
        elif key == "volume-label":
            k, _, v = val.partition("=")
            sub("VolumeOptions").setdefault("Labels", {})[k] = v
        elif key == "volume-driver":
            sub("VolumeOptions").setdefault("DriverConfig", {})["Name"] = val
        elif key == "volume-opt":
            k, _, v = val.partition("=")
            sub("VolumeOptions").setdefault("DriverConfig", {}).setdefault("Options", {})[k] = v
        elif key == "volume-subpath":
            sub("VolumeOptions")["Subpath"] = val
        elif key == "tmpfs-size":
            try:
                sub("TmpfsOptions")["SizeBytes"] = ram_in_bytes(val)
            except InvalidArgument:
                raise InvalidArgument(f"invalid value for {key}: {val}") from None
        elif key == "tmpfs-mode":
            try:
                mode = int(val, 8)
            except ValueError:
                raise InvalidArgument(f"invalid value for {key}: {val}") from None
            if not 0 <= mode < 1 << 32:
                raise InvalidArgument(f"invalid value for {key}: {val}")
            sub("TmpfsOptions")["Mode"] = mode
        else:
            raise InvalidArgument(f"unexpected key '{key}' in '{f}'")
    if not m.get("Type"):
        raise InvalidArgument("type is required")
    if not m.get("Target"):
        raise InvalidArgument("target is required")
    for opt, prefix, typ in (("VolumeOptions", "volume", "volume"), ("BindOptions", "bind", "bind"),
                             ("TmpfsOptions", "tmpfs", "tmpfs")):
        if opt in m and m["Type"] != typ:
            raise InvalidArgument(f"cannot mix '{prefix}-*' options with mount type '{m['Type']}'")
    return m


# ---------------------------------------------------------------- --tmpfs and --volumes-from

def parse_tmpfs(dest: str, opts: str = "") -> ResolvedMount:
    """One ``HostConfig.Tmpfs`` entry (``--tmpfs /path[:opts]`` split at the first colon)."""
    _validate_target(dest)
    return ResolvedMount(type="tmpfs", destination=_clean(dest), source="tmpfs",
                         read_only="ro" in (opts or "").split(","),
                         options=_tmpfs_oci_options(opts or ""), mode=opts or "")


def parse_tmpfs_flag(value: str) -> tuple[str, str]:
    """The CLI's ``--tmpfs /path[:opts]`` → (path, opts) for ``HostConfig.Tmpfs``."""
    dest, _, opts = value.partition(":")
    return dest, opts


def parse_volumes_from(spec: str) -> tuple[str, str]:
    """``container[:ro|rw]`` → (container, mode); propagation and copy modes are refused."""
    if not spec:
        raise InvalidArgument("volumes-from specification cannot be an empty string")
    ident, _, mode = spec.partition(":")
    if not mode:
        return ident, "rw"
    parts = _mode_parts(mode)
    if not valid_mode(mode) or any(p in PROPAGATIONS or p in _COPY_MODES for p in parts):
        raise InvalidArgument(f"invalid mode: {mode}")
    return ident, mode


def volumes_from(spec: str, get_mounts: Callable[[str], list[ResolvedMount]]) -> list[ResolvedMount]:
    """The mounts another container shares with ``--volumes-from spec``.

    ``get_mounts(container)`` returns that container's resolved mounts (and raises NotFound).
    Copies never copy up; ``ro`` makes every mount read-only.
    """
    ident, mode = parse_volumes_from(spec)
    ro_mode = "ro" in _mode_parts(mode)
    out = []
    for m in get_mounts(ident):
        ro = m.read_only or ro_mode
        cp = replace(m, read_only=ro, copy_up=False, labels=dict(m.labels),
                     driver_options=dict(m.driver_options))
        if m.type == "tmpfs":
            continue  # tmpfs mounts are private to their container, as in Docker
        cp.options = bind_options(ro, m.propagation if m.type == "bind" else "", m.non_recursive)
        out.append(cp)
    return out


# ---------------------------------------------------------------- all of a container's mounts

def _depth(m: ResolvedMount) -> int:
    return len(m.destination.rstrip("/").split("/"))


def plan_mounts(*, binds: Iterable[str] = (), mounts: Iterable[Mapping] = (),
                tmpfs: Mapping[str, str] | None = None, volumes: Iterable[str] = (),
                volumes_from_specs: Iterable[str] = (),
                get_mounts: Callable[[str], list[ResolvedMount]] | None = None,
                volume_driver: str = "",
                path_exists: Callable[[str], bool] = os.path.exists) -> list[ResolvedMount]:
    """All mounts of a new container, in mount order (parents before children).

    Precedence as Docker's registerMountPoints: ``--volumes-from`` first, overridden by
    ``Binds`` and ``Mounts`` (a destination used twice among Binds, Mounts and Tmpfs is
    ``Duplicate mount point``), then ``Config.Volumes`` (image VOLUMEs, ``-v /path``) become
    anonymous volumes where nothing else is mounted.
    """
    by_dest: dict[str, ResolvedMount] = {}
    explicit: set[str] = set()
    if volumes_from_specs and get_mounts is None:
        raise InvalidArgument("volumes-from needs a container lookup")
    for spec in volumes_from_specs:
        for m in volumes_from(spec, get_mounts):  # type: ignore[arg-type]
            by_dest[m.destination] = m

    def add(m: ResolvedMount) -> None:
        if m.destination in explicit:
            raise InvalidArgument(f"Duplicate mount point: {m.destination}")
        explicit.add(m.destination)
        by_dest[m.destination] = m

    for raw in binds or ():
        add(parse_bind(raw, volume_driver=volume_driver))
    for spec in mounts or ():
        add(parse_api_mount(spec, path_exists=path_exists))
    for dest, opts in (tmpfs or {}).items():
        add(parse_tmpfs(dest, opts))
    for dest in volumes or ():
        try:
            _validate_target(dest)
        except InvalidArgument as e:
            raise InvalidArgument(f"invalid volume specification: '{dest}': {e.message}") from None
        if _clean(dest) in by_dest:
            continue
        m = parse_bind(dest, volume_driver=volume_driver)
        by_dest[m.destination] = m
    return sorted(by_dest.values(), key=_depth)


def create_bind_sources(mounts: Iterable[ResolvedMount]) -> list[str]:
    """Create missing bind sources flagged ``create_source`` (``-v``); returns the created dirs."""
    made = []
    for m in mounts:
        if m.type == "bind" and m.create_source and not os.path.lexists(m.source):
            os.makedirs(m.source, 0o755, exist_ok=True)
            made.append(m.source)
    return made
