"""berth save: write images to a tar archive (stdout by default; never to a terminal)."""

from __future__ import annotations

import os

from berth.cli.flags import Flag

FLAGS = [
    Flag(("-o", "--output"), "output", str, help="Write to a file, instead of STDOUT"),
    Flag(("--platform",), "platform", str, help="Save only the given platform variant"),
]
USAGE = "[OPTIONS] IMAGE [IMAGE...]"
SUMMARY = "Save one or more images to a tar archive (streamed to STDOUT by default)"
MIN_ARGS = 1


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def run(cli, opts, args) -> int:
    from berth.cli.context import CliError
    from berth.cli.format import ByteProgress
    out_path = opts["output"]
    if not out_path and _isatty(cli.out):
        raise CliError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    if out_path:
        d = os.path.dirname(os.path.abspath(out_path))
        if not os.path.isdir(d):
            raise CliError(f"failed to save image: invalid output path: directory {d!r} does not exist")
    chunks = cli.client.images.save(args)
    progress = ByteProgress("Saving", cli.err if _isatty(cli.err) else None)
    if not out_path:
        buf = getattr(cli.out, "buffer", None)
        cli.out.flush()
        for c in progress.wrap(chunks):
            if buf is not None:
                buf.write(c)
            else:
                cli.out.write(c.decode("latin-1"))
        if buf is not None:
            buf.flush()
        return 0
    import tempfile
    fd, tmp = tempfile.mkstemp(prefix=".docker_temp_", dir=os.path.dirname(os.path.abspath(out_path)))
    try:
        with os.fdopen(fd, "wb") as f:
            for c in progress.wrap(chunks):
                f.write(c)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out_path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return 0
