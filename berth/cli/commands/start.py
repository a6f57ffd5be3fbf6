"""berth start: start stopped containers; ``-a``/``-i`` attach to one (docker's exit codes)."""

from __future__ import annotations

from berth.cli.flags import Flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FLAGS = [
    Flag(("-a", "--attach"), "attach", bool, help="Attach STDOUT/STDERR and forward signals"),
    Flag(("--detach-keys",), "detach_keys", str, help="Override the key sequence for detaching a container"),
    Flag(("-i", "--interactive"), "interactive", bool, help="Attach container's STDIN"),
]
USAGE = "[OPTIONS] CONTAINER [CONTAINER...]"
SUMMARY = "Start one or more stopped containers"
MIN_ARGS = 1


def start_status(e: Exception) -> int:
    """docker's toStatusError: 127 not found, 126 not executable, else 125."""
    msg = str(e)
    if "executable file not found" in msg or "no such file or directory" in msg:
        return 127
    if "permission denied" in msg or "is a directory" in msg:
        return 126
    return 125


def attached_start(cli: Any, info: dict, *, stdin: bool, stdout: bool = True, stderr: bool = True,
                   detach_keys: str | None = None, sig_proxy: bool = True, command: str = "run") -> int:
    """Attach (before start, so no output is lost), wait for the next exit, start, pump the streams;
    → the container's exit status (0 if the user detached). Start errors are reported docker-style."""
    from berth.cli.context import CliError
    from berth.cli.tty import session
    from berth.errors import BerthError
    c = cli.client.containers
    cid = info["Id"]
    config = info.get("Config") or {}
    tty = bool(config.get("Tty"))
    auto_remove = bool((info.get("HostConfig") or {}).get("AutoRemove"))
    hj = None
    if stdin or stdout or stderr:
        hj = c.attach(cid, stdin=stdin, stdout=stdout, stderr=stderr, stream=True, detach_keys=detach_keys)
    waiting = c.wait_begin(cid, "removed" if auto_remove else "next-exit")
    try:
        c.start(cid)
    except BerthError as e:
        if hj is not None:
            hj.close()
        waiting.close()
        if command == "run":
            raise CliError(f"berth: Error response from daemon: {e}\n\nRun 'berth run --help' for more "
                           f"information", start_status(e)) from None
        raise CliError(f"Error response from daemon: {e}", 1) from None
    detached = False
    if hj is not None:
        detached = session(hj, tty=tty, stdin=stdin, detach_keys=detach_keys,
                           resize=(lambda h, w: c.resize(cid, h, w)) if tty else None,
                           kill=(lambda s: c.kill(cid, signal=s)) if sig_proxy and not tty else None)
    if detached:
        waiting.close()
        return 0
    try:
        return int(c.wait_result(waiting).get("StatusCode", 0))
    except BerthError as e:
        raise CliError(f"Error response from daemon: {e}", 125) from None


def run(cli, opts, args) -> int:
    from berth.cli.context import CliError
    if opts["attach"] or opts["interactive"]:
        if len(args) > 1:
            raise CliError("you cannot start and attach multiple containers at once", 1)
        c = cli.client.containers
        info = c.inspect(args[0])
        config = info.get("Config") or {}
        stdin = bool(opts["interactive"] and config.get("OpenStdin"))
        if stdin and config.get("Tty"):
            from berth.cli.tty import isatty
            if not isatty(0):
                raise CliError("the input device is not a TTY", 1)
        if (info.get("State") or {}).get("Running"):
            raise CliError(f"Error response from daemon: container {info['Id']} is already running", 1)
        return attached_start(cli, info, stdin=stdin, detach_keys=opts["detach_keys"], command="start")
    from berth.client.transport import ConnectionFailed
    from berth.errors import BerthError
    c = cli.client.containers
    failed = []
    for name in args:
        try:
            c.start(name)
        except ConnectionFailed:
            raise
        except BerthError as e:
            cli.error(f"Error response from daemon: {e}")
            failed.append(name)
            continue
        cli.print(name)
    if failed:
        cli.error("Error: failed to start containers: " + ", ".join(failed))
        return 1
    return 0
