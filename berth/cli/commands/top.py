"""berth top: display the running processes of a container."""

from __future__ import annotations

from berth.cli.flags import Flags

FLAGS = Flags()  # ps options after the container are passed through, not parsed as ours
USAGE = "CONTAINER [ps OPTIONS]"
SUMMARY = "Display the running processes of a container"
MIN_ARGS = 1


def run(cli, opts, args) -> int:
    from berth.cli.format import tabwrite
    top = cli.client.containers.top(args[0], " ".join(args[1:]) or None)
    lines = ["\t".join(top.get("Titles") or [])]
    lines += ["\t".join(p) for p in top.get("Processes") or []]
    cli.out.write(tabwrite("\n".join(lines) + "\n", minwidth=20, padding=3))
    return 0
