"""Container status values and the transitions allowed between them (Docker's state machine)."""

from __future__ import annotations

from berth.errors import Conflict


class Status:
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    REMOVING = "removing"
    EXITED = "exited"
    DEAD = "dead"

    ALL = (CREATED, RUNNING, PAUSED, RESTARTING, REMOVING, EXITED, DEAD)


# from -> allowed targets
TRANSITIONS: dict[str, frozenset[str]] = {
    Status.CREATED: frozenset({Status.RUNNING, Status.EXITED, Status.REMOVING, Status.DEAD}),
    Status.RUNNING: frozenset({Status.PAUSED, Status.EXITED, Status.RESTARTING, Status.DEAD}),
    Status.PAUSED: frozenset({Status.RUNNING, Status.EXITED, Status.DEAD}),
    Status.RESTARTING: frozenset({Status.RUNNING, Status.EXITED, Status.REMOVING, Status.DEAD}),
    Status.EXITED: frozenset({Status.RUNNING, Status.RESTARTING, Status.REMOVING, Status.DEAD}),
    Status.REMOVING: frozenset({Status.DEAD, Status.EXITED}),
    Status.DEAD: frozenset({Status.REMOVING}),
}


def check_transition(current: str, target: str, cid: str = "") -> None:
    """Raise Conflict if a container in `current` cannot move to `target`."""
    if current == target:
        return
    if target not in TRANSITIONS.get(current, frozenset()):
        raise Conflict(f"container {cid} cannot go from {current} to {target}".replace("  ", " "))


def exit_code_for_signal(sig: int) -> int:
    """Shell convention used by Docker: a process killed by signal N exits 128+N."""
    return 128 + sig
