"""berth image bootstrap: make a base image on the engine (berth's own; no registry needed).

``busybox`` comes from the host's busybox-static, ``debian`` from debootstrap (minutes)."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("--name",), "name", str, help="Also tag the image as NAME[:TAG]"),
    Flag(("-q", "--quiet"), "quiet", bool, help="Only print the image ID"),
    Flag(("--suite",), "suite", str, help="Debian suite (default \"bookworm\"); debian only"),
]
USAGE = "[OPTIONS] busybox|debian"
SUMMARY = "Make a base image (busybox from busybox-static, debian with debootstrap)"
MIN_ARGS = MAX_ARGS = 1
KINDS = ("busybox", "debian")


def bootstrap_name(kind: str, suite: str | None) -> str:
    """The ``name`` the bootstrap route takes: ``busybox[:tag]`` or ``debian[:suite]``."""
    from berth.cli.context import CliError
    base, _, extra = kind.partition(":")
    if base not in KINDS:
        raise CliError(f"unknown base image {kind!r}: berth can bootstrap {' or '.join(KINDS)}")
    if suite:
        if base != "debian":
            raise CliError("--suite applies to debian only")
        if extra and extra != suite:
            raise CliError(f"conflicting suites: {extra!r} and --suite {suite!r}")
        extra = suite
    return f"{base}:{extra}" if extra else base


def run(cli, opts, args) -> int:
    from berth.cli.commands.save import _isatty
    from berth.cli.commands.tag import run as tag
    from berth.client.resources import ImageExtras
    name = bootstrap_name(args[0], opts["suite"])
    show = _isatty(cli.err) and not opts["quiet"]
    if show:
        slow = " (debootstrap: this takes a few minutes)" if name.startswith("debian") else ""
        cli.err.write(f"Bootstrapping {name}{slow}...")
        cli.err.flush()
    try:
        res = ImageExtras(cli.client.transport).bootstrap(name)
    finally:
        if show:
            cli.err.write("\x1b[2K\r")
            cli.err.flush()
    if opts["name"]:
        tag(cli, {}, [res["Id"], opts["name"]])
    if opts["quiet"]:
        cli.print(res["Id"])
        return 0
    tags = list(res.get("RepoTags") or [])
    if opts["name"]:
        from berth.oci.reference import parse
        tags.append(parse(opts["name"]).familiar())
    for t in tags:
        cli.print(f"Bootstrapped image: {t}")
    cli.print(res["Id"])
    return 0
