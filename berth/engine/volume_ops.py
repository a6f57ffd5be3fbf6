"""Engine operations for named and anonymous volumes (the /volumes API)."""

from __future__ import annotations


class VolumeOps:
    """Mixin of :class:`berth.engine.engine.Engine`: volume create/list/inspect/remove/prune."""
