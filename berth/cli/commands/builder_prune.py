"""berth builder prune: remove the build cache (docker's wording and output)."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("-a", "--all"), "all", bool, help="Remove all unused build cache, not just dangling ones"),
    Flag(("--filter",), "filter", list, help="Provide filter values (e.g. \"until=24h\")"),
    Flag(("-f", "--force"), "force", bool, help="Do not prompt for confirmation"),
    Flag(("--keep-storage",), "keep_storage", str, help="Amount of disk space to keep for cache"),
]
USAGE = "[OPTIONS]"
SUMMARY = "Remove build cache"
MAX_ARGS = 0

WARNING_DANGLING = "WARNING! This will remove all dangling build cache."
WARNING_ALL = "WARNING! This will remove all build cache."


def confirm(cli, message: str) -> bool:
    """docker's prompt: "<message> [y/N] "; yes only for y/Y (EOF is no)."""
    import sys

    cli.out.write(f"{message} [y/N] ")
    cli.out.flush()
    line = sys.stdin.readline()
    return line.strip().lower() in ("y", "yes")


def report(cli, out: dict) -> None:
    from berth.cli.format import human_size

    text = ""
    deleted = out.get("CachesDeleted") or []
    if deleted:
        text = "Deleted build cache objects:\n" + "".join(f"{i}\n" for i in deleted)
    cli.print(text + "Total reclaimed space: " + human_size(int(out.get("SpaceReclaimed") or 0), 4))


def run(cli, opts, args) -> int:
    from berth.cli.commands.ps import parse_filters
    from berth.cli.context import CliError

    filters = parse_filters(opts["filter"])
    if not opts["force"]:
        warning = WARNING_ALL if opts["all"] else WARNING_DANGLING
        if not confirm(cli, warning + "\nAre you sure you want to continue?"):
            raise CliError("builder prune has been cancelled", 0)
    params = {"all": opts["all"] or None}
    if filters:
        from berth.client.api import _filters

        params["filters"] = _filters(filters)
    if opts["keep_storage"]:
        params["keep-storage"] = str(_ram_bytes(opts["keep_storage"]))
    out = cli.client.transport.request("POST", "/build/prune", params, timeout=None).json() or {}
    report(cli, out)
    return 0


def _ram_bytes(text: str) -> int:
    """go-units RAMInBytes: "512", "10k", "1.5GB" (binary multiples)."""
    from berth.cli.context import CliError

    t = text.strip().lower()
    units = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30,
             "gb": 1 << 30, "t": 1 << 40, "tb": 1 << 40, "p": 1 << 50, "pb": 1 << 50}
    i = len(t)
    while i and not (t[i - 1].isdigit() or t[i - 1] == "."):
        i -= 1
    try:
        return int(float(t[:i]) * units[t[i:].strip()])
    except (ValueError, KeyError):
        raise CliError(f'invalid argument "{text}" for "--keep-storage" flag: invalid size: \'{text}\'',
                       125) from None
