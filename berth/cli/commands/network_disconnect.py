"""berth network disconnect: detach a container from a network."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [Flag(("-f", "--force"), "force", bool, help="Force the container to disconnect from a network")]
USAGE = "[OPTIONS] NETWORK CONTAINER"
SUMMARY = "Disconnect a container from a network"
MIN_ARGS = MAX_ARGS = 2


def run(cli, opts, args) -> int:
    from berth.client.resources import Networks
    Networks(cli.client.transport).disconnect(args[0], args[1], opts["force"])
    return 0
