"""berth volume rm: remove volumes (prints each name removed)."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [Flag(("-f", "--force"), "force", bool, help="Force the removal of one or more volumes")]
USAGE = "[OPTIONS] VOLUME [VOLUME...]"
SUMMARY = "Remove one or more volumes. You cannot remove a volume that is in use by a container."
MIN_ARGS = 1


def run(cli, opts, args) -> int:
    from berth.cli.commands.network_rm import remove_each
    from berth.client.resources import Volumes
    vols = Volumes(cli.client.transport)
    return remove_each(cli, args, lambda n: vols.remove(n, opts["force"]), False)
