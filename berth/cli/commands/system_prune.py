"""berth system prune: remove stopped containers, unused networks, dangling (or all unused) images,
build cache, and with ``--volumes`` anonymous volumes. Also home of the prune prompt the other
``prune`` commands share."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("-a", "--all"), "all", bool, help="Remove all unused images not just dangling ones"),
    Flag(("--filter",), "filter", list, help='Provide filter values (e.g. "label=<key>=<value>")'),
    Flag(("-f", "--force"), "force", bool, help="Do not prompt for confirmation"),
    Flag(("--volumes",), "volumes", bool, help="Prune anonymous volumes"),
]
USAGE = "[OPTIONS]"
SUMMARY = "Remove unused data"
MAX_ARGS = 0


def confirm(cli, message: str) -> bool:
    """docker's PromptForConfirmation: ``message [y/N] `` on stdout, yes only for y/Y."""
    import sys
    cli.out.write(message + " [y/N] ")
    cli.out.flush()
    try:
        answer = sys.stdin.readline()
    except (OSError, ValueError):
        answer = ""
    if not answer.endswith("\n"):
        cli.out.write("\n")
    return answer.strip() in ("y", "Y")


def report(cli, output: str, space: int | None) -> None:
    """Print a prune's list (if any) and, when space is not None, the reclaimed total."""
    if output:
        cli.print(output)
    if space is not None:
        from berth.cli.format import human_size
        cli.print(f"Total reclaimed space: {human_size(space, 4)}")


def deleted_list(title: str, items: list[str] | None) -> str:
    return title + "\n" + "".join(f"{i}\n" for i in items) if items else ""


def prune_containers(cli, all: bool, filters: dict) -> tuple[int, str]:
    from berth.client.resources import System
    rep = System(cli.client.transport).prune_containers(filters)
    items = rep.get("ContainersDeleted")
    return (rep.get("SpaceReclaimed") or 0) if items else 0, deleted_list("Deleted Containers:", items)


def prune_build_cache(cli, all: bool, filters: dict) -> tuple[int, str]:
    from berth.client.resources import System
    from berth.errors import NotFound
    try:
        rep = System(cli.client.transport).prune_build_cache(all, filters)
    except NotFound:  # an engine without a builder
        return 0, ""
    items = rep.get("CachesDeleted")
    return rep.get("SpaceReclaimed") or 0, deleted_list("Deleted build cache objects:", items)


def warning_text(all: bool, volumes: bool, filters: list[str]) -> str:
    warnings = ["all stopped containers", "all networks not used by at least one container"]
    if volumes:
        warnings.append("all anonymous volumes not used by at least one container")
    warnings.append("all images without at least one container associated to them" if all
                    else "all dangling images")
    warnings.append("all build cache" if all else "unused build cache")
    text = "WARNING! This will remove:\n" + "".join(f"  - {w}\n" for w in warnings)
    if filters:
        text += "\n  Items to be pruned will be filtered with:\n" + "".join(f"  - {f}\n" for f in filters)
    return text + "\nAre you sure you want to continue?"


def run(cli, opts, args) -> int:
    from berth.cli.commands.image_prune import prune as prune_images
    from berth.cli.commands.network_prune import prune as prune_networks
    from berth.cli.commands.ps import parse_filters
    from berth.cli.commands.volume_prune import prune as prune_volumes
    from berth.cli.context import CliError
    filters = parse_filters(opts["filter"])
    if opts["volumes"] and "until" in filters:
        raise CliError('ERROR: The "until" filter is not supported with "--volumes"')
    if not opts["force"] and not confirm(cli, warning_text(opts["all"], opts["volumes"], opts["filter"])):
        return 0
    steps = [prune_containers, prune_networks]
    if opts["volumes"]:
        steps.append(lambda c, a, f: prune_volumes(c, False, f))
    steps += [prune_images, prune_build_cache]
    total = 0
    for step in steps:
        space, output = step(cli, opts["all"], {k: list(v) for k, v in filters.items()})
        total += space
        if output:
            cli.print(output)
    report(cli, "", total)
    return 0
