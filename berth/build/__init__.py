"""berth.build."""
