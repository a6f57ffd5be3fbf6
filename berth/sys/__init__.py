"""berth.sys."""
