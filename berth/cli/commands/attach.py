"""berth attach: attach local stdin/stdout/stderr to a running container."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("--detach-keys",), "detach_keys", str, help="Override the key sequence for detaching a container"),
    Flag(("--no-stdin",), "no_stdin", bool, help="Do not attach STDIN"),
    Flag(("--sig-proxy",), "sig_proxy", bool, True, help="Proxy all received signals to the process"),
]
USAGE = "[OPTIONS] CONTAINER"
SUMMARY = "Attach local standard input, output, and error streams to a running container"
MIN_ARGS = MAX_ARGS = 1


def run(cli, opts, args) -> int:
    from berth.cli.context import CliError
    from berth.cli.tty import isatty, session
    from berth.errors import BerthError
    c = cli.client.containers
    info = c.inspect(args[0])
    cid = info["Id"]
    state = info.get("State") or {}
    if not state.get("Running"):
        raise CliError("You cannot attach to a stopped container, start it first", 1)
    if state.get("Paused"):
        raise CliError("You cannot attach to a paused container, unpause it first", 1)
    if state.get("Restarting"):
        raise CliError("You cannot attach to a restarting container, wait until it is running", 1)
    config = info.get("Config") or {}
    tty = bool(config.get("Tty"))
    stdin = bool(config.get("OpenStdin")) and not opts["no_stdin"]
    if tty and stdin and not isatty(0):
        raise CliError("the input device is not a TTY", 1)
    waiting = c.wait_begin(cid)
    hj = c.attach(cid, stdin=stdin, stdout=True, stderr=True, stream=True, detach_keys=opts["detach_keys"])

    def resize(h: int, w: int) -> None:  # docker nudges the size so the program redraws
        c.resize(cid, h + 1, w + 1)
        c.resize(cid, h, w)
    detached = session(hj, tty=tty, stdin=stdin, detach_keys=opts["detach_keys"],
                       resize=resize if tty else None,
                       kill=(lambda s: c.kill(cid, signal=s)) if opts["sig_proxy"] and not tty else None)
    if detached:
        waiting.close()
        return 0
    try:
        return int(c.wait_result(waiting).get("StatusCode", 0))
    except BerthError as e:
        raise CliError(f"Error response from daemon: {e}", 1) from None
