"""berth load: load images from a tar archive (``-i`` or stdin); prints ``Loaded image: x``."""

from __future__ import annotations

import os

from berth.cli.flags import Flag

FLAGS = [
    Flag(("-i", "--input"), "input", str, help="Read from tar archive file, instead of STDIN"),
    Flag(("--platform",), "platform", list, help="Load only the given platform variant"),
    Flag(("-q", "--quiet"), "quiet", bool, help="Suppress the load output"),
]
USAGE = "[OPTIONS]"
SUMMARY = "Load an image from a tar archive or STDIN"
MAX_ARGS = 0


def read_chunks(f, size: int = 1 << 20):
    """A file's bytes in chunks (the request body is streamed, never read whole)."""
    while True:
        c = f.read(size)
        if not c:
            return
        yield c


def run(cli, opts, args) -> int:
    import sys

    from berth.cli.commands.save import _isatty
    from berth.cli.context import CliError
    from berth.cli.format import ByteProgress, display_messages
    from berth.client.resources import ImageExtras
    if opts["input"]:
        try:
            f = open(opts["input"], "rb")
        except OSError as e:
            raise CliError(f"open {opts['input']}: {e.strerror.lower() if e.strerror else e}") from None
        total = os.fstat(f.fileno()).st_size
    else:
        if _isatty(sys.stdin):
            raise CliError("requested load from stdin, but stdin is empty")
        f, total = sys.stdin.buffer, 0
    tty = _isatty(cli.out)
    quiet = opts["quiet"] or not tty
    progress = ByteProgress("Loading", cli.out if tty and not opts["quiet"] else None, total)
    try:
        msgs = ImageExtras(cli.client.transport).load(progress.wrap(read_chunks(f)), quiet=quiet)
        display_messages(msgs, cli.out, tty)
    finally:
        if f is not sys.stdin.buffer:
            f.close()
    return 0
