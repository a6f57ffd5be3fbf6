"""Data files: Docker's default seccomp profile (seccomp_default.json)."""
