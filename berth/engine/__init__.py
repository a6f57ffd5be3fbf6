"""berth.engine."""
