"""berth.oci."""
