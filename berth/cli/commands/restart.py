"""berth restart: restart containers."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("-s", "--signal"), "signal", str, help="Signal to send to the container"),
    Flag(("-t", "--time", "--timeout"), "time", int, help="Seconds to wait before killing the container"),
]
USAGE = "[OPTIONS] CONTAINER [CONTAINER...]"
SUMMARY = "Restart one or more containers"
MIN_ARGS = 1


def run(cli, opts, args) -> int:
    from berth.cli.commands._multi import for_each
    c = cli.client.containers
    return for_each(cli, args, lambda n: c.restart(n, t=opts["time"], signal=opts["signal"]))
