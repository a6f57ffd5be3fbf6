"""berth.volumes."""
