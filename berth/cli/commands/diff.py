"""berth diff: changes to files or directories on a container's filesystem (A added, C changed, D deleted)."""

from __future__ import annotations

FLAGS: list = []
USAGE = "CONTAINER"
SUMMARY = "Inspect changes to files or directories on a container's filesystem"
MIN_ARGS = MAX_ARGS = 1

KINDS = {0: "C", 1: "A", 2: "D"}


def run(cli, opts, args) -> int:
    for ch in cli.client.containers.changes(args[0]):
        cli.print(f"{KINDS.get(ch.get('Kind'), '?')} {ch.get('Path', '')}")
    return 0
