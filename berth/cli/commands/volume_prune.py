"""berth volume prune: remove unused anonymous (``-a``: all unused) local volumes."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("-a", "--all"), "all", bool, help="Remove all unused volumes, not just anonymous ones"),
    Flag(("--filter",), "filter", list, help='Provide filter values (e.g. "label=<label>")'),
    Flag(("-f", "--force"), "force", bool, help="Do not prompt for confirmation"),
]
USAGE = "[OPTIONS]"
SUMMARY = "Remove unused local volumes"
MAX_ARGS = 0

WARNING = ("WARNING! This will remove anonymous local volumes not used by at least one container.\n"
           "Are you sure you want to continue?")
ALL_WARNING = ("WARNING! This will remove all local volumes not used by at least one container.\n"
               "Are you sure you want to continue?")


def prune(cli, all: bool, filters: dict) -> tuple[int, str]:
    from berth.cli.commands.system_prune import deleted_list
    from berth.client.resources import Volumes
    filters = dict(filters)
    if all:
        filters["all"] = ["true"]
    rep = Volumes(cli.client.transport).prune(filters)
    items = rep.get("VolumesDeleted")
    return (rep.get("SpaceReclaimed") or 0) if items else 0, deleted_list("Deleted Volumes:", items)


def run(cli, opts, args) -> int:
    from berth.cli.commands.ps import parse_filters
    from berth.cli.commands.system_prune import confirm, report
    from berth.cli.context import CliError
    filters = parse_filters(opts["filter"])
    if opts["all"] and "all" in filters:
        raise CliError('conflicting options: cannot specify both --all and --filter all=1')
    if not opts["force"] and not confirm(cli, ALL_WARNING if opts["all"] else WARNING):
        return 0
    space, output = prune(cli, opts["all"], filters)
    report(cli, output, space)
    return 0
