"""The uncompressed tar byte stream of an apply: counted, hashed (diffID), bounded by max_bytes.

A reader thread decompresses and hashes the next chunks while the applier writes files (zlib,
zstd and sha256 release the GIL), so the three costs overlap on two cores.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from typing import BinaryIO

from berth.errors import InvalidArgument, LimitExceeded

CHUNK = 1 << 20
_EOF = b""


class TarStream:
    """Sequential reads of a decompressed layer, with hashing and the byte limit enforced."""

    def __init__(self, raw: BinaryIO, max_bytes: int, *, threaded: bool = True) -> None:
        self._raw = raw
        self._max = max_bytes
        self._hash = hashlib.sha256()
        self.total = 0          # bytes produced by the decompressor so far
        self.consumed = 0       # bytes handed to the consumer so far
        self._buf = memoryview(b"")
        self._pos = 0
        self._eof = False
        self._q: queue.Queue | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if threaded:
            self._q = queue.Queue(maxsize=4)
            self._thread = threading.Thread(target=self._produce, name="layer-reader", daemon=True)
            self._thread.start()

    # producer side -------------------------------------------------------------------------------
    def _next_raw(self) -> bytes:
        data = self._raw.read(CHUNK)
        if not data:
            return _EOF
        self.total += len(data)
        if self.total > self._max:
            raise LimitExceeded(f"layer: uncompressed size exceeds the limit of {self._max} bytes")
        self._hash.update(data)
        return data

    def _produce(self) -> None:
        assert self._q is not None
        while not self._stop.is_set():
            try:
                item: bytes | BaseException = self._next_raw()
            except BaseException as e:  # handed to the consumer, which raises it
                item = e
            while not self._stop.is_set():
                try:
                    self._q.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not isinstance(item, bytes) or not item:
                return

    # consumer side -------------------------------------------------------------------------------
    def _fill(self) -> bool:
        if self._eof:
            return False
        if self._q is None:
            data = self._next_raw()
        else:
            item = self._q.get()
            if isinstance(item, BaseException):
                self._eof = True
                raise item
            data = item
        if not data:
            self._eof = True
            return False
        self._buf = memoryview(data)
        self._pos = 0
        return True

    def read(self, n: int) -> bytes:
        """Up to n bytes (fewer only at end of stream)."""
        avail = len(self._buf) - self._pos
        if avail >= n:
            out = self._buf[self._pos:self._pos + n].tobytes()
            self._pos += n
            self.consumed += n
            return out
        parts = [self._buf[self._pos:].tobytes()]
        got = avail
        self._pos = len(self._buf)
        while got < n and self._fill():
            take = min(n - got, len(self._buf))
            parts.append(self._buf[:take].tobytes())
            self._pos = take
            got += take
        self.consumed += got
        return b"".join(parts)

    def read_exact(self, n: int, what: str) -> bytes:
        data = self.read(n)
        if len(data) != n:
            raise InvalidArgument(f"layer: truncated archive in {what}")
        return data

    def copy_to_fd(self, fd: int, n: int, what: str | bytes) -> None:
        """Write the next n bytes of the stream to fd."""
        while n:
            avail = len(self._buf) - self._pos
            if not avail:
                if not self._fill():
                    if isinstance(what, bytes):
                        what = what.decode("utf-8", "backslashreplace")
                    raise InvalidArgument(f"layer: truncated archive in the data of {what!r}")
                continue
            take = min(avail, n)
            view = self._buf[self._pos:self._pos + take]
            while view:
                w = os.write(fd, view)
                view = view[w:]
            self._pos += take
            self.consumed += take
            n -= take

    def skip(self, n: int, what: str) -> None:
        while n:
            avail = len(self._buf) - self._pos
            if not avail:
                if not self._fill():
                    raise InvalidArgument(f"layer: truncated archive in the data of {what}")
                continue
            take = min(avail, n)
            self._pos += take
            self.consumed += take
            n -= take

    def drain_zeros(self) -> None:
        """Consume the rest of the stream, which may only hold zero padding."""
        while True:
            rest = self._buf[self._pos:]
            if rest and rest.tobytes().count(0) != len(rest):
                raise InvalidArgument("layer: trailing data after the end-of-archive marker")
            self.consumed += len(rest)
            self._pos = len(self._buf)
            if not self._fill():
                return

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                try:
                    assert self._q is not None
                    self._q.get(timeout=0.05)
                except queue.Empty:
                    pass
            self._thread.join()
