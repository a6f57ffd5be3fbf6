"""berth kill: send a signal (default KILL) to running containers."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [Flag(("-s", "--signal"), "signal", str, help="Signal to send to the container")]
USAGE = "[OPTIONS] CONTAINER [CONTAINER...]"
SUMMARY = "Kill one or more running containers"
MIN_ARGS = 1


def run(cli, opts, args) -> int:
    from berth.cli.commands._multi import for_each
    c = cli.client.containers
    return for_each(cli, args, lambda n: c.kill(n, signal=opts["signal"]))
