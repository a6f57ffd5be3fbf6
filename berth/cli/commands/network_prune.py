"""berth network prune: remove custom networks no container uses."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("--filter",), "filter", list, help='Provide filter values (e.g. "until=<timestamp>")'),
    Flag(("-f", "--force"), "force", bool, help="Do not prompt for confirmation"),
]
USAGE = "[OPTIONS]"
SUMMARY = "Remove all unused networks"
MAX_ARGS = 0

WARNING = ("WARNING! This will remove all custom networks not used by at least one container.\n"
           "Are you sure you want to continue?")


def prune(cli, all: bool, filters: dict) -> tuple[int, str]:
    from berth.cli.commands.system_prune import deleted_list
    from berth.client.resources import Networks
    rep = Networks(cli.client.transport).prune(filters)
    return 0, deleted_list("Deleted Networks:", rep.get("NetworksDeleted"))


def run(cli, opts, args) -> int:
    from berth.cli.commands.ps import parse_filters
    from berth.cli.commands.system_prune import confirm, report
    filters = parse_filters(opts["filter"])
    if not opts["force"] and not confirm(cli, WARNING):
        return 0
    _, output = prune(cli, False, filters)
    report(cli, output, None)
    return 0
