"""Volume names: validation (Docker's local-driver rule) and anonymous names."""

from __future__ import annotations

import re
import secrets

from berth.errors import InvalidArgument

ANONYMOUS_LABEL = "com.docker.volume.anonymous"
NAME_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_ANON_RE = re.compile(r"^[0-9a-f]{64}$")


def validate_name(name: str) -> str:
    """Return name if it is a valid local volume name, else raise InvalidArgument (Docker's words)."""
    if len(name) == 1:
        raise InvalidArgument(
            "volume name is too short, names should be at least two alphanumeric characters")
    if not _NAME_RE.match(name) or "\n" in name:
        raise InvalidArgument(
            f'"{name}" includes invalid characters for a local volume name, only "{NAME_CHARS}" '
            "are allowed. If you intended to pass a host directory, use absolute path")
    return name


def new_anonymous_name() -> str:
    """A fresh 64-hex name, as Docker gives anonymous volumes."""
    return secrets.token_hex(32)


def looks_anonymous(name: str) -> bool:
    """True for names of the anonymous shape (64 lowercase hex digits)."""
    return bool(_ANON_RE.match(name))
