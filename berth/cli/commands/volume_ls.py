"""berth volume ls: list volumes (DRIVER VOLUME NAME; ``-q``; filters dangling, name, label, driver)."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("--cluster",), "cluster", bool, help="Display only cluster volumes"),
    Flag(("-f", "--filter"), "filter", list, help='Provide filter values (e.g. "dangling=true")'),
    Flag(("--format",), "format", str, help="Format output using a custom template"),
    Flag(("-q", "--quiet"), "quiet", bool, help="Only display volume names"),
]
USAGE = "[OPTIONS]"
SUMMARY = "List volumes"
MAX_ARGS = 0

DEFAULT_FORMAT = "table {{.Driver}}\t{{.Name}}"
HEADERS = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT",
           "Labels": "LABELS", "Links": "LINKS", "Size": "SIZE", "Group": "GROUP",
           "Availability": "AVAILABILITY", "Status": "STATUS", "CreatedAt": "CREATED AT"}


class VolumeRow:
    """The fields a volume ls template sees (docker's volumeContext)."""

    def __init__(self, v: dict) -> None:
        self.v = v

    def _get(self, key: str) -> str:
        return self.v.get(key) or ""

    @property
    def Name(self) -> str:
        return self._get("Name")

    @property
    def Driver(self) -> str:
        return self._get("Driver")

    @property
    def Scope(self) -> str:
        return self._get("Scope")

    @property
    def Mountpoint(self) -> str:
        return self._get("Mountpoint")

    @property
    def CreatedAt(self) -> str:
        return self._get("CreatedAt")

    @property
    def Labels(self) -> str:
        return ",".join(f"{k}={v}" for k, v in (self.v.get("Labels") or {}).items())

    @property
    def Label(self):
        return lambda name: (self.v.get("Labels") or {}).get(name, "")

    @property
    def Links(self) -> str:
        u = self.v.get("UsageData")
        return "N/A" if not u else str(u.get("RefCount", -1))

    @property
    def Size(self) -> str:
        u = self.v.get("UsageData")
        if not u or (u.get("Size") or 0) < 0:
            return "N/A"
        from berth.cli.format import human_size
        return human_size(u["Size"], 4)

    def _cluster(self, key: str) -> str:
        """Cluster-volume fields; "N/A" for local volumes, as docker prints them."""
        cv = self.v.get("ClusterVolume")
        if not cv:
            return "N/A"
        return str((cv.get("Spec") or {}).get(key) or "")

    @property
    def Group(self) -> str:
        return self._cluster("Group")

    @property
    def Availability(self) -> str:
        return self._cluster("Availability")

    @property
    def Status(self) -> str:
        cv = self.v.get("ClusterVolume")
        return "N/A" if not cv else str(((cv.get("PublishStatus") or [{}])[0] or {}).get("State") or "")

    def as_dict(self) -> dict:
        keys = ("Availability", "Driver", "Group", "Labels", "Links", "Mountpoint", "Name", "Scope", "Size",
                "Status")
        return {k: getattr(self, k) for k in keys}


def run(cli, opts, args) -> int:
    from berth.cli.commands.network_ls import natural_key
    from berth.cli.commands.ps import parse_filters
    from berth.cli.format import render
    from berth.client.resources import Volumes
    vols = list(Volumes(cli.client.transport).list(parse_filters(opts["filter"])).get("Volumes") or [])
    vols.sort(key=lambda v: natural_key(v.get("Name") or ""))
    rows = [VolumeRow(v) for v in vols]
    fmt = opts["format"] or "table"
    if opts["quiet"] and fmt == "table":
        fmt = "{{.Name}}"
    elif fmt == "table":
        fmt = DEFAULT_FORMAT
    elif fmt == "json":
        fmt = "{{json .}}"
    cli.out.write(render(fmt, rows, HEADERS))
    return 0
