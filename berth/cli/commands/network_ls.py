"""berth network ls: list networks (NETWORK ID NAME DRIVER SCOPE)."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("-f", "--filter"), "filter", list, help='Provide filter values (e.g. "driver=bridge")'),
    Flag(("--format",), "format", str, help="Format output using a custom template"),
    Flag(("--no-trunc",), "no_trunc", bool, help="Do not truncate the output"),
    Flag(("-q", "--quiet"), "quiet", bool, help="Only display network IDs"),
]
USAGE = "[OPTIONS]"
SUMMARY = "List networks"
MAX_ARGS = 0

DEFAULT_FORMAT = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "IPv4": "IPV4",
           "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT"}


def natural_key(s: str) -> list:
    """sortorder.NaturalLess: digit runs compare as numbers."""
    import re
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", s) if p]


def _bool(v) -> str:
    return "true" if v else "false"


class NetworkRow:
    """The fields a network ls template sees (docker's networkContext)."""

    def __init__(self, n: dict, trunc: bool = True) -> None:
        self.n, self.trunc = n, trunc

    @property
    def ID(self) -> str:
        i = self.n.get("Id") or ""
        return i[:12] if self.trunc else i

    @property
    def Name(self) -> str:
        return self.n.get("Name") or ""

    @property
    def Driver(self) -> str:
        return self.n.get("Driver") or ""

    @property
    def Scope(self) -> str:
        return self.n.get("Scope") or ""

    @property
    def IPv4(self) -> str:
        return _bool(self.n.get("EnableIPv4"))  # absent before API 1.47: docker 28 shows false

    @property
    def IPv6(self) -> str:
        return _bool(self.n.get("EnableIPv6"))

    @property
    def Internal(self) -> str:
        return _bool(self.n.get("Internal"))

    @property
    def Labels(self) -> str:
        return ",".join(f"{k}={v}" for k, v in (self.n.get("Labels") or {}).items())

    @property
    def Label(self):
        return lambda name: (self.n.get("Labels") or {}).get(name, "")

    @property
    def CreatedAt(self) -> str:
        return go_time_string(self.n.get("Created") or "")

    def as_dict(self) -> dict:
        keys = ("CreatedAt", "Driver", "ID", "IPv4", "IPv6", "Internal", "Labels", "Name", "Scope")
        return {k: getattr(self, k) for k in keys}


def go_time_string(rfc: str) -> str:
    """An RFC 3339 time from the API as Go's Time.String() prints it: ``2024-01-02 03:04:05.5 +0000 UTC``."""
    import re
    m = re.match(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$", rfc)
    if not m:
        return rfc
    frac = (m.group(3) or "").rstrip("0")
    zone = m.group(4) or "Z"
    off = "+0000 UTC" if zone == "Z" else zone.replace(":", "") + " " + zone.replace(":", "")
    return f"{m.group(1)} {m.group(2)}{'.' + frac if frac else ''} {off}"


def run(cli, opts, args) -> int:
    from berth.cli.commands.ps import parse_filters
    from berth.cli.format import render
    from berth.client.resources import Networks
    nets = Networks(cli.client.transport).list(parse_filters(opts["filter"]))
    nets.sort(key=lambda n: natural_key(n.get("Name") or ""))
    rows = [NetworkRow(n, not opts["no_trunc"]) for n in nets]
    fmt = opts["format"] or "table"
    if opts["quiet"] and fmt == "table":
        fmt = "{{.ID}}"
    elif fmt == "table":
        fmt = DEFAULT_FORMAT
    elif fmt == "json":
        fmt = "{{json .}}"
    cli.out.write(render(fmt, rows, HEADERS))
    return 0
