"""berth: a container platform with the shape of Docker."""

__version__ = "0.1.0"
