"""berth run: create and start a container, attached (exit status = the container's) or ``-d``."""

from __future__ import annotations

from berth.cli.containerspec import RUN_FLAGS

FLAGS = RUN_FLAGS
USAGE = "[OPTIONS] IMAGE [COMMAND] [ARG...]"
SUMMARY = "Create and run a new container from an image"
MIN_ARGS = 1


def run(cli, opts, args) -> int:
    from berth.cli.commands.create import create, fail
    from berth.cli.commands.start import attached_start, start_status
    from berth.cli.context import CliError
    from berth.cli.tty import isatty
    from berth.errors import BerthError
    detach = opts["detach"]
    attach = [a.lower() for a in opts["attach"]]
    stdin = not detach and (("stdin" in attach) if attach else opts["interactive"])
    if opts["tty"] and stdin and not isatty(0):
        raise CliError("the input device is not a TTY", 1)
    if opts["detach_keys"]:
        from berth.client.streams import parse_detach_keys
        try:
            parse_detach_keys(opts["detach_keys"])
        except BerthError as e:
            raise fail("run", f"invalid detach keys ({opts['detach_keys']}) provided: {e}") from None
    reply = create(cli, opts, args, "run")
    cid = reply["Id"]
    c = cli.client.containers
    if detach:
        try:
            c.start(cid)
        except BerthError as e:
            raise fail("run", f"Error response from daemon: {e}", start_status(e)) from None
        cli.print(cid)
        return 0
    info = {"Id": cid, "Config": {"Tty": opts["tty"]}, "HostConfig": {"AutoRemove": opts["rm"]}}
    stdout = "stdout" in attach if attach else True
    stderr = "stderr" in attach if attach else True
    return attached_start(cli, info, stdin=stdin, stdout=stdout, stderr=stderr,
                          detach_keys=opts["detach_keys"], sig_proxy=opts["sig_proxy"], command="run")
