"""ContentStore: blobs named by digest under ``root/blobs/sha256/<hex>``.

Writes never touch ``blobs/`` until verified: see :class:`berth.content.writer.BlobWriter`.
Every digest passes :func:`berth.oci.digest.validate` before it becomes part of a path.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from berth.content import ingest
from berth.content.writer import BlobWriter
from berth.errors import DataCorrupt, LimitExceeded, NotFound
from berth.oci.digest import hex_of, sha256, validate

log = logging.getLogger("berth.content")

_HEX_RE = re.compile(r"^[a-f0-9]{64}$")
_CHUNK = 1 << 20


@dataclass
class BlobInfo:
    digest: str
    size: int


class ContentStore:
    """A content-addressed blob store rooted at root (created 0700 if missing)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.blob_dir = os.path.join(self.root, "blobs", "sha256")
        self.ingest_dir = os.path.join(self.root, "ingest")
        self.quarantine_dir = os.path.join(self.root, "quarantine")
        for d in (self.root, os.path.dirname(self.blob_dir), self.blob_dir, self.ingest_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)

    # -- reading ---------------------------------------------------------------------------
    def path(self, digest: str) -> str:
        """The file of a blob (InvalidArgument for a malformed digest; the file may not exist)."""
        return os.path.join(self.blob_dir, hex_of(digest))

    def info(self, digest: str) -> BlobInfo:
        """Size of a blob; NotFound if the store lacks it."""
        try:
            st = os.lstat(self.path(digest))
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None
        if not stat.S_ISREG(st.st_mode):
            raise NotFound(f"blob {digest} not found")
        return BlobInfo(digest, st.st_size)

    def exists(self, digest: str) -> bool:
        try:
            self.info(digest)
        except NotFound:
            return False
        return True

    def open(self, digest: str) -> BinaryIO:
        """Open a blob for reading (binary, buffered); NotFound if missing."""
        path = self.path(digest)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise NotFound(f"blob {digest} not found") from None
            raise
        return os.fdopen(fd, "rb")

    def read(self, digest: str, max_size: int = 64 << 20) -> bytes:
        """A whole blob in memory; LimitExceeded if it is larger than max_size."""
        with self.open(digest) as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_size:
                raise LimitExceeded(f"blob {digest} is {size} bytes, more than the limit {max_size}")
            data = f.read(max_size + 1)
        if len(data) > max_size:
            raise LimitExceeded(f"blob {digest} is more than the limit {max_size} bytes")
        return data

    def walk(self) -> Iterator[BlobInfo]:
        """Every committed blob (in directory order)."""
        with os.scandir(self.blob_dir) as it:
            for entry in it:
                if not _HEX_RE.match(entry.name):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    yield BlobInfo("sha256:" + entry.name, st.st_size)

    # -- writing ---------------------------------------------------------------------------
    def writer(self, ref: str, expected: str | None = None, size: int | None = None, *,
               lock_timeout: float | None = 600.0) -> BlobWriter:
        """A writer for one blob; writers of the same ref run one after the other."""
        return BlobWriter(self.blob_dir, self.ingest_dir, ref, expected, size, lock_timeout=lock_timeout)

    def write_bytes(self, data: bytes, expected: str | None = None) -> str:
        """Store data; DataCorrupt if expected is given and does not match."""
        digest = sha256(data)
        if expected is not None and validate(expected) != digest:
            raise DataCorrupt(f"data has digest {digest}, expected {expected}")
        if self.exists(digest):
            return digest
        with self.writer("bytes-" + digest, digest, len(data)) as w:
            w.write(data)
            return w.commit()

    def write_from(self, src: BinaryIO, ref: str, expected: str | None = None,
                   size: int | None = None) -> str:
        """Store everything src yields until EOF; return the digest."""
        with self.writer(ref, expected, size) as w:
            w.copy_from(src)
            return w.commit()

    def delete(self, digest: str) -> None:
        """Remove a blob; NotFound if missing."""
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    # -- reconciling -----------------------------------------------------------------------
    def cleanup_ingest(self) -> int:
        """Remove ingests whose writer is gone (unlocked); safe while other writers run."""
        n = ingest.remove_stale(self.ingest_dir)
        if n:
            log.info("removed %d stale ingest(s) from %s", n, self.ingest_dir)
        return n

    def verify(self, digest: str) -> None:
        """Re-hash a blob; a blob whose bytes do not match is moved to quarantine/ and DataCorrupt
        is raised naming where it went. NotFound if missing."""
        h = hashlib.sha256()
        with self.open(digest) as f:
            buf = bytearray(_CHUNK)
            view = memoryview(buf)
            while n := f.readinto(buf):
                h.update(view[:n])
        actual = "sha256:" + h.hexdigest()
        if actual == digest:
            return
        dest = self._quarantine(digest)
        log.error("blob %s has digest %s: quarantined at %s", digest, actual, dest)
        raise DataCorrupt(f"blob {digest} has digest {actual}; quarantined at {dest}")

    def verify_all(self) -> list[str]:
        """Verify every blob; return the digests that were quarantined."""
        bad = []
        for blob in list(self.walk()):
            try:
                self.verify(blob.digest)
            except NotFound:
                continue
            except DataCorrupt:
                bad.append(blob.digest)
        return bad

    def _quarantine(self, digest: str) -> str:
        os.makedirs(self.quarantine_dir, mode=0o700, exist_ok=True)
        dest = os.path.join(self.quarantine_dir, f"{hex_of(digest)}.{time.time_ns()}")
        os.rename(self.path(digest), dest)
        ingest.fsync_dir(self.blob_dir)
        return dest

    def __repr__(self) -> str:
        return f"ContentStore({self.root!r})"
