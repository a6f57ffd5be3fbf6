"""Writing image blobs: JSON documents, layers from streams, and whole one-config images."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO

from berth.oci import image as oci

if TYPE_CHECKING:
    from berth.content import ContentStore

_CHUNK = 1 << 20


@dataclass
class Layer:
    """A layer blob in the content store with its uncompressed digest."""

    descriptor: oci.Descriptor
    diff_id: str
    uncompressed_size: int = 0


def put_json(content: ContentStore, obj: dict, media_type: str, *, lease: Any = None) -> oci.Descriptor:
    """Store obj as canonical JSON; return its descriptor (held by lease, if given, against GC)."""
    data = oci.canonical_json(obj)
    dg = content.write_bytes(data)
    if lease is not None:
        lease.add("content", dg)
    return oci.Descriptor(media_type, dg, len(data))


def now_rfc3339(ts: float | None = None) -> str:
    ts = time.time() if ts is None else ts
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Tee:
    """A write-only file object that feeds a blob writer (what write_diff writes to)."""

    def __init__(self, writer) -> None:
        self.writer = writer

    def write(self, data) -> int:
        return self.writer.write(data)

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True


def _check_tar_header(block: bytes) -> None:
    import tarfile

    from berth.errors import InvalidArgument

    if len(block) < 512:
        raise InvalidArgument("not a tar archive: input is empty or too short")
    if block == b"\0" * 512:
        return  # an empty archive
    try:
        tarfile.TarInfo.frombuf(block[:512], "utf-8", "surrogateescape")
    except tarfile.HeaderError as e:
        raise InvalidArgument(f"not a tar archive: {e}") from None


def put_compressed_layer(content: ContentStore, src: BinaryIO, *, compression: str = "gzip",
                         check_tar: bool = False, lease: Any = None) -> Layer:
    """Read a tar stream (plain, gzip or zstd: detected), store it recompressed; hash both forms.

    check_tar: refuse input whose first block is not a tar header (InvalidArgument).
    """
    from berth.archive import open_decompressed
    from berth.oci.digest import Hasher

    diff = Hasher()
    first = check_tar
    with content.writer(f"layer-{secrets.token_hex(8)}") as w:
        if compression == "gzip":
            from isal import igzip

            comp = igzip.GzipFile(fileobj=_Tee(w), mode="wb", compresslevel=1, mtime=0)
        elif compression == "zstd":
            import zstandard

            comp = zstandard.ZstdCompressor(level=3).stream_writer(_Tee(w), closefd=False)
        else:
            comp = _Tee(w)
        plain = open_decompressed(src)
        while True:
            chunk = plain.read(_CHUNK)
            if first:
                while len(chunk) < 512:
                    more = plain.read(512 - len(chunk))
                    if not more:
                        break
                    chunk += more
                _check_tar_header(chunk)
                first = False
            if not chunk:
                break
            diff.update(chunk)
            comp.write(chunk)
        if compression in ("gzip", "zstd"):
            comp.close()
        size = w.offset
        dg = w.commit()
    if lease is not None:
        lease.add("content", dg)
    mt = oci.layer_media_type(compression if compression in ("gzip", "zstd") else None)
    return Layer(oci.Descriptor(mt, dg, size), diff.digest(), diff.size)


def put_image(content: ContentStore, layers: Sequence[Layer], config: dict, *,
              annotations: dict | None = None, lease: Any = None) -> oci.Descriptor:
    """Store a config (its rootfs.diff_ids set from layers) and an OCI manifest; return the manifest."""
    config = dict(config)
    config["rootfs"] = {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]}
    cdesc = put_json(content, config, oci.OCI_CONFIG, lease=lease)
    manifest = oci.Manifest(media_type=oci.OCI_MANIFEST, config=cdesc,
                            layers=[layer.descriptor for layer in layers], annotations=annotations or {})
    return put_json(content, manifest.to_dict(), oci.OCI_MANIFEST, lease=lease)
