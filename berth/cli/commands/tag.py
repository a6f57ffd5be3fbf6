"""berth tag: create a tag TARGET_IMAGE that refers to SOURCE_IMAGE."""

from __future__ import annotations

FLAGS: list = []
USAGE = "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]"
SUMMARY = "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"
MIN_ARGS = MAX_ARGS = 2


def run(cli, opts, args) -> int:
    from berth.cli.context import CliError
    from berth.errors import InvalidArgument
    from berth.oci.reference import parse
    source, target = args
    try:
        parse(source, default_tag=False) if not _is_id(source) else None
    except InvalidArgument as e:
        raise CliError(_bad(source, e)) from None
    try:
        ref = parse(target, default_tag=False)
    except InvalidArgument as e:
        raise CliError(_bad(target, e)) from None
    if ref.digest:
        raise CliError("refusing to create a tag with a digest reference")
    cli.client.images.tag(source, ref.name, ref.tag or "latest")
    return 0


def _is_id(s: str) -> bool:
    import re
    return bool(re.fullmatch(r"(sha256:)?[0-9a-f]{12,64}", s))


def _bad(name: str, e: Exception) -> str:
    msg = str(e)
    why = "invalid reference format" if msg == f"invalid reference format: {name!r}" else msg
    return f'Error parsing reference: "{name}" is not a valid repository/tag: {why}'

