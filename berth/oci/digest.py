"""Content digests: ``sha256:<64 hex>``, validated before any use as a path."""

from __future__ import annotations

import hashlib
import re

from berth.errors import InvalidArgument

_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


def sha256(data: bytes) -> str:
    """The digest string of data."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def validate(digest: str) -> str:
    """Return digest if it is a well-formed sha256 digest, else raise InvalidArgument."""
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise InvalidArgument(f"invalid digest: {digest!r}")
    return digest


def is_digest(value: str) -> bool:
    return isinstance(value, str) and bool(_DIGEST_RE.match(value))


def hex_of(digest: str) -> str:
    """The hex part of a validated digest (safe to use as a file name)."""
    return validate(digest)[7:]


class Hasher:
    """Incremental sha256 that reports a digest string."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes) -> None:
        self._h.update(data)
        self.size += len(data)

    def digest(self) -> str:
        return "sha256:" + self._h.hexdigest()
