"""berth.containers."""
