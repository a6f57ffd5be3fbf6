"""berth.archive."""
