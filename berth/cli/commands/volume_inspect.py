"""berth volume inspect: JSON of volumes."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [Flag(("-f", "--format"), "format", str, help="Format output using a custom template")]
USAGE = "[OPTIONS] VOLUME [VOLUME...]"
SUMMARY = "Display detailed information on one or more volumes"
MIN_ARGS = 1


def run(cli, opts, args) -> int:
    from berth.cli.commands.network_inspect import inspect_all
    from berth.client.resources import Volumes
    return inspect_all(cli, args, Volumes(cli.client.transport).inspect, opts["format"])
