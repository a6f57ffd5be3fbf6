"""berth commit: create a new image from a container's changes."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("-a", "--author"), "author", str,
         help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")'),
    Flag(("-c", "--change"), "change", list, help="Apply Dockerfile instruction to the created image"),
    Flag(("-m", "--message"), "message", str, help="Commit message"),
    Flag(("-p", "--pause"), "pause", bool, True, help="Pause container during commit"),
]
USAGE = "[OPTIONS] CONTAINER [REPOSITORY[:TAG]]"
SUMMARY = "Create a new image from a container's changes"
MIN_ARGS, MAX_ARGS = 1, 2


def run(cli, opts, args) -> int:
    repo = tag = None
    if len(args) > 1:
        ref = args[1]
        slash, colon = ref.rfind("/"), ref.rfind(":")
        if "@" in ref:
            from berth.cli.context import CliError
            raise CliError(f"Error parsing reference: \"{ref}\" is not a valid repository/tag: refusing to "
                           f"create a tag with a digest reference", 1)
        repo, tag = (ref[:colon], ref[colon + 1:]) if colon > slash else (ref, None)
    reply = cli.client.containers.commit(args[0], repo=repo, tag=tag, comment=opts["message"] or "",
                                         author=opts["author"] or "", changes=opts["change"],
                                         pause=opts["pause"])
    cli.print(reply.get("Id", ""))
    return 0
