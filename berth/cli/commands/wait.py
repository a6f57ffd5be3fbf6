"""berth wait: block until containers stop, print their exit codes."""

from __future__ import annotations

FLAGS: list = []
USAGE = "CONTAINER [CONTAINER...]"
SUMMARY = "Block until one or more containers stop, then print their exit codes"
MIN_ARGS = 1


def run(cli, opts, args) -> int:
    from berth.cli.commands._multi import for_each
    c = cli.client.containers
    return for_each(cli, args, lambda n: c.wait(n), show=lambda n, r: str(r.get("StatusCode", 0)))
