"""berth rm: remove containers."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("-f", "--force"), "force", bool, help="Force the removal of a running container (uses SIGKILL)"),
    Flag(("-l", "--link"), "link", bool, help="Remove the specified link"),
    Flag(("-v", "--volumes"), "volumes", bool, help="Remove anonymous volumes associated with the container"),
]
USAGE = "[OPTIONS] CONTAINER [CONTAINER...]"
SUMMARY = "Remove one or more containers"
MIN_ARGS = 1


def run(cli, opts, args) -> int:
    from berth.cli.commands._multi import for_each
    c = cli.client.containers
    return for_each(cli, args, lambda n: c.remove(n, force=opts["force"], volumes=opts["volumes"]),
                    ignore_not_found=opts["force"])
