"""BlobWriter: bytes go to a locked ingest directory, are fsynced, verified, then renamed into place."""

from __future__ import annotations

import os
from typing import BinaryIO

from berth.content import ingest
from berth.errors import DataCorrupt, InvalidArgument
from berth.oci.digest import Hasher, hex_of, validate

MAX_REF = 1024
_CHUNK = 1 << 20


class BlobWriter:
    """Writes one blob. Use as a context manager; ``commit()`` returns the digest.

    While the writer lives it holds the lock of its ref, so a second writer of the same ref waits
    (then usually finds the blob already committed). When ``expected`` names a blob the store
    already has, :attr:`exists` is true and written bytes are only hashed, not stored; ``commit``
    still verifies them. Leaving the ``with`` block without committing (or with an exception)
    aborts: the ingest directory is removed and nothing becomes visible.
    """

    def __init__(self, blob_dir: str, ingest_root: str, ref: str, expected: str | None = None,
                 size: int | None = None, *, lock_timeout: float | None = 600.0) -> None:
        if not isinstance(ref, str) or not ref or len(ref) > MAX_REF or "\0" in ref:
            raise InvalidArgument(f"invalid ingest ref: {ref!r}")
        if expected is not None:
            validate(expected)
        if size is not None and (not isinstance(size, int) or size < 0):
            raise InvalidArgument(f"invalid blob size: {size!r}")
        self.ref = ref
        self.expected = expected
        self.expected_size = size
        self._blob_dir = blob_dir
        self._dir = os.path.join(ingest_root, ingest.ingest_name(ref))
        self._hasher = Hasher()
        self._file: BinaryIO | None = None
        self._done = False
        self._lock_fd = ingest.acquire(self._dir, lock_timeout)
        try:
            self.exists = expected is not None and os.path.isfile(
                os.path.join(blob_dir, hex_of(expected)))
            if not self.exists:
                with open(os.path.join(self._dir, "ref"), "w", encoding="utf-8",
                          errors="surrogateescape") as f:
                    f.write(ref)
                fd = os.open(os.path.join(self._dir, "data"),
                             os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
                self._file = os.fdopen(fd, "wb", buffering=_CHUNK)
        except BaseException:
            self._done = True
            ingest.release(self._dir, self._lock_fd, remove=True)
            raise

    # -- state -----------------------------------------------------------------------------
    @property
    def offset(self) -> int:
        """Bytes written so far."""
        return self._hasher.size

    @property
    def digest(self) -> str:
        """Digest of the bytes written so far."""
        return self._hasher.digest()

    def _check_open(self) -> None:
        if self._done:
            raise InvalidArgument(f"blob writer {self.ref!r} is already closed")

    # -- writing ---------------------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append data; raises DataCorrupt (and aborts) once more than the expected size arrives."""
        self._check_open()
        n = len(data)
        if self.expected_size is not None and self._hasher.size + n > self.expected_size:
            self.abort()
            raise DataCorrupt(f"blob {self.ref!r}: more than the expected {self.expected_size} bytes")
        try:
            self._hasher.update(data)
            if self._file is not None:
                self._file.write(data)
        except BaseException:
            self.abort()
            raise
        return n

    def copy_from(self, src: BinaryIO, chunk: int = _CHUNK) -> int:
        """Write everything src yields until EOF; return the byte count."""
        total = 0
        buf = bytearray(chunk)
        view = memoryview(buf)
        readinto = getattr(src, "readinto", None)
        while True:
            if readinto is not None:
                n = readinto(buf)
                if not n:
                    break
                self.write(view[:n])
            else:
                data = src.read(chunk)
                if not data:
                    break
                n = len(data)
                self.write(data)
            total += n
        return total

    def commit(self) -> str:
        """Verify size and digest, fsync, rename into place, fsync the directory; return the digest.

        DataCorrupt (and nothing visible) on a mismatch; a no-op if the blob already exists.
        """
        self._check_open()
        try:
            digest = self._hasher.digest()
            size = self._hasher.size
            if self.expected_size is not None and size != self.expected_size:
                raise DataCorrupt(f"blob {self.ref!r}: got {size} bytes, expected {self.expected_size}")
            if self.expected is not None and digest != self.expected:
                raise DataCorrupt(f"blob {self.ref!r}: digest {digest} does not match {self.expected}")
            final = os.path.join(self._blob_dir, hex_of(digest))
            f, self._file = self._file, None
            if f is not None:
                try:
                    f.flush()
                    os.fsync(f.fileno())
                    if not os.path.exists(final):
                        os.fchmod(f.fileno(), 0o444)
                        # Same bytes if another writer wins the race: replacing is harmless.
                        os.rename(os.path.join(self._dir, "data"), final)
                        ingest.fsync_dir(self._blob_dir)
                finally:
                    f.close()
        except BaseException:
            self.abort()
            raise
        self._done = True
        ingest.release(self._dir, self._lock_fd, remove=True)
        return digest

    def abort(self) -> None:
        """Drop everything written; idempotent."""
        if self._done:
            return
        self._done = True
        f, self._file = self._file, None
        try:
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        finally:
            ingest.release(self._dir, self._lock_fd, remove=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()

    def __del__(self) -> None:
        if not getattr(self, "_done", True):
            try:
                self.abort()
            except Exception:
                pass
