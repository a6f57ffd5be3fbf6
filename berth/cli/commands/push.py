"""berth push: upload an image to a registry through the engine."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("-a", "--all-tags"), "all_tags", bool, help="Push all tags of an image to the repository"),
    Flag(("--disable-content-trust",), "disable_content_trust", bool, True, help="Skip image signing"),
    Flag(("--platform",), "platform", str, help="Push a platform-specific manifest only"),
    Flag(("-q", "--quiet"), "quiet", bool, help="Suppress verbose output"),
]
USAGE = "[OPTIONS] NAME[:TAG]"
SUMMARY = "Upload an image to a registry"
MIN_ARGS = MAX_ARGS = 1


def run(cli, opts, args) -> int:
    import io

    from berth.cli.commands.save import _isatty
    from berth.cli.context import CliError
    from berth.cli.format import display_messages
    from berth.client.resources import ImageExtras, registry_auth
    from berth.errors import InvalidArgument, NotFound
    from berth.oci.reference import parse
    try:
        ref = parse(args[0], default_tag=False)
    except InvalidArgument as e:
        raise CliError(str(e)) from None
    if ref.digest:
        raise CliError(f"invalid reference format: {args[0]!r}: push takes a name or name:tag")
    if opts["all_tags"] and ref.tag:
        raise CliError("tag can't be used with --all-tags/-a")
    if not opts["all_tags"] and not ref.tag:
        ref = ref.tagged()
        if not opts["quiet"]:
            cli.print(f"Using default tag: {ref.tag}")
    auth = registry_auth(ref.name, cli.gopts.get("config"))
    try:
        msgs = ImageExtras(cli.client.transport).push(ref.familiar_name(), ref.tag or None, auth)
    except NotFound as e:
        if "page not found" not in str(e):
            raise
        raise CliError(f"push is not supported by the engine at {cli.host} ({e})") from None
    out = io.StringIO() if opts["quiet"] else cli.out
    display_messages(msgs, out, False if opts["quiet"] else _isatty(cli.out))
    if opts["quiet"]:
        cli.print(str(ref))
    return 0
