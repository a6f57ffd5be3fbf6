"""berth.client."""
