"""berth logs: fetch a container's logs (stdout to stdout, stderr to stderr)."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("--details",), "details", bool, help="Show extra details provided to logs"),
    Flag(("-f", "--follow"), "follow", bool, help="Follow log output"),
    Flag(("--since",), "since", str, help="Show logs since timestamp or relative (e.g. 42m)"),
    Flag(("-n", "--tail"), "tail", str, "all", help="Number of lines to show from the end of the logs"),
    Flag(("-t", "--timestamps"), "timestamps", bool, help="Show timestamps"),
    Flag(("--until",), "until", str, help="Show logs before a timestamp or relative (e.g. 42m)"),
]
USAGE = "[OPTIONS] CONTAINER"
SUMMARY = "Fetch the logs of a container"
MIN_ARGS = MAX_ARGS = 1


def _time(value: str | None) -> str | None:
    """Relative durations (``42m``, ``10s``, ``2h``) → unix seconds; anything else is passed through."""
    if not value:
        return None
    import re
    import time
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value)
    if m:
        mult = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]
        return f"{time.time() - float(m.group(1)) * mult:.9f}"
    return value


def run(cli, opts, args) -> int:
    c = cli.client.containers
    info = c.inspect(args[0])
    tty = bool((info.get("Config") or {}).get("Tty"))
    for stream, data in c.logs(info["Id"], follow=opts["follow"], timestamps=opts["timestamps"],
                               tail=opts["tail"], since=_time(opts["since"]), until=_time(opts["until"]),
                               tty=tty):
        cli.write_bytes(stream, data)
    return 0
