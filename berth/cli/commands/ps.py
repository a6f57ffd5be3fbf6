"""berth ps: list containers (docker's columns, filters, -q, --no-trunc, --format)."""

from __future__ import annotations

import json
import time

from berth.cli.flags import Flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FLAGS = [
    Flag(("-a", "--all"), "all", bool, help="Show all containers (default shows just running)"),
    Flag(("-f", "--filter"), "filter", list, help="Filter output based on conditions provided"),
    Flag(("--format",), "format", str, help="Format output using a custom template"),
    Flag(("-n", "--last"), "last", int, -1, help="Show n last created containers (includes all states)"),
    Flag(("-l", "--latest"), "latest", bool, help="Show the latest created container (includes all states)"),
    Flag(("--no-trunc",), "no_trunc", bool, help="Don't truncate output"),
    Flag(("-q", "--quiet"), "quiet", bool, help="Only display container IDs"),
    Flag(("-s", "--size"), "size", bool, help="Display total file sizes"),
]
USAGE = "[OPTIONS]"
SUMMARY = "List containers"
MAX_ARGS = 0

DEFAULT_FORMAT = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}"
                  "\t{{.Names}}")
HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
           "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
           "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
           "LocalVolumes": "LOCAL VOLUMES"}


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    """``--filter k=v`` (repeatable) → {k: [v, ...]}."""
    from berth.cli.context import CliError
    out: dict[str, list[str]] = {}
    for item in items:
        k, eq, v = item.partition("=")
        if not eq:
            raise CliError("bad format of filter (expected name=value)\nSee 'berth --help'.", 125)
        out.setdefault(k.strip().lower(), []).append(v)
    return out


def format_ports(ports: list[dict]) -> str:
    out = []
    for p in ports or []:
        kind = p.get("Type", "tcp")
        if p.get("PublicPort"):
            ip = p.get("IP") or "0.0.0.0"
            ip = f"[{ip}]" if ":" in ip else ip
            out.append(f"{ip}:{p['PublicPort']}->{p['PrivatePort']}/{kind}")
        else:
            out.append(f"{p.get('PrivatePort')}/{kind}")
    return ", ".join(out)


class ContainerRow:
    """The fields a ps template sees (docker's containerContext)."""

    def __init__(self, c: dict, trunc: bool = True, now: float | None = None) -> None:
        self.c, self.trunc, self.now = c, trunc, time.time() if now is None else now

    @property
    def ID(self) -> str:
        return self.c.get("Id", "")[:12] if self.trunc else self.c.get("Id", "")

    @property
    def Image(self) -> str:
        img = self.c.get("Image", "") or ""
        if self.trunc:
            if img.startswith("sha256:"):
                return img[7:19]
            img = img.split("@", 1)[0]
        return img

    @property
    def Command(self) -> str:
        from berth.cli.format import ellipsis
        cmd = self.c.get("Command", "") or ""
        return json.dumps(ellipsis(cmd, 20) if self.trunc else cmd, ensure_ascii=False)

    @property
    def CreatedAt(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(self.c.get("Created", 0)))

    @property
    def RunningFor(self) -> str:
        from berth.cli.format import human_duration
        return human_duration(self.now - self.c.get("Created", 0)) + " ago"

    @property
    def Ports(self) -> str:
        return format_ports(self.c.get("Ports") or [])

    @property
    def State(self) -> str:
        return self.c.get("State", "")

    @property
    def Status(self) -> str:
        return self.c.get("Status", "")

    @property
    def Size(self) -> str:
        from berth.cli.format import human_size
        rw, root = self.c.get("SizeRw", 0) or 0, self.c.get("SizeRootFs", 0) or 0
        s = human_size(rw)
        return f"{s} (virtual {human_size(root)})" if root > 0 else s

    @property
    def Names(self) -> str:
        names = [n[1:] if n.startswith("/") else n for n in self.c.get("Names") or []]
        if self.trunc:
            for n in names:
                if "/" not in n:
                    return n
        return ",".join(names)

    @property
    def Labels(self) -> str:
        labels = self.c.get("Labels") or {}
        return ",".join(f"{k}={v}" for k, v in labels.items())

    @property
    def Label(self) -> Any:
        return lambda name: (self.c.get("Labels") or {}).get(name, "")

    @property
    def Mounts(self) -> str:
        return ",".join((m.get("Name") or m.get("Source") or "") for m in self.c.get("Mounts") or [])

    @property
    def Networks(self) -> str:
        return ",".join(sorted(((self.c.get("NetworkSettings") or {}).get("Networks") or {}).keys()))

    @property
    def LocalVolumes(self) -> str:
        return str(sum(1 for m in self.c.get("Mounts") or [] if m.get("Driver") == "local"))

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("Command", "CreatedAt", "ID", "Image", "Labels", "LocalVolumes",
                                              "Mounts", "Names", "Networks", "Ports", "RunningFor", "Size",
                                              "State", "Status")}


def run(cli, opts, args) -> int:
    from berth.cli.format import render
    limit = 1 if opts["latest"] else opts["last"]
    filters = parse_filters(opts["filter"])
    containers = cli.client.containers.list(all=opts["all"] or limit > 0, limit=limit if limit > 0 else None,
                                            size=opts["size"], filters=filters)
    trunc = not opts["no_trunc"]
    rows = [ContainerRow(c, trunc) for c in containers]
    if opts["quiet"] and not opts["format"]:
        for r in rows:
            cli.print(r.ID)
        return 0
    fmt = opts["format"] or DEFAULT_FORMAT + ("\t{{.Size}}" if opts["size"] else "")
    if fmt == "table":
        fmt = DEFAULT_FORMAT
    cli.out.write(render(fmt, rows, HEADERS))
    return 0
