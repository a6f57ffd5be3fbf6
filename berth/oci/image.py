"""OCI and Docker image formats: media types, descriptors, manifests, indexes, configs (pure).

Every parser validates what it is given: sizes are capped, digests are checked with
``berth.oci.digest.validate`` before they could be used as paths, ``layers: null`` and a
``mediaType`` that contradicts the descriptor that led to the blob are refused.
"""

from __future__ import annotations

import hashlib
import json
import platform as _platform
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from berth.errors import DataCorrupt, InvalidArgument, LimitExceeded, NotFound
from berth.oci import digest as _digest

# --- media types -------------------------------------------------------------------------------
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYOUT_VERSION = "1.0.0"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_MANIFEST_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
# layer media type -> compression (None = uncompressed)
LAYER_TYPES: dict[str, str | None] = {
    OCI_LAYER: None, OCI_LAYER_GZIP: "gzip", OCI_LAYER_ZSTD: "zstd",
    OCI_LAYER_NONDIST: None, OCI_LAYER_NONDIST_GZIP: "gzip", OCI_LAYER_NONDIST_ZSTD: "zstd",
    DOCKER_LAYER: None, DOCKER_LAYER_GZIP: "gzip", DOCKER_LAYER_ZSTD: "zstd",
    DOCKER_FOREIGN_LAYER: "gzip",
}
FOREIGN_LAYER_TYPES = frozenset({DOCKER_FOREIGN_LAYER, OCI_LAYER_NONDIST, OCI_LAYER_NONDIST_GZIP,
                                 OCI_LAYER_NONDIST_ZSTD})

# --- limits ------------------------------------------------------------------------------------
MAX_MANIFEST_SIZE = 4 << 20      # as containerd: a manifest or index above 4 MiB is refused
MAX_CONFIG_SIZE = 8 << 20
MAX_LAYERS = 128
MAX_INDEX_ENTRIES = 4096

# annotations
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
ANNOTATION_CREATED = "org.opencontainers.image.created"


def layer_media_type(compression: str | None, *, docker: bool = False) -> str:
    """The layer media type for a compression (None, "gzip", "zstd")."""
    if docker:
        return {None: DOCKER_LAYER, "gzip": DOCKER_LAYER_GZIP, "zstd": DOCKER_LAYER_ZSTD}[compression]
    return {None: OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}[compression]


def is_layer(media_type: str) -> bool:
    return media_type in LAYER_TYPES


# --- descriptors -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Platform:
    """``os/architecture[/variant]`` as in an index entry or a config."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    def __str__(self) -> str:
        s = f"{self.os}/{self.architecture}"
        return s + f"/{self.variant}" if self.variant else s

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            d["variant"] = self.variant
        if self.os_version:
            d["os.version"] = self.os_version
        if self.os_features:
            d["os.features"] = list(self.os_features)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Platform:
        if not isinstance(d, dict):
            raise InvalidArgument("invalid platform: not an object")
        os_, arch = d.get("os"), d.get("architecture")
        if not isinstance(os_, str) or not isinstance(arch, str):
            raise InvalidArgument("invalid platform: os and architecture must be strings")
        variant = d.get("variant") or ""
        if not isinstance(variant, str):
            raise InvalidArgument("invalid platform: variant must be a string")
        feats = d.get("os.features") or ()
        return cls(os=os_, architecture=arch, variant=variant, os_version=str(d.get("os.version") or ""),
                   os_features=tuple(str(f) for f in feats) if isinstance(feats, list) else ())


@dataclass(frozen=True)
class Descriptor:
    """``{mediaType, digest, size}`` pointing at a blob, plus optional fields."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    artifact_type: str = ""

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            d["urls"] = list(self.urls)
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.platform:
            d["platform"] = self.platform.to_dict()
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        return d

    @classmethod
    def from_dict(cls, d: Any, *, what: str = "descriptor") -> Descriptor:
        if not isinstance(d, dict):
            raise InvalidArgument(f"invalid {what}: not an object")
        mt = d.get("mediaType")
        if not isinstance(mt, str) or not mt or len(mt) > 255:
            raise InvalidArgument(f"invalid {what}: missing or bad mediaType")
        dg = d.get("digest")
        try:
            _digest.validate(dg)
        except InvalidArgument:
            raise InvalidArgument(f"invalid {what}: bad digest {dg!r}") from None
        size = d.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or size > 1 << 44:
            raise InvalidArgument(f"invalid {what}: bad size {size!r}")
        ann = d.get("annotations") or {}
        if not isinstance(ann, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in ann.items()):
            raise InvalidArgument(f"invalid {what}: annotations must map strings to strings")
        plat = Platform.from_dict(d["platform"]) if d.get("platform") is not None else None
        urls = d.get("urls") or ()
        if not isinstance(urls, list | tuple) or not all(isinstance(u, str) for u in urls):
            raise InvalidArgument(f"invalid {what}: urls must be a list of strings")
        return cls(media_type=mt, digest=dg, size=size, annotations=dict(ann), platform=plat,
                   urls=tuple(urls), artifact_type=str(d.get("artifactType") or ""))


# --- manifests and indexes ---------------------------------------------------------------------
@dataclass
class Manifest:
    """An image manifest (OCI or Docker schema2)."""

    media_type: str
    config: Descriptor
    layers: list[Descriptor]
    annotations: dict[str, str] = field(default_factory=dict)
    schema_version: int = 2

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"schemaVersion": self.schema_version, "mediaType": self.media_type,
                             "config": self.config.to_dict(),
                             "layers": [layer.to_dict() for layer in self.layers]}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())


@dataclass
class Index:
    """An image index (OCI) or manifest list (Docker)."""

    media_type: str
    manifests: list[Descriptor]
    annotations: dict[str, str] = field(default_factory=dict)
    schema_version: int = 2

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"schemaVersion": self.schema_version, "mediaType": self.media_type,
                             "manifests": [m.to_dict() for m in self.manifests]}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())


def canonical_json(obj: Any) -> bytes:
    """Compact JSON with sorted keys (stable bytes, hence stable digests)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _load_json(data: bytes, limit: int, what: str) -> dict:
    if len(data) > limit:
        raise LimitExceeded(f"{what} too large: {len(data)} bytes (limit {limit})")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"invalid {what}: {e}") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"invalid {what}: not a JSON object")
    return obj


def _check_schema(obj: dict, what: str) -> int:
    sv = obj.get("schemaVersion")
    if sv != 2:
        raise InvalidArgument(f"invalid {what}: unsupported schemaVersion {sv!r}")
    return sv


def _check_media_type(obj: dict, expected: str | None, allowed: frozenset[str], what: str) -> str:
    declared = obj.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise InvalidArgument(f"invalid {what}: mediaType must be a string")
    if declared and declared not in allowed:
        raise InvalidArgument(f"invalid {what}: unexpected mediaType {declared!r}")
    if expected and declared and declared != expected:
        raise InvalidArgument(
            f"invalid {what}: mediaType {declared!r} does not match descriptor {expected!r}")
    mt = declared or expected
    if not mt:
        # OCI allows mediaType to be absent: decide from the content
        mt = OCI_INDEX if "manifests" in obj else OCI_MANIFEST
    if mt not in allowed:
        raise InvalidArgument(f"invalid {what}: unexpected mediaType {mt!r}")
    return mt


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest:
    """Parse and validate an image manifest; media_type is the descriptor's, if known."""
    obj = _load_json(data, MAX_MANIFEST_SIZE, "manifest")
    if "manifests" in obj:
        raise InvalidArgument("invalid manifest: has a 'manifests' field (an index posing as a manifest)")
    sv = _check_schema(obj, "manifest")
    mt = _check_media_type(obj, media_type, MANIFEST_TYPES, "manifest")
    if "config" not in obj or obj["config"] is None:
        raise InvalidArgument("invalid manifest: missing config")
    config = Descriptor.from_dict(obj["config"], what="config descriptor")
    layers_raw = obj.get("layers")
    if not isinstance(layers_raw, list):
        raise InvalidArgument("invalid manifest: layers must be a list (got null or another type)")
    if len(layers_raw) > MAX_LAYERS:
        raise LimitExceeded(f"invalid manifest: {len(layers_raw)} layers (limit {MAX_LAYERS})")
    layers = [Descriptor.from_dict(layer, what=f"layer {i}") for i, layer in enumerate(layers_raw)]
    for i, layer in enumerate(layers):
        if not is_layer(layer.media_type):
            raise InvalidArgument(
                f"invalid manifest: layer {i} has unsupported mediaType {layer.media_type!r}")
    if config.media_type not in CONFIG_TYPES:
        raise InvalidArgument(f"invalid manifest: unsupported config mediaType {config.media_type!r}")
    ann = obj.get("annotations") or {}
    if not isinstance(ann, dict):
        raise InvalidArgument("invalid manifest: annotations must be an object")
    return Manifest(media_type=mt, config=config, layers=layers, annotations=dict(ann), schema_version=sv)


def parse_index(data: bytes, media_type: str | None = None) -> Index:
    """Parse and validate an image index or Docker manifest list."""
    obj = _load_json(data, MAX_MANIFEST_SIZE, "index")
    if "layers" in obj or "config" in obj:
        raise InvalidArgument("invalid index: has 'layers' or 'config' (a manifest posing as an index)")
    sv = _check_schema(obj, "index")
    mt = _check_media_type(obj, media_type, INDEX_TYPES, "index")
    raw = obj.get("manifests")
    if not isinstance(raw, list):
        raise InvalidArgument("invalid index: manifests must be a list")
    if len(raw) > MAX_INDEX_ENTRIES:
        raise LimitExceeded(f"invalid index: {len(raw)} entries (limit {MAX_INDEX_ENTRIES})")
    manifests = [Descriptor.from_dict(m, what=f"index entry {i}") for i, m in enumerate(raw)]
    ann = obj.get("annotations") or {}
    if not isinstance(ann, dict):
        raise InvalidArgument("invalid index: annotations must be an object")
    return Index(media_type=mt, manifests=manifests, annotations=dict(ann), schema_version=sv)


def sniff_media_type(data: bytes) -> str:
    """Guess whether JSON bytes are a manifest or an index (for blobs without a descriptor)."""
    obj = _load_json(data, MAX_MANIFEST_SIZE, "manifest")
    mt = obj.get("mediaType")
    if isinstance(mt, str) and mt in MANIFEST_TYPES | INDEX_TYPES:
        return mt
    if "manifests" in obj:
        return OCI_INDEX
    if "config" in obj or "layers" in obj:
        return OCI_MANIFEST
    raise InvalidArgument("invalid manifest: neither a manifest nor an index")


# --- config ------------------------------------------------------------------------------------
@dataclass
class ImageConfig:
    """An image config (``application/vnd.oci.image.config.v1+json``), validated, raw kept."""

    raw: dict
    architecture: str
    os: str
    variant: str
    diff_ids: list[str]
    config: dict
    history: list[dict]
    created: str

    @property
    def platform(self) -> Platform:
        return Platform(os=self.os, architecture=self.architecture, variant=self.variant)

    def to_bytes(self) -> bytes:
        return canonical_json(self.raw)


def parse_config(data: bytes) -> ImageConfig:
    """Parse and validate an image config: rootfs.type "layers", diff_ids digests, types."""
    obj = _load_json(data, MAX_CONFIG_SIZE, "image config")
    rootfs = obj.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise InvalidArgument("invalid image config: rootfs.type must be \"layers\"")
    diff_ids = rootfs.get("diff_ids")
    if diff_ids is None:
        diff_ids = []
    if not isinstance(diff_ids, list):
        raise InvalidArgument("invalid image config: rootfs.diff_ids must be a list")
    if len(diff_ids) > MAX_LAYERS:
        raise LimitExceeded(f"invalid image config: {len(diff_ids)} layers (limit {MAX_LAYERS})")
    for d in diff_ids:
        try:
            _digest.validate(d)
        except InvalidArgument:
            raise InvalidArgument(f"invalid image config: bad diff_id {d!r}") from None
    cfg = obj.get("config")
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise InvalidArgument("invalid image config: config must be an object")
    for key in ("Env", "Cmd", "Entrypoint"):
        v = cfg.get(key)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise InvalidArgument(f"invalid image config: config.{key} must be a list of strings")
    history = obj.get("history") or []
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise InvalidArgument("invalid image config: history must be a list of objects")
    non_empty = sum(1 for h in history if not h.get("empty_layer"))
    if history and non_empty != len(diff_ids):
        raise InvalidArgument(
            f"invalid image config: history has {non_empty} non-empty layers, rootfs has {len(diff_ids)}")
    for key in ("architecture", "os", "variant", "created"):
        if obj.get(key) is not None and not isinstance(obj.get(key), str):
            raise InvalidArgument(f"invalid image config: {key} must be a string")
    return ImageConfig(raw=obj, architecture=obj.get("architecture") or "", os=obj.get("os") or "",
                       variant=obj.get("variant") or "", diff_ids=list(diff_ids), config=cfg,
                       history=list(history), created=obj.get("created") or "")


def check_manifest_config(manifest: Manifest, config: ImageConfig) -> None:
    """The manifest's layer count must equal the config's diff_ids count."""
    if len(manifest.layers) != len(config.diff_ids):
        raise DataCorrupt(f"manifest has {len(manifest.layers)} layers but config has "
                          f"{len(config.diff_ids)} diff_ids")


# --- chain IDs ---------------------------------------------------------------------------------
def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """chainID(L1) = diffID(L1); chainID(L1..n) = sha256(chainID(L1..n-1) + " " + diffID(Ln))."""
    out: list[str] = []
    for d in diff_ids:
        _digest.validate(d)
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def chain_id(diff_ids: Sequence[str]) -> str:
    """The chain ID of the whole stack ("" for no layers)."""
    ids = chain_ids(diff_ids)
    return ids[-1] if ids else ""


# --- platforms ---------------------------------------------------------------------------------
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm", "armel": "arm",
                 "i386": "386", "i686": "386"}


def normalize_platform(p: Platform) -> Platform:
    """Normalise as containerd: x86_64→amd64, aarch64→arm64 (variant v8 → ""), arm default v7."""
    os_ = p.os.lower()
    arch = _ARCH_ALIASES.get(p.architecture.lower(), p.architecture.lower())
    variant = p.variant.lower()
    if p.architecture.lower() == "armel":
        variant = variant or "v6"
    if arch == "arm64" and variant in ("8", "v8"):
        variant = ""
    elif arch == "arm":
        if not variant:
            variant = "v7"
        elif variant in ("5", "6", "7", "8"):
            variant = "v" + variant
    elif arch == "amd64" and variant == "v1":
        variant = ""
    return Platform(os=os_, architecture=arch, variant=variant, os_version=p.os_version,
                    os_features=p.os_features)


def host_platform() -> Platform:
    """The platform of this machine (``linux/amd64`` here)."""
    return normalize_platform(Platform(os="linux", architecture=_platform.machine() or "amd64"))


def parse_platform(s: str) -> Platform:
    """Parse ``os/arch[/variant]`` (``linux/arm64/v8``) or just ``arch``."""
    parts = s.strip().split("/")
    if not s.strip() or len(parts) > 3 or not all(parts):
        raise InvalidArgument(f"invalid platform {s!r}: expected os/arch[/variant]")
    if len(parts) == 1:
        return normalize_platform(Platform(os="linux", architecture=parts[0]))
    return normalize_platform(Platform(os=parts[0], architecture=parts[1],
                                       variant=parts[2] if len(parts) == 3 else ""))


def _variant_rank(arch: str, variant: str) -> int:
    if arch == "arm64":
        if not variant:
            return 80
        try:
            major, _, minor = variant.lstrip("v").partition(".")
            return int(major) * 10 + (int(minor) if minor else 0)
        except ValueError:
            return -1
    if arch in ("arm", "amd64"):
        v = variant or ("v1" if arch == "amd64" else "v7")
        try:
            return int(v.lstrip("v"))
        except ValueError:
            return -1
    return 0 if not variant else -1


def platform_score(want: Platform, have: Platform) -> int | None:
    """How well ``have`` serves a host of platform ``want``: None = not at all, higher = better.

    OS and architecture must be equal after normalisation; the variant may be older than the
    host's for arm (v7 host runs v6, v5) and amd64 (v3 host runs v2, v1) and arm64 (v8.x).
    """
    w, h = normalize_platform(want), normalize_platform(have)
    if w.os != h.os or w.architecture != h.architecture:
        return None
    if w.variant == h.variant:
        return 1000
    wr, hr = _variant_rank(w.architecture, w.variant), _variant_rank(h.architecture, h.variant)
    if wr < 0 or hr < 0 or hr > wr:
        return None
    return 500 - (wr - hr)


def select_manifest(index: Index, want: Platform | None = None) -> Descriptor:
    """Pick the index entry that best fits the platform (host by default).

    Raises NotFound ("no matching manifest for linux/amd64 in the manifest list entries").
    """
    want = normalize_platform(want or host_platform())
    best: tuple[int, int, Descriptor] | None = None
    for pos, d in enumerate(index.manifests):
        if d.media_type not in MANIFEST_TYPES | INDEX_TYPES:
            continue  # attestation blobs and unknown artifacts
        if d.platform is None:
            continue
        if d.annotations.get("vnd.docker.reference.type") == "attestation-manifest":
            continue
        score = platform_score(want, d.platform)
        if score is None:
            continue
        if best is None or score > best[0]:
            best = (score, -pos, d)
    if best is None:
        raise NotFound(f"no matching manifest for {want} in the manifest list entries")
    return best[2]


def config_matches(config: ImageConfig, want: Platform | None = None) -> bool:
    """True if an image config's platform can run on ``want`` (host by default)."""
    if not config.os and not config.architecture:
        return True
    return platform_score(want or host_platform(), config.platform) is not None


# --- building new images -----------------------------------------------------------------------
def new_config(*, diff_ids: Iterable[str], history: list[dict], config: dict | None = None,
               created: str, architecture: str | None = None, os: str = "linux", variant: str = "",
               author: str = "") -> dict:
    """A fresh OCI image config dict (created as RFC 3339 text)."""
    plat = host_platform()
    d: dict[str, Any] = {
        "architecture": architecture or plat.architecture,
        "os": os,
        "created": created,
        "config": config or {},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": history,
    }
    if variant or (architecture is None and plat.variant):
        d["variant"] = variant or plat.variant
    if author:
        d["author"] = author
    return d
