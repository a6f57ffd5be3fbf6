"""berth pull: fetch an image through the engine (docker's progress lines; the full name at the end)."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("-a", "--all-tags"), "all_tags", bool, help="Download all tagged images in the repository"),
    Flag(("--disable-content-trust",), "disable_content_trust", bool, True, help="Skip image verification"),
    Flag(("--platform",), "platform", str, help="Set platform if server is multi-platform capable"),
    Flag(("-q", "--quiet"), "quiet", bool, help="Suppress verbose output"),
]
USAGE = "[OPTIONS] NAME[:TAG|@DIGEST]"
SUMMARY = "Download an image from a registry"
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
    if opts["all_tags"] and (ref.tag or ref.digest):
        raise CliError("tag can't be used with --all-tags/-a")
    if not opts["all_tags"] and not ref.tag and not ref.digest:
        ref = ref.tagged()
        if not opts["quiet"]:
            cli.print(f"Using default tag: {ref.tag}")
    auth = registry_auth(ref.name, cli.gopts.get("config"))
    name = ref.familiar_name()
    if ref.digest:
        image, tag = f"{name}@{ref.digest}", None
    else:
        image, tag = name, ref.tag or None
    try:
        msgs = ImageExtras(cli.client.transport).pull(image, tag, opts["platform"], auth)
    except NotFound as e:
        if "page not found" not in str(e):
            raise
        raise CliError(f"pull is not supported by the engine at {cli.host} ({e})") from None
    out = io.StringIO() if opts["quiet"] else cli.out
    display_messages(msgs, out, False if opts["quiet"] else _isatty(cli.out))
    cli.print(str(ref))
    return 0
