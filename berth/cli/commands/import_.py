"""berth import: make a filesystem image from a tarball (file or ``-``); prints the image ID."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("-c", "--change"), "change", list, help="Apply Dockerfile instruction to the created image"),
    Flag(("-m", "--message"), "message", str, help="Set commit message for imported image"),
    Flag(("--platform",), "platform", str, help="Set platform if server is multi-platform capable"),
]
USAGE = "[OPTIONS] file|URL|- [REPOSITORY[:TAG]]"
SUMMARY = "Import the contents from a tarball to create a filesystem image"
MIN_ARGS = 1
MAX_ARGS = 2

# instructions the engine accepts in --change (moby's allowed list for import/commit)
CHANGE_COMMANDS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME",
                   "WORKDIR")


def check_changes(changes: list[str]) -> list[str]:
    """Reject a ``--change`` whose instruction import cannot apply, before sending the tarball."""
    from berth.cli.context import CliError
    out = []
    for ch in changes:
        line = ch.strip()
        if not line:
            continue
        word = line.split(None, 1)[0].upper()
        if word not in CHANGE_COMMANDS:
            raise CliError(f"Error response from daemon: {word} is not a valid change command")
        out.append(line)
    return out


def is_url(s: str) -> bool:
    return s.startswith(("http://", "https://"))


def run(cli, opts, args) -> int:
    import os
    import sys

    from berth.cli.commands.load import read_chunks
    from berth.cli.commands.save import _isatty
    from berth.cli.context import CliError
    from berth.cli.format import ByteProgress, display_messages
    from berth.client.resources import ImageExtras
    from berth.errors import InvalidArgument
    from berth.oci.reference import parse
    source = args[0]
    repo = None
    if len(args) > 1:
        try:
            ref = parse(args[1], default_tag=False)
        except InvalidArgument as e:
            raise CliError(str(e)) from None
        if ref.digest:
            raise CliError("refusing to create a tag with a digest reference")
        repo = ref.familiar()
    changes = check_changes(opts["change"])
    if is_url(source):
        raise CliError(f"importing from a URL is not supported: berth does not download ({source}); "
                       "fetch the tarball first and import the file, or pipe it: curl ... | berth import -")
    if source == "-":
        f, total = sys.stdin.buffer, 0
    else:
        try:
            f = open(source, "rb")
        except OSError as e:
            raise CliError(f"open {source}: {(e.strerror or str(e)).lower()}") from None
        total = os.fstat(f.fileno()).st_size
    tty = _isatty(cli.out)
    progress = ByteProgress("Importing", cli.err if _isatty(cli.err) else None, total)
    try:
        msgs = ImageExtras(cli.client.transport).import_(progress.wrap(read_chunks(f)), repo=repo,
                                                         message=opts["message"], changes=changes,
                                                         platform=opts["platform"])
        display_messages(msgs, cli.out, tty)
    finally:
        if f is not sys.stdin.buffer:
            f.close()
    return 0
