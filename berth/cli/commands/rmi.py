"""berth rmi: remove images (prints ``Untagged: x`` / ``Deleted: sha256:...`` per item)."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("-f", "--force"), "force", bool, help="Force removal of the image"),
    Flag(("--no-prune",), "no_prune", bool, help="Do not delete untagged parents"),
    Flag(("--platform",), "platform", list, help="Remove only the given platform variant"),
]
USAGE = "[OPTIONS] IMAGE [IMAGE...]"
SUMMARY = "Remove one or more images"
MIN_ARGS = 1


def run(cli, opts, args) -> int:
    from berth.cli.context import CliError
    from berth.client.transport import ConnectionFailed
    from berth.errors import BerthError, NotFound
    errors, fatal = [], False
    for name in args:
        try:
            items = cli.client.images.remove(name, force=opts["force"], noprune=opts["no_prune"])
        except ConnectionFailed:
            raise
        except BerthError as e:
            errors.append(f"Error response from daemon: {e}")
            fatal = fatal or not (isinstance(e, NotFound) and opts["force"])
            continue
        for it in items or []:
            if it.get("Deleted"):
                cli.print(f"Deleted: {it['Deleted']}")
            else:
                cli.print(f"Untagged: {it.get('Untagged', '')}")
    if errors:
        if fatal:
            raise CliError("\n".join(errors))
        cli.error("\n".join(errors))
    return 0
