"""Engine operations for image builds (POST /build), build-cache prune, auth and system df."""

from __future__ import annotations


class BuildOps:
    """Mixin of :class:`berth.engine.engine.Engine`: the builder and disk-usage surface."""
