"""berth.images."""
