"""berth exec: run a command in a running container; exit status = the command's (126/127)."""

from __future__ import annotations

from berth.cli.flags import Flag, Flags

FLAGS = Flags([
    Flag(("-d", "--detach"), "detach", bool, help="Detached mode: run command in the background"),
    Flag(("--detach-keys",), "detach_keys", str, help="Override the key sequence for detaching a container"),
    Flag(("-e", "--env"), "env", list, help="Set environment variables"),
    Flag(("--env-file",), "env_file", list, help="Read in a file of environment variables"),
    Flag(("-i", "--interactive"), "interactive", bool, help="Keep STDIN open even if not attached"),
    Flag(("--privileged",), "privileged", bool, help="Give extended privileges to the command"),
    Flag(("-t", "--tty"), "tty", bool, help="Allocate a pseudo-TTY"),
    Flag(("-u", "--user"), "user", str, help="Username or UID (format: <name|uid>[:<group|gid>])"),
    Flag(("-w", "--workdir"), "workdir", str, help="Working directory inside the container"),
])
USAGE = "[OPTIONS] CONTAINER COMMAND [ARG...]"
SUMMARY = "Execute a command in a running container"
MIN_ARGS = 2


def run(cli, opts, args) -> int:
    import time

    from berth.cli.containerspec import SpecError, env_value, read_kv_file
    from berth.cli.context import CliError
    from berth.cli.tty import isatty, session, size
    container, cmd = args[0], args[1:]
    tty, stdin, detach = opts["tty"], opts["interactive"], opts["detach"]
    if tty and stdin and not detach and not isatty(0):
        raise CliError("the input device is not a TTY", 1)
    try:
        env = [line for f in opts["env_file"] for line in read_kv_file(f, env_lookup=True)]
        env += [env_value(e) for e in opts["env"]]
    except SpecError as e:
        raise CliError(str(e), 125) from None
    console = list(size(1, 0) or ()) if tty else None
    ex = cli.client.exec
    eid = ex.create(container, cmd, tty=tty, stdin=stdin and not detach, env=env or None,
                    workdir=opts["workdir"] or "", user=opts["user"] or "", privileged=opts["privileged"],
                    detach=detach, detach_keys=opts["detach_keys"] or "", console_size=console or None)
    if detach:
        ex.start(eid, tty=tty, detach=True)
        return 0
    hj = ex.start(eid, tty=tty, console_size=console or None)
    assert hj is not None
    if session(hj, tty=tty, stdin=stdin, detach_keys=opts["detach_keys"],
               resize=(lambda h, w: ex.resize(eid, h, w)) if tty else None):
        return 0
    info = ex.inspect(eid)
    for _ in range(100):  # the stream can end a moment before the exit is recorded
        if not info.get("Running") and info.get("ExitCode") is not None:
            break
        time.sleep(0.05)
        info = ex.inspect(eid)
    return int(info.get("ExitCode") or 0)
