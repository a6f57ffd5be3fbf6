"""berth rename: rename a container."""

from __future__ import annotations

FLAGS: list = []
USAGE = "CONTAINER NEW_NAME"
SUMMARY = "Rename a container"
MIN_ARGS = MAX_ARGS = 2


def run(cli, opts, args) -> int:
    from berth.cli.context import CliError
    from berth.client.transport import ConnectionFailed
    from berth.errors import BerthError
    old, new = args[0].strip(), args[1].strip()
    if not old or not new:
        raise CliError("Error: Neither old nor new names may be empty", 1)
    try:
        cli.client.containers.rename(old, new)
    except ConnectionFailed:
        raise
    except BerthError as e:
        raise CliError(f"Error response from daemon: {e}\nError: failed to rename container named {old}",
                       1) from None
    return 0
