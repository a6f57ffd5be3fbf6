"""berth network inspect: JSON of networks (``[]`` and the errors when some are missing, as docker)."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("-f", "--format"), "format", str, help="Format output using a custom template"),
    Flag(("-v", "--verbose"), "verbose", bool, help="Verbose output for diagnostics"),
]
USAGE = "[OPTIONS] NETWORK [NETWORK...]"
SUMMARY = "Display detailed information on one or more networks"
MIN_ARGS = 1


def inspect_all(cli, names: list[str], get, fmt: str | None) -> int:
    """docker's inspect.Inspect: print what was found (indented JSON list, or the template per
    object), then every error; exit 1 if any failed."""
    import json

    from berth.cli.context import CliError
    from berth.client.transport import ConnectionFailed
    from berth.errors import BerthError
    found, errors = [], []
    for name in names:
        try:
            found.append(get(name))
        except ConnectionFailed:
            raise
        except BerthError as e:
            errors.append(f"Error response from daemon: {e}")
    if fmt:
        from berth.cli.format import Template
        tmpl = Template("{{json .}}" if fmt == "json" else fmt.replace("\\t", "\t").replace("\\n", "\n"))
        for obj in found:
            cli.print(tmpl.execute(obj))
    else:
        cli.print(json.dumps(found, indent=4, ensure_ascii=False) if found else "[]")
    if errors:
        raise CliError("\n".join(errors))
    return 0


def run(cli, opts, args) -> int:
    from berth.client.resources import Networks
    nets = Networks(cli.client.transport)
    return inspect_all(cli, args, lambda n: nets.inspect(n, opts["verbose"]), opts["format"])
