"""berth inspect: low-level JSON of containers or images (container first, like docker)."""

from __future__ import annotations

import json

from berth.cli.flags import Flag

FLAGS = [
    Flag(("-f", "--format"), "format", str, help="Format output using a custom template"),
    Flag(("-s", "--size"), "size", bool, help="Display total file sizes if the type is container"),
    Flag(("--type",), "type", str, help="Only inspect objects of the given type"),
]
USAGE = "[OPTIONS] NAME|ID [NAME|ID...]"
SUMMARY = "Return low-level information on objects"
MIN_ARGS = 1


def run(cli, opts, args) -> int:
    from berth.cli.context import CliError
    from berth.errors import NotFound
    kind = opts["type"]
    if kind not in (None, "", "container", "image"):
        raise CliError(f'"{kind}" is not a valid value for --type', 1)
    found, failed = [], False
    for name in args:
        obj = None
        for k in ("container", "image"):
            if kind and kind != k:
                continue
            try:
                obj = (cli.client.containers.inspect(name, size=opts["size"]) if k == "container"
                       else cli.client.images.inspect(name))
                break
            except NotFound:
                continue
        if obj is None:
            failed = True
            what = f"No such {kind}" if kind else "No such object"
            cli.error(f"Error: {what}: {name}")
            continue
        found.append(obj)
    if opts["format"]:
        from berth.cli.format import Template
        tmpl = Template("{{json .}}" if opts["format"] == "json" else opts["format"])
        for obj in found:
            cli.print(tmpl.execute(obj))
    else:
        cli.print(json.dumps(found, indent=4, ensure_ascii=False))
    return 1 if failed else 0
