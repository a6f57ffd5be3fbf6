"""Metadata: the SQLite database that is the truth for records."""
