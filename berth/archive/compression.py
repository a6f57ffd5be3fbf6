"""Compression detection by magic and the streaming (de)compressors of layers.

gzip goes through ``isal`` (igzip), zstd through ``zstandard``; both are imported on first use.
Decoder failures (truncated or corrupt streams, trailing garbage) become InvalidArgument.
"""

from __future__ import annotations

import io
from typing import BinaryIO

from berth.errors import InvalidArgument

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ\x00"
BZIP2_MAGIC = b"BZh"

MEDIA_TYPES = {
    None: "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


def detect(head: bytes) -> str | None:
    """The compression named by a stream's first bytes: "gzip", "zstd" or None (plain)."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(XZ_MAGIC):
        raise InvalidArgument("layer: xz compression is not supported (use gzip or zstd)")
    if head.startswith(BZIP2_MAGIC) and len(head) >= 4 and head[3:4].isdigit():
        raise InvalidArgument("layer: bzip2 compression is not supported (use gzip or zstd)")
    return None


class _Prefixed(io.RawIOBase):
    """Replays bytes already read from src, then reads on from src."""

    def __init__(self, head: bytes, src: BinaryIO) -> None:
        self._head = head
        self._src = src

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n is None or n < 0:
                data, self._head = self._head + self._src.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            if len(data) < n:
                data += self._src.read(n - len(data)) or b""
            return data
        return self._src.read(n)

    def readinto(self, b) -> int:  # type: ignore[override]
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)


class _Guarded(io.RawIOBase):
    """A decompressing reader whose decoder errors become InvalidArgument."""

    def __init__(self, inner, what: str) -> None:
        self._inner = inner
        self._what = what

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        try:
            return self._inner.read(n)
        except EOFError as e:
            raise InvalidArgument(f"layer: truncated {self._what} stream or trailing garbage") from e
        except InvalidArgument:
            raise
        except Exception as e:  # zlib/isal/zstd errors have no common base but Exception
            if isinstance(e, OSError) and e.errno is not None:
                raise
            raise InvalidArgument(f"layer: corrupt {self._what} stream: {e}") from e

    def readinto(self, b) -> int:  # type: ignore[override]
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            super().close()


def _peek(src: BinaryIO, n: int) -> tuple[bytes, BinaryIO]:
    peek = getattr(src, "peek", None)
    if peek is not None:
        try:
            head = peek(n)[:n]
            if len(head) >= n:
                return head, src
        except (OSError, ValueError):
            pass
    head = b""
    while len(head) < n:
        chunk = src.read(n - len(head))
        if not chunk:
            break
        head += chunk
    return head, _Prefixed(head, src)  # type: ignore[return-value]


def open_decompressed(src: BinaryIO) -> BinaryIO:
    """A reader of src's uncompressed bytes, the compression detected by magic (gzip, zstd, plain)."""
    head, stream = _peek(src, 6)
    kind = detect(head)
    if kind == "gzip":
        from isal import igzip

        return _Guarded(igzip.IGzipFile(fileobj=stream, mode="rb"), "gzip")  # type: ignore[return-value]
    if kind == "zstd":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(stream, read_size=1 << 17,
                                                          read_across_frames=True)
        return _Guarded(reader, "zstd")  # type: ignore[return-value]
    return stream


class Compressor:
    """Streaming compressor: compress(data) -> bytes, flush() -> bytes; None = identity."""

    def __init__(self, compression: str | None, level: int | None = None) -> None:
        if compression not in MEDIA_TYPES:
            raise InvalidArgument(f"unsupported compression: {compression!r}")
        self.compression = compression
        self.media_type = MEDIA_TYPES[compression]
        self._obj = None
        if compression == "gzip":
            from isal import isal_zlib

            # wbits 31 = gzip container; isal writes mtime 0 and no name: deterministic output
            self._obj = isal_zlib.compressobj(1 if level is None else level, isal_zlib.DEFLATED, 31)
        elif compression == "zstd":
            import zstandard

            self._obj = zstandard.ZstdCompressor(level=3 if level is None else level).compressobj()

    def compress(self, data: bytes) -> bytes:
        return data if self._obj is None else self._obj.compress(data)

    def flush(self) -> bytes:
        return b"" if self._obj is None else self._obj.flush()
