"""``docker save`` / ``docker load``: one tar that is both a docker-archive and an OCI image layout.

save writes what Docker 25+ writes: ``blobs/sha256/<hex>`` (manifests, configs, the original layer
blobs), ``oci-layout``, ``index.json`` (one entry per name, annotated with
``io.containerd.image.name`` and ``org.opencontainers.image.ref.name``), ``manifest.json`` and
``repositories``. The output is deterministic (fixed owners and mtimes, sorted blobs).

load reads the tar as a stream (never extracting it to disk): every regular file is ingested into
the content store and verified against its name when the name is a digest; small metadata files
are kept in memory under a size cap. It understands the Docker 25+ combined form, older
docker-archives (``<id>/layer.tar``, ``<hex>.json``), podman's docker-archive, OCI layouts and
``oci-archive``. Hostile archives (path escapes, links outside the archive, digest mismatches,
oversized metadata, devices) are refused with a clear error and the blobs the load added are
deleted again.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import re
import secrets
import tarfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from berth.errors import BerthError, DataCorrupt, InvalidArgument, LimitExceeded, NotFound, NotImplementedErr
from berth.oci import digest as _digest
from berth.oci import image as oci
from berth.oci import reference

if TYPE_CHECKING:
    from berth.images.store import Image, ImageStore

_BLOB_RE = re.compile(r"^blobs/sha256/([a-f0-9]{64})$")
_HEXJSON_RE = re.compile(r"^([a-f0-9]{64})\.json$")
_META_NAMES = {"manifest.json", "index.json", "oci-layout", "repositories"}
_CHUNK = 1 << 20
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass
class LoadLimits:
    """Caps for one load: bytes of all files, entries, one metadata file, path length."""

    max_bytes: int = 256 << 30
    max_entries: int = 200_000
    max_meta: int = 4 << 20
    max_path: int = 4096
    max_images: int = 10_000


@dataclass
class LoadResult:
    """Images recorded by a load, and Docker's progress lines."""

    images: list[Image] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


# --- save --------------------------------------------------------------------------------------
def _resolve_for_save(store: ImageStore, ref: str) -> list[tuple[Image, list[str]]]:
    """What a save of ref writes: the given tag; every tag of a bare repo name; no name for IDs."""
    parsed = _try_parse(ref, default_tag=False)
    if parsed is not None and not parsed.tag and not parsed.digest:
        by_image: dict[str, list[str]] = {}
        for img in store.all():
            for t in img.tags:
                if reference.parse(t).name == parsed.name:
                    by_image.setdefault(img.id, []).append(t)
        if by_image:
            return [(store.get(i), sorted(tags)) for i, tags in sorted(by_image.items())]
    img = store.get(ref)
    if parsed is None or parsed.digest or not parsed.tag or str(parsed) not in img.tags:
        return [(img, [])]
    return [(img, [str(parsed)])]


def _try_parse(s: str, default_tag: bool = True) -> reference.Reference | None:
    try:
        return reference.parse(s, default_tag=default_tag)
    except InvalidArgument:
        return None


def save(store: ImageStore, refs: Sequence[str], out: BinaryIO) -> None:
    """Write the images refs name to out as a docker-archive + OCI layout tar.

    Names: ``busybox:1`` saves that tag, ``busybox`` every tag of the repository, an ID none.
    NotFound for an unknown image or a missing blob.
    """
    if not refs:
        raise InvalidArgument("nothing to save: no image given")
    order: list[str] = []
    names: dict[str, list[str]] = {}
    images: dict[str, Image] = {}
    for ref in refs:
        for img, img_names in _resolve_for_save(store, ref):
            if img.id not in images:
                order.append(img.id)
                images[img.id] = img
                names[img.id] = []
            for n in img_names:
                if n not in names[img.id]:
                    names[img.id].append(n)

    blobs: dict[str, int] = {}
    manifest_json: list[dict] = []
    index_entries: list[dict] = []
    repositories: dict[str, dict[str, str]] = {}
    for image_id in order:
        img = images[image_id]
        m = store.read_manifest(img)
        for d in [img.manifest, m.config, *m.layers]:
            info = store.content.info(d.digest)  # NotFound for a missing blob
            if info.size != d.size:
                raise DataCorrupt(f"blob {d.digest}: stored size {info.size} != descriptor {d.size}")
            blobs[d.digest] = d.size
        tags = [reference.parse(n).familiar() for n in names[image_id]]
        manifest_json.append({
            "Config": _blob_path(m.config.digest),
            "RepoTags": tags or None,
            "Layers": [_blob_path(layer.digest) for layer in m.layers],
        })
        desc = oci.Descriptor(img.manifest.media_type, img.manifest.digest, img.manifest.size)
        if not names[image_id]:
            index_entries.append(desc.to_dict())
        for n in names[image_id]:
            ref = reference.parse(n)
            d = desc.to_dict()
            d["annotations"] = {oci.ANNOTATION_CONTAINERD_NAME: str(ref),
                                oci.ANNOTATION_REF_NAME: ref.tag}
            index_entries.append(d)
            if m.layers:
                repositories.setdefault(ref.familiar_name(), {})[ref.tag] = m.layers[-1].digest[7:]

    index = {"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": index_entries}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        _add_dir(tf, "blobs")
        _add_dir(tf, "blobs/sha256")
        for dg in sorted(blobs):
            ti = _tarinfo(_blob_path(dg), blobs[dg])
            with store.content.open(dg) as f:
                tf.addfile(ti, f)
        _add_bytes(tf, "index.json", json.dumps(index, separators=(",", ":")).encode())
        _add_bytes(tf, "manifest.json", json.dumps(manifest_json, separators=(",", ":")).encode())
        _add_bytes(tf, "oci-layout", json.dumps({"imageLayoutVersion": oci.OCI_LAYOUT_VERSION}).encode())
        if repositories:
            _add_bytes(tf, "repositories", json.dumps(repositories, separators=(",", ":")).encode())


def _blob_path(dg: str) -> str:
    return "blobs/sha256/" + _digest.hex_of(dg)


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mode = 0o444 if name.startswith("blobs/") else 0o644
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def _add_dir(tf: tarfile.TarFile, name: str) -> None:
    ti = _tarinfo(name, 0)
    ti.type = tarfile.DIRTYPE
    ti.mode = 0o755
    tf.addfile(ti)


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    tf.addfile(_tarinfo(name, len(data)), io.BytesIO(data))


# --- load --------------------------------------------------------------------------------------
class _Prefixed(io.RawIOBase):
    """A stream with some already-read bytes put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head = head
        self.rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.head:
            n = min(len(b), len(self.head))
            b[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.rest.read(len(b))
        b[:len(data)] = data
        return len(data)


def _open_tar(src: BinaryIO) -> tarfile.TarFile:
    head = src.read(4)
    stream: BinaryIO = io.BufferedReader(_Prefixed(head, src), _CHUNK)  # type: ignore[arg-type]
    if head.startswith(_ZSTD_MAGIC) or head.startswith(b"\x1f\x8b"):
        from berth.archive import open_decompressed  # isal for gzip, zstandard for zstd

        return tarfile.open(fileobj=open_decompressed(stream), mode="r|")
    try:
        return tarfile.open(fileobj=stream, mode="r|*")
    except tarfile.TarError as e:
        raise InvalidArgument(f"invalid archive: {e}") from None


def _clean_name(name: str, limits: LoadLimits) -> str:
    if len(name) > limits.max_path or "\0" in name:
        raise InvalidArgument(f"invalid archive: entry name too long or with NUL: {name[:80]!r}")
    if name.startswith("/"):
        raise InvalidArgument(f"invalid archive: absolute entry name {name!r}")
    norm = posixpath.normpath(name)
    if norm == ".":
        return ""
    if norm == ".." or norm.startswith("../"):
        raise InvalidArgument(f"invalid archive: entry name escapes the archive: {name!r}")
    return norm


class _Loader:
    def __init__(self, store: ImageStore, limits: LoadLimits, lease) -> None:
        self.store = store
        self.content = store.content
        self.limits = limits
        self.lease = lease
        self.files: dict[str, str] = {}       # archive path -> blob digest
        self.links: dict[str, str] = {}       # archive path -> archive path it points at
        self.meta: dict[str, bytes] = {}
        self.new_blobs: set[str] = set()
        self.total = 0
        self.token = secrets.token_hex(6)
        self.started = time.time() - 1.0

    def read_stream(self, src: BinaryIO) -> None:
        entries = 0
        with _open_tar(src) as tf:
            while True:
                try:
                    member = tf.next()
                except (tarfile.TarError, EOFError, zlib.error) as e:
                    raise InvalidArgument(f"invalid archive: {e}") from None
                if member is None:
                    break
                entries += 1
                if entries > self.limits.max_entries:
                    raise LimitExceeded(f"archive has more than {self.limits.max_entries} entries")
                self._entry(tf, member)
        if entries == 0:
            raise InvalidArgument("invalid archive: empty or not a tar")

    def _entry(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = _clean_name(member.name, self.limits)
        if member.isdir() or not name:
            return
        if member.issym() or member.islnk():
            if name in self.files or name in self.links or name in self.meta:
                raise InvalidArgument(f"invalid archive: duplicate entry {name!r}")
            base = posixpath.dirname(name) if member.issym() else ""
            target = member.linkname
            if target.startswith("/"):
                raise InvalidArgument(f"invalid archive: link {name!r} to absolute path {target!r}")
            self.links[name] = _clean_name(posixpath.join(base, target), self.limits)
            return
        if not member.isreg():
            raise InvalidArgument(f"invalid archive: entry {name!r} is not a regular file, dir or link")
        self.total += member.size
        if self.total > self.limits.max_bytes:
            raise LimitExceeded(f"archive holds more than {self.limits.max_bytes} bytes")
        if name in self.files or name in self.links or name in self.meta:
            raise InvalidArgument(f"invalid archive: duplicate entry {name!r}")
        f = tf.extractfile(member)
        assert f is not None
        if name in _META_NAMES or name.endswith("/json") or name.endswith("/VERSION"):
            if member.size > self.limits.max_meta:
                raise LimitExceeded(f"archive entry {name!r} is {member.size} bytes "
                                    f"(limit {self.limits.max_meta})")
            self.meta[name] = f.read()
            return
        expected = None
        m = _BLOB_RE.match(name) or _HEXJSON_RE.match(name)
        if m:
            expected = "sha256:" + m.group(1)
        existed = expected is not None and self.content.exists(expected)
        with self.content.writer(f"load-{self.token}-{name}", expected=expected, size=member.size) as w:
            try:
                w.copy_from(f)
                dg = w.commit()
            except DataCorrupt as e:
                raise DataCorrupt(f"invalid archive: entry {name!r}: {e}") from None
            except (tarfile.TarError, EOFError, zlib.error) as e:
                raise InvalidArgument(
                    f"invalid archive: entry {name!r} is truncated or corrupt: {e}") from None
        if not existed and self._written_now(dg):
            self.new_blobs.add(dg)
        if self.lease is not None:
            self.lease.add("content", dg)
        self.files[name] = dg

    def _written_now(self, dg: str) -> bool:
        """True if this load created the blob (a blob that existed before keeps its old mtime)."""
        try:
            return os.stat(self.content.path(dg)).st_mtime >= self.started
        except OSError:
            return False

    # -- resolution --------------------------------------------------------------------------
    def resolve(self, path: str, what: str) -> str:
        """The digest of the file at an archive path (following links, within the archive)."""
        if not isinstance(path, str) or not path:
            raise InvalidArgument(f"invalid archive: {what}: bad path {path!r}")
        p = _clean_name(path, self.limits)
        for _ in range(32):
            if p in self.files:
                return self.files[p]
            if p in self.links:
                p = self.links[p]
                continue
            raise InvalidArgument(f"invalid archive: {what} refers to {path!r}, which is not in the archive")
        raise InvalidArgument(f"invalid archive: {what}: too many levels of links at {path!r}")

    def blob_path_digest(self, dg: str, what: str) -> str:
        """Check that a descriptor's blob came with the archive (or was already stored)."""
        _digest.validate(dg)
        if _blob_path(dg) in self.files or dg in self.files.values() or self.content.exists(dg):
            return dg
        raise InvalidArgument(f"invalid archive: {what} {dg} is not in the archive")

    def json_meta(self, name: str) -> object:
        try:
            return json.loads(self.meta[name])
        except (ValueError, UnicodeDecodeError) as e:
            raise InvalidArgument(f"invalid archive: {name}: {e}") from None


def _layer_type_by_magic(content, dg: str) -> str:
    with content.open(dg) as f:
        head = f.read(4)
    if head[:2] == b"\x1f\x8b":
        return oci.OCI_LAYER_GZIP
    if head == _ZSTD_MAGIC:
        return oci.OCI_LAYER_ZSTD
    return oci.OCI_LAYER


@dataclass
class _Candidate:
    manifest: oci.Descriptor
    config_digest: str
    names: list[str]
    target: oci.Descriptor | None = None


def load(store: ImageStore, src: BinaryIO, *, limits: LoadLimits | None = None) -> LoadResult:
    """Load images from a docker-archive, OCI layout / oci-archive tar (plain, gzip, zstd...)."""
    from berth.images.unpack import owner_labels
    from berth.metadata.leases import lease as _lease

    limits = limits or LoadLimits()
    with _lease(store.leases, expires_in=3600.0, labels={"berth.load": "1", **owner_labels()}) as held:
        loader = _Loader(store, limits, held)
        try:
            loader.read_stream(src)
            candidates = _candidates(loader)
            if not candidates:
                raise InvalidArgument("invalid archive: no manifest.json or index.json with images")
            if len(candidates) > limits.max_images:
                raise LimitExceeded(f"archive has more than {limits.max_images} images")
            result = LoadResult()
            # validate every image before recording any
            for c in candidates:
                _validate(loader, c)
            for c in candidates:
                for n in c.names:
                    try:
                        old = store.get(n)
                    except NotFound:
                        continue
                    if old.id != c.config_digest:
                        result.messages.append(f"The image {reference.parse(n).familiar()} already exists, "
                                               f"renaming the old one with ID {old.id} to empty string")
                img = store.add(c.manifest, names=c.names, target=c.target)
                result.images.append(img)
                if c.names:
                    result.messages.extend(f"Loaded image: {reference.parse(n).familiar()}" for n in c.names)
                else:
                    result.messages.append(f"Loaded image ID: {img.id}")
        except BaseException:
            _discard(store, loader.new_blobs, held.id)
            raise
        _discard(store, loader.new_blobs - _referenced(store, candidates), held.id)
    return result


def _referenced(store: ImageStore, candidates: list[_Candidate]) -> set[str]:
    out: set[str] = set()
    for c in candidates:
        out.add(c.manifest.digest)
        if c.target:
            out.add(c.target.digest)
        m = oci.parse_manifest(store.content.read(c.manifest.digest, oci.MAX_MANIFEST_SIZE + 1))
        out.add(m.config.digest)
        out.update(layer.digest for layer in m.layers)
    return out


def _discard(store: ImageStore, blobs: set[str], own_lease: str) -> None:
    """Delete blobs this load added that no image uses and no other live lease holds."""
    used: set[str] = set()
    if blobs:
        for other in store.leases.list():
            if other.id != own_lease:
                used.update(ref for kind, ref in store.leases.lease_resources(other.id) if kind == "content")
        for img in store.all():
            try:
                used.add(img.manifest.digest)
                m = store.read_manifest(img)
                used.add(m.config.digest)
                used.update(layer.digest for layer in m.layers)
            except BerthError:
                continue
    for dg in blobs - used:
        try:
            store.content.delete(dg)
        except (NotFound, OSError):
            pass


def _validate(loader: _Loader, c: _Candidate) -> None:
    content = loader.content
    m = oci.parse_manifest(content.read(c.manifest.digest, oci.MAX_MANIFEST_SIZE + 1), c.manifest.media_type)
    loader.blob_path_digest(m.config.digest, "config")
    cfg = oci.parse_config(content.read(m.config.digest, oci.MAX_CONFIG_SIZE + 1))
    oci.check_manifest_config(m, cfg)
    for i, layer in enumerate(m.layers):
        if layer.media_type in oci.FOREIGN_LAYER_TYPES and not content.exists(layer.digest):
            continue
        loader.blob_path_digest(layer.digest, f"layer {i}")
        if content.info(layer.digest).size != layer.size:
            raise DataCorrupt(f"invalid archive: layer {i} {layer.digest} size does not match its descriptor")
        if oci.LAYER_TYPES.get(layer.media_type) is None and layer.digest != cfg.diff_ids[i]:
            raise DataCorrupt(f"invalid archive: uncompressed layer {i} {layer.digest} does not match "
                              f"diff_id {cfg.diff_ids[i]}")


def _candidates(loader: _Loader) -> list[_Candidate]:
    content = loader.content
    out: list[_Candidate] = []
    by_config: dict[str, _Candidate] = {}
    if "index.json" in loader.meta:
        if len(loader.meta["index.json"]) > oci.MAX_MANIFEST_SIZE:
            raise LimitExceeded("invalid archive: index.json too large")
        if "oci-layout" in loader.meta:
            layout = loader.json_meta("oci-layout")
            if not isinstance(layout, dict) or not isinstance(layout.get("imageLayoutVersion"), str):
                raise InvalidArgument("invalid archive: oci-layout without imageLayoutVersion")
        index = oci.parse_index(loader.meta["index.json"])
        for i, d in enumerate(index.manifests):
            names = _names_from_annotations(d.annotations)
            target = None
            mdesc = d
            loader.blob_path_digest(d.digest, f"index.json entry {i}")
            if d.media_type in oci.INDEX_TYPES:
                nested = oci.parse_index(content.read(d.digest, oci.MAX_MANIFEST_SIZE + 1), d.media_type)
                target = oci.Descriptor(d.media_type, d.digest, d.size)
                # an archive may carry only some platforms: choose among those it has
                nested.manifests = [x for x in nested.manifests if content.exists(x.digest)]
                mdesc = oci.select_manifest(nested)
                loader.blob_path_digest(mdesc.digest, f"index.json entry {i} platform manifest")
            elif d.media_type not in oci.MANIFEST_TYPES:
                continue  # artifacts, attestations
            m = oci.parse_manifest(content.read(mdesc.digest, oci.MAX_MANIFEST_SIZE + 1), mdesc.media_type)
            if content.info(mdesc.digest).size != mdesc.size:
                raise DataCorrupt(f"invalid archive: manifest {mdesc.digest} size does not match index.json")
            mdesc = oci.Descriptor(mdesc.media_type, mdesc.digest, mdesc.size)
            cand = by_config.get(m.config.digest)
            if cand is None:
                cand = _Candidate(mdesc, m.config.digest, [], target)
                by_config[m.config.digest] = cand
                out.append(cand)
            for n in names:
                if n not in cand.names:
                    cand.names.append(n)
    if "manifest.json" in loader.meta:
        entries = loader.json_meta("manifest.json")
        if not isinstance(entries, list):
            raise InvalidArgument("invalid archive: manifest.json must be a list")
        for i, e in enumerate(entries):
            if not isinstance(e, dict):
                raise InvalidArgument(f"invalid archive: manifest.json entry {i} is not an object")
            cfg_digest = loader.resolve(e.get("Config"), f"manifest.json entry {i} Config")
            layers_raw = e.get("Layers")
            if not isinstance(layers_raw, list):
                raise InvalidArgument(f"invalid archive: manifest.json entry {i}: Layers must be a list")
            if len(layers_raw) > oci.MAX_LAYERS:
                raise LimitExceeded(f"invalid archive: manifest.json entry {i} has {len(layers_raw)} layers")
            tags_raw = e.get("RepoTags") or []
            if not isinstance(tags_raw, list) or not all(isinstance(t, str) for t in tags_raw):
                raise InvalidArgument(f"invalid archive: manifest.json entry {i}: RepoTags must be strings")
            tags = [str(reference.parse(t)) for t in tags_raw]
            layer_digests = [loader.resolve(p, f"manifest.json entry {i} layer {j}")
                             for j, p in enumerate(layers_raw)]
            cand = by_config.get(cfg_digest)
            if cand is not None:
                m = oci.parse_manifest(content.read(cand.manifest.digest, oci.MAX_MANIFEST_SIZE + 1))
                if [layer.digest for layer in m.layers] != layer_digests:
                    raise DataCorrupt(f"invalid archive: manifest.json entry {i} and index.json disagree "
                                      "about the layers")
            else:
                layers = [oci.Descriptor(_layer_type_by_magic(content, dg), dg, content.info(dg).size)
                          for dg in layer_digests]
                cfg_desc = oci.Descriptor(oci.OCI_CONFIG, cfg_digest, content.info(cfg_digest).size)
                manifest = oci.Manifest(oci.OCI_MANIFEST, cfg_desc, layers)
                data = manifest.to_bytes()
                mdg = content.write_bytes(data)
                loader.new_blobs.add(mdg)
                loader.lease.add("content", mdg)
                cand = _Candidate(oci.Descriptor(oci.OCI_MANIFEST, mdg, len(data)), cfg_digest, [])
                by_config[cfg_digest] = cand
                out.append(cand)
            for t in tags:
                if t not in cand.names:
                    cand.names.append(t)
    elif "index.json" not in loader.meta and "repositories" in loader.meta:
        raise NotImplementedErr("legacy v1 image archive (no manifest.json) is not supported")
    return out


def _names_from_annotations(ann: dict[str, str]) -> list[str]:
    full = ann.get(oci.ANNOTATION_CONTAINERD_NAME)
    if full:
        ref = _try_parse(full)
        if ref is not None and not ref.digest:
            return [str(ref)]
    name = ann.get(oci.ANNOTATION_REF_NAME, "")
    if name and ("/" in name or ":" in name):
        ref = _try_parse(name)
        if ref is not None and not ref.digest:
            return [str(ref)]
    return []
