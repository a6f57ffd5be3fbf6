"""berth.runtime.cgroups."""
