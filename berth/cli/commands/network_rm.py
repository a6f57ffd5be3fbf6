"""berth network rm: remove networks (prints each name removed)."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [Flag(("-f", "--force"), "force", bool, help="Do not error if the network does not exist")]
USAGE = "NETWORK [NETWORK...]"
SUMMARY = "Remove one or more networks"
MIN_ARGS = 1


def remove_each(cli, names: list[str], remove, force: bool) -> int:
    """Remove each name, printing it on success and the daemon's error otherwise; ``force``
    skips names that do not exist silently (network rm -f)."""
    from berth.client.transport import ConnectionFailed
    from berth.errors import BerthError, NotFound
    status = 0
    for name in names:
        try:
            remove(name)
        except ConnectionFailed:
            raise
        except BerthError as e:
            if force and isinstance(e, NotFound):
                continue
            cli.error(f"Error response from daemon: {e}")
            status = 1
            continue
        cli.print(name)
    return status


def run(cli, opts, args) -> int:
    from berth.client.resources import Networks
    return remove_each(cli, args, Networks(cli.client.transport).remove, opts["force"])
