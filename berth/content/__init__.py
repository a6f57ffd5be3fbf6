"""berth.content."""
