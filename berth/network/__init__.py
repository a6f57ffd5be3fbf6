"""berth.network."""
