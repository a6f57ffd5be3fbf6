"""berth system df: disk usage of images, containers, volumes and the build cache (docker's table)."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("--format",), "format", str, help="Format output using a custom template"),
    Flag(("-v", "--verbose"), "verbose", bool, help="Show detailed information on space usage"),
]
USAGE = "[OPTIONS]"
SUMMARY = "Show berth disk usage"
MAX_ARGS = 0

DEFAULT_FORMAT = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
HEADERS = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
           "Reclaimable": "RECLAIMABLE"}


def _hs(n: float) -> str:
    from berth.cli.format import human_size

    return human_size(n, 4)


def _pct(reclaimable: int, total: int) -> str:
    if total > 0:
        return f"{_hs(reclaimable)} ({reclaimable * 100 // total}%)"
    return _hs(reclaimable)


class Row:
    """One line of the summary (docker's diskUsage*Context)."""

    def __init__(self, type_: str, total: int, active: int, size: str, reclaimable: str) -> None:
        self.Type, self.TotalCount, self.Active = type_, str(total), str(active)
        self.Size, self.Reclaimable = size, reclaimable

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("Active", "Reclaimable", "Size", "TotalCount", "Type")}


def rows(df: dict) -> list[Row]:
    images = df.get("Images") or []
    layers = int(df.get("LayersSize") or 0)
    used = sum(i.get("Size", 0) - i.get("SharedSize", 0) for i in images
               if i.get("Containers") and i.get("Size", -1) != -1 and i.get("SharedSize", -1) != -1)
    out = [Row("Images", len(images), sum(1 for i in images if (i.get("Containers") or 0) > 0),
               _hs(layers), _pct(layers - used, layers))]

    cs = df.get("Containers") or []

    def active(c: dict) -> bool:
        s = c.get("State") or ""
        return any(w in s for w in ("running", "paused", "restarting"))

    csize = sum(int(c.get("SizeRw") or 0) for c in cs)
    crecl = sum(int(c.get("SizeRw") or 0) for c in cs if not active(c))
    out.append(Row("Containers", len(cs), sum(1 for c in cs if active(c)), _hs(csize), _pct(crecl, csize)))

    vs = df.get("Volumes") or []

    def usage(v: dict) -> dict:
        return v.get("UsageData") or {"Size": -1, "RefCount": -1}

    vsize = sum(usage(v)["Size"] for v in vs if usage(v)["Size"] != -1)
    vrecl = sum(usage(v)["Size"] for v in vs if usage(v)["RefCount"] == 0 and usage(v)["Size"] != -1)
    out.append(Row("Local Volumes", len(vs), sum(1 for v in vs if usage(v)["RefCount"] > 0), _hs(vsize),
                   _pct(vrecl, vsize)))

    bc = df.get("BuildCache") or []
    bsize = sum(int(b.get("Size") or 0) for b in bc if not b.get("Shared"))
    in_use = sum(int(b.get("Size") or 0) for b in bc if b.get("InUse") and not b.get("Shared"))
    out.append(Row("Build Cache", len(bc), sum(1 for b in bc if b.get("InUse")), _hs(bsize),
                   _hs(bsize - in_use)))
    return out


def verbose(cli, df: dict) -> None:
    import time

    from berth.cli.format import ellipsis, human_duration, human_size, render

    now = time.time()

    def since(ts: float) -> str:
        return human_duration(now - ts) + " ago"

    cli.print("Images space usage:\n")
    lines = []
    for i in df.get("Images") or []:
        tags = i.get("RepoTags") or ["<none>:<none>"]
        for t in tags:
            repo, _, tag = t.rpartition(":")
            lines.append({"Repository": repo or t, "Tag": tag if repo else "<none>",
                          "ID": i["Id"].removeprefix("sha256:")[:12], "Created": since(i.get("Created", 0)),
                          "Size": human_size(i.get("Size", 0)), "Shared": human_size(i.get("SharedSize", 0)),
                          "Unique": human_size(i.get("Size", 0) - i.get("SharedSize", 0)),
                          "Containers": str(i.get("Containers", 0))})
    cli.out.write(render("table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Created}}\t{{.Size}}\t{{.Shared}}\t"
                         "{{.Unique}}\t{{.Containers}}", lines,
                         {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "Created": "CREATED",
                          "Size": "SIZE", "Shared": "SHARED SIZE", "Unique": "UNIQUE SIZE",
                          "Containers": "CONTAINERS"}))
    cli.print("\nContainers space usage:\n")
    lines = [{"ID": c["Id"][:12], "Image": _short(c.get("Image", "")),
              "Command": '"' + ellipsis(c.get("Command", ""), 20) + '"',
              "Volumes": str(len(c.get("Mounts") or [])), "Size": _hs(c.get("SizeRw") or 0),
              "Created": since(c.get("Created", 0)), "Status": c.get("Status", ""),
              "Names": (c.get("Names") or ["/"])[0].lstrip("/")} for c in df.get("Containers") or []]
    cli.out.write(render("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.Volumes}}\t{{.Size}}\t{{.Created}}\t"
                         "{{.Status}}\t{{.Names}}", lines,
                         {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
                          "Volumes": "LOCAL VOLUMES", "Size": "SIZE", "Created": "CREATED",
                          "Status": "STATUS", "Names": "NAMES"}))
    cli.print("\nLocal Volumes space usage:\n")
    lines = [{"Name": v.get("Name", ""), "Links": str((v.get("UsageData") or {}).get("RefCount", 0)),
              "Size": _hs(max(0, (v.get("UsageData") or {}).get("Size", 0)))}
             for v in df.get("Volumes") or []]
    cli.out.write(render("table {{.Name}}\t{{.Links}}\t{{.Size}}", lines,
                         {"Name": "VOLUME NAME", "Links": "LINKS", "Size": "SIZE"}))
    cli.print("\nBuild cache usage: " + rows(df)[3].Size + "\n")
    lines = [{"ID": b["ID"].removeprefix("sha256:")[:12], "Type": b.get("Type", ""),
              "Size": _hs(b.get("Size", 0)), "Created": since(_ts(b.get("CreatedAt"))),
              "LastUsed": since(_ts(b.get("LastUsedAt"))) if b.get("LastUsedAt") else "",
              "Usage": str(b.get("UsageCount", 0)),
              "Shared": "true" if b.get("Shared") else "false"} for b in df.get("BuildCache") or []]
    cli.out.write(render("table {{.ID}}\t{{.Type}}\t{{.Size}}\t{{.Created}}\t{{.LastUsed}}\t{{.Usage}}\t"
                         "{{.Shared}}", lines,
                         {"ID": "CACHE ID", "Type": "CACHE TYPE", "Size": "SIZE", "Created": "CREATED",
                          "LastUsed": "LAST USED", "Usage": "USAGE", "Shared": "SHARED"}))


def _short(image: str) -> str:
    return image[7:19] if image.startswith("sha256:") else image


def _ts(text: str | None) -> float:
    """An RFC 3339 time (nanoseconds allowed) as unix seconds; 0 when unreadable."""
    from datetime import datetime

    if not text:
        return 0.0
    t = text.replace("Z", "+00:00")
    head, dot, rest = t.partition(".")
    if dot:
        frac = "".join(ch for ch in rest if ch.isdigit())
        t = head + "." + frac[:6] + rest[len(frac):]
    try:
        return datetime.fromisoformat(t).timestamp()
    except ValueError:
        return 0.0


def run(cli, opts, args) -> int:
    from berth.cli.format import render

    df = cli.client.transport.request("GET", "/system/df", timeout=None).json() or {}
    if opts["verbose"] and not opts["format"]:
        verbose(cli, df)
        return 0
    fmt = opts["format"] or DEFAULT_FORMAT
    if fmt == "table":
        fmt = DEFAULT_FORMAT
    cli.out.write(render(fmt, rows(df), HEADERS))
    return 0
