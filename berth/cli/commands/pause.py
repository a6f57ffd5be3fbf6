"""berth pause: suspend all processes within containers (cgroup freezer)."""

from __future__ import annotations

FLAGS: list = []
USAGE = "CONTAINER [CONTAINER...]"
SUMMARY = "Pause all processes within one or more containers"
MIN_ARGS = 1


def run(cli, opts, args) -> int:
    from berth.cli.commands._multi import for_each
    c = cli.client.containers
    return for_each(cli, args, lambda n: c.pause(n))
