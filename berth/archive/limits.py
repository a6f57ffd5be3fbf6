"""Limits that hold a layer apply to a bounded amount of work, whatever the tar says."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Limits:
    """Bounds on one layer: uncompressed bytes, entries (headers), path depth and lengths."""

    max_bytes: int = 64 << 30
    max_entries: int = 1_000_000
    max_depth: int = 1024
    max_path: int = 4096
    max_name: int = 255
    max_pax: int = 1 << 20     # one PAX extended header (xattrs included)


def ensure_recursion(depth: int) -> None:
    """Let the recursive tree walks (ours and shutil.rmtree) go depth levels deep.

    Python 3.11+ runs Python-to-Python calls without growing the C stack, so a higher limit is safe.
    """
    import sys

    need = 2 * depth + 200
    if sys.getrecursionlimit() < need:
        sys.setrecursionlimit(need)
