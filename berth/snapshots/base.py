"""The Snapshotter protocol and the records it hands out.

A snapshot is a filesystem state: **active** (a writable key, made by ``prepare``), **view** (a
read-only key, made by ``view``) or **committed** (a read-only name, made by ``commit``). Keys
and names share one namespace per driver; ``""`` means "no parent".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from berth.errors import InvalidArgument
from berth.mount import Mount

ACTIVE = "active"
COMMITTED = "committed"
VIEW = "view"
KINDS = (ACTIVE, COMMITTED, VIEW)

MAX_KEY = 1024
MAX_LABELS_BYTES = 64 << 10


@dataclass
class SnapshotInfo:
    """What a snapshot record says about it."""

    key: str
    parent: str
    kind: str  # "active" | "committed" | "view"
    created: float
    updated: float
    labels: dict = field(default_factory=dict)


@dataclass
class Usage:
    """Apparent bytes of regular files and symlinks (hardlinks once) and distinct inodes."""

    size: int
    inodes: int


@runtime_checkable
class Snapshotter(Protocol):
    """What every storage driver (overlay, btrfs, vfs) provides."""

    name: str
    whiteout_mode: str  # "overlay" (0/0 char devices + trusted.overlay.opaque) or "delete"

    def prepare(self, key: str, parent: str = "", labels: dict | None = None) -> list[Mount]: ...
    def view(self, key: str, parent: str, labels: dict | None = None) -> list[Mount]: ...
    def mounts(self, key: str) -> list[Mount]: ...
    def commit(self, name: str, key: str, labels: dict | None = None) -> None: ...
    def remove(self, key: str) -> None: ...
    def stat(self, key: str) -> SnapshotInfo: ...
    def walk(self) -> Iterator[SnapshotInfo]: ...
    def usage(self, key: str) -> Usage: ...
    def cleanup(self) -> list[str]: ...
    def upper_dir(self, key: str) -> str: ...
    def lower_dirs(self, key: str) -> list[str]: ...


def validate_key(key: object, what: str = "key") -> str:
    """A snapshot key or name: a non-empty string without NUL, at most MAX_KEY characters."""
    if not isinstance(key, str) or not key:
        raise InvalidArgument(f"snapshot {what} must be a non-empty string")
    if len(key) > MAX_KEY or "\x00" in key:
        raise InvalidArgument(f"invalid snapshot {what}: {key[:64]!r}")
    return key


def validate_labels(labels: object) -> dict[str, str]:
    """Labels are a str -> str mapping of bounded total size; None means no labels."""
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise InvalidArgument("snapshot labels must be a mapping of strings")
    total = 0
    for k, v in labels.items():
        if not isinstance(k, str) or not isinstance(v, str) or not k:
            raise InvalidArgument(f"invalid snapshot label {k!r}: keys and values must be strings")
        total += len(k) + len(v)
    if total > MAX_LABELS_BYTES:
        raise InvalidArgument(f"snapshot labels too large ({total} bytes > {MAX_LABELS_BYTES})")
    return dict(labels)
