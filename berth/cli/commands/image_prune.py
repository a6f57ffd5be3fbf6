"""berth image prune: remove dangling (``-a``: all unused) images."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("-a", "--all"), "all", bool, help="Remove all unused images, not just dangling ones"),
    Flag(("--filter",), "filter", list, help='Provide filter values (e.g. "until=<timestamp>")'),
    Flag(("-f", "--force"), "force", bool, help="Do not prompt for confirmation"),
]
USAGE = "[OPTIONS]"
SUMMARY = "Remove unused images"
MAX_ARGS = 0

WARNING = "WARNING! This will remove all dangling images.\nAre you sure you want to continue?"
ALL_WARNING = ("WARNING! This will remove all images without at least one container associated to them.\n"
               "Are you sure you want to continue?")


def prune(cli, all: bool, filters: dict) -> tuple[int, str]:
    """(space reclaimed, "Deleted Images:" text) as docker's image.RunPrune."""
    from berth.client.resources import ImageExtras
    filters = dict(filters)
    filters["dangling"] = ["false" if all else "true"]
    rep = ImageExtras(cli.client.transport).prune(filters)
    items = rep.get("ImagesDeleted") or []
    if not items:
        return 0, ""
    lines = ["Deleted Images:"]
    for it in items:
        lines.append(f"untagged: {it['Untagged']}" if it.get("Untagged") else f"deleted: {it.get('Deleted')}")
    return rep.get("SpaceReclaimed") or 0, "\n".join(lines) + "\n"


def run(cli, opts, args) -> int:
    from berth.cli.commands.ps import parse_filters
    from berth.cli.commands.system_prune import confirm, report
    filters = parse_filters(opts["filter"])
    if not opts["force"] and not confirm(cli, ALL_WARNING if opts["all"] else WARNING):
        return 0
    space, output = prune(cli, opts["all"], filters)
    report(cli, output, space)
    return 0
