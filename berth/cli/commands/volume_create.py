"""berth volume create: create a volume (prints its name; a generated one when none is given)."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("-d", "--driver"), "driver", str, "local", help='Specify volume driver name (default "local")'),
    Flag(("--label",), "label", list, help="Set metadata for a volume"),
    Flag(("--name",), "name", str, help="Specify volume name"),
    Flag(("-o", "--opt"), "opt", list, help="Set driver specific options"),
]
USAGE = "[OPTIONS] [VOLUME]"
SUMMARY = "Create a volume"
MAX_ARGS = 1


def body_for(name: str, opts: dict) -> dict:
    from berth.cli.commands.network_create import kv_map
    return {"Driver": opts["driver"] or "local", "DriverOpts": kv_map(opts["opt"]),
            "Labels": kv_map(opts["label"]), "Name": name}


def run(cli, opts, args) -> int:
    from berth.cli.context import CliError
    from berth.client.resources import Volumes
    name = args[0] if args else ""
    if args and opts["name"] and opts["name"] != args[0]:
        raise CliError("conflicting options: cannot specify a volume-name through both --name and as a "
                       "positional arg")
    name = name or opts["name"] or ""
    vol = Volumes(cli.client.transport).create(body_for(name, opts))
    cli.print(vol.get("Name") or name)
    return 0
