"""berth container prune: remove all stopped containers."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("--filter",), "filter", list, help='Provide filter values (e.g. "until=<timestamp>")'),
    Flag(("-f", "--force"), "force", bool, help="Do not prompt for confirmation"),
]
USAGE = "[OPTIONS]"
SUMMARY = "Remove all stopped containers"
MAX_ARGS = 0

WARNING = "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] "


def run(cli, opts, args) -> int:
    import sys

    from berth.cli.commands.ps import parse_filters
    from berth.cli.format import human_size
    filters = parse_filters(opts["filter"])
    if not opts["force"]:
        cli.out.write(WARNING)
        cli.out.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            cli.print("Total reclaimed space: 0B")
            return 0
    report = cli.client.containers.prune(filters)
    deleted = report.get("ContainersDeleted") or []
    if deleted:
        cli.print("Deleted Containers:\n" + "".join(f"{i}\n" for i in deleted))
    cli.print(f"Total reclaimed space: {human_size(report.get('SpaceReclaimed') or 0, 4)}")
    return 0
