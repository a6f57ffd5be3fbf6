"""Layer apply (tar -> directory, fd-relative and safe against hostile tars) and layer diff
(directory -> deterministic tar), with the whiteout forms of each storage driver."""

from berth.archive.apply import ApplyResult, apply_layer
from berth.archive.compression import open_decompressed
from berth.archive.limits import Limits

__all__ = ["ApplyResult", "DiffResult", "Limits", "apply_layer", "open_decompressed", "write_diff",
           "write_tree"]


def __getattr__(name: str):
    if name in ("DiffResult", "write_diff", "write_tree"):
        from berth.archive import diff

        return getattr(diff, name)
    raise AttributeError(name)
