"""berth export: a container's filesystem as a tar archive (stdout or -o)."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [Flag(("-o", "--output"), "output", str, help="Write to a file, instead of STDOUT")]
USAGE = "[OPTIONS] CONTAINER"
SUMMARY = "Export a container's filesystem as a tar archive"
MIN_ARGS = MAX_ARGS = 1


def run(cli, opts, args) -> int:
    import os

    from berth.cli.context import CliError
    out = opts["output"]
    if not out and os.isatty(1):
        raise CliError("cowardly refusing to save to a terminal. Use the -o flag or redirect", 1)
    chunks = cli.client.containers.export(args[0])
    if out:
        tmp = f"{out}.berth-tmp{os.getpid()}"
        try:
            with open(tmp, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
            os.replace(tmp, out)
        except OSError as e:
            raise CliError(f"failed to export container: {e}", 1) from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return 0
    cli.out.flush()
    buf = getattr(cli.out, "buffer", None)
    for chunk in chunks:
        if buf is not None:
            buf.write(chunk)
        else:
            os.write(1, chunk)
    if buf is not None:
        buf.flush()
    return 0
