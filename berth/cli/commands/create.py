"""berth create: create a new container (docker's flags; pulls a missing image first)."""

from __future__ import annotations

from berth.cli.containerspec import CREATE_FLAGS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FLAGS = CREATE_FLAGS
USAGE = "[OPTIONS] IMAGE [COMMAND] [ARG...]"
SUMMARY = "Create a new container"
MIN_ARGS = 1


def split_ref(ref: str) -> tuple[str, str | None]:
    """``busybox`` → ("busybox", "latest"); ``host:5000/a/b:t`` → ("host:5000/a/b", "t"); digests
    keep no tag."""
    if "@" in ref:
        return ref, None
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, "latest"


def tagged(ref: str) -> str:
    repo, tag = split_ref(ref)
    return f"{repo}:{tag}" if tag else repo


def fail(command: str, message: str, status: int = 125) -> Exception:
    """docker's reportError for run/create: ``docker: <msg>`` and a --help hint on stderr."""
    from berth.cli.context import CliError
    return CliError(f"berth: {message}\n\nRun 'berth {command} --help' for more information", status)


def pull(cli: Any, image: str, quiet: bool = False, command: str = "create") -> None:
    from berth.cli.context import CliError
    from berth.cli.format import display_messages
    from berth.errors import BerthError
    repo, tag = split_ref(image)
    try:
        msgs = cli.client.images.pull(repo, tag)
        if quiet:
            for _ in msgs:
                pass
        else:
            display_messages(msgs, cli.err)
    except (BerthError, CliError) as e:
        raise fail(command, f"Error response from daemon: {e}") from None


def create(cli: Any, opts: dict[str, Any], args: list[str], command: str = "create") -> dict:
    """Build the body from flags, create (pulling a missing image per --pull), write --cidfile;
    → the create reply ``{"Id", "Warnings"}``. Errors exit 125 with docker's wording."""
    import os

    from berth.cli.containerspec import SpecError, build
    from berth.cli.tty import size
    from berth.errors import BerthError, NotFound
    image, cmd = args[0], args[1:]
    cidfile = opts.get("cidfile")
    if cidfile and os.path.exists(cidfile):
        raise fail(command, f"Container ID file found, make sure the other container isn't running or "
                            f"delete {cidfile}")
    console = size(1, 0) if opts.get("tty") else None
    try:
        body = build(opts, image, cmd, console)
    except SpecError as e:
        raise fail(command, str(e)) from None
    policy = opts.get("pull") or "missing"
    if policy not in ("always", "missing", "never"):
        raise fail(command, f"invalid pull option: '{policy}': must be one of \"always\", \"missing\" "
                            f"or \"never\"")
    if policy == "always":
        pull(cli, image, opts.get("quiet", False), command)
    c = cli.client.containers
    try:
        try:
            reply = c.create(body, name=opts.get("name"), platform=opts.get("platform"))
        except NotFound as e:
            if policy != "missing" or not str(e).startswith("No such image"):
                raise
            cli.error(f"Unable to find image '{tagged(image)}' locally")
            pull(cli, image, opts.get("quiet", False), command)
            reply = c.create(body, name=opts.get("name"), platform=opts.get("platform"))
    except BerthError as e:
        from berth.client.transport import ConnectionFailed
        if isinstance(e, ConnectionFailed):
            raise fail(command, str(e)) from None
        raise fail(command, f"Error response from daemon: {e}") from None
    for w in reply.get("Warnings") or []:
        cli.error(f"WARNING: {w}")
    if cidfile:
        try:
            with open(cidfile, "x") as fh:
                fh.write(reply["Id"])
        except OSError as e:
            raise fail(command, f"failed to create the container ID file: {e}") from None
    return reply


def run(cli, opts, args) -> int:
    cli.print(create(cli, opts, args)["Id"])
    return 0
