"""berth images: list images (docker's columns, -q, --no-trunc, --digests, filters, --format)."""

from __future__ import annotations

import time

from berth.cli.flags import Flag

FLAGS = [
    Flag(("-a", "--all"), "all", bool, help="Show all images (default hides intermediate images)"),
    Flag(("--digests",), "digests", bool, help="Show digests"),
    Flag(("-f", "--filter"), "filter", list, help="Filter output based on conditions provided"),
    Flag(("--format",), "format", str, help="Format output using a custom template"),
    Flag(("--no-trunc",), "no_trunc", bool, help="Don't truncate output"),
    Flag(("-q", "--quiet"), "quiet", bool, help="Only show image IDs"),
]
USAGE = "[OPTIONS] [REPOSITORY[:TAG]]"
SUMMARY = "List images"
MAX_ARGS = 1

DEFAULT_FORMAT = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
DIGEST_FORMAT = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "Digest": "DIGEST",
           "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE", "Containers": "CONTAINERS",
           "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE"}


class ImageRow:
    """The fields an images template sees (docker's imageContext)."""

    def __init__(self, img: dict, repo: str, tag: str, digest: str, trunc: bool = True,
                 now: float | None = None) -> None:
        self.i, self.Repository, self.Tag, self.Digest = img, repo, tag, digest
        self.trunc, self.now = trunc, time.time() if now is None else now

    @property
    def ID(self) -> str:
        i = self.i.get("Id", "")
        return i.removeprefix("sha256:")[:12] if self.trunc else i

    @property
    def CreatedSince(self) -> str:
        from berth.cli.format import human_duration
        return human_duration(self.now - self.i.get("Created", 0)) + " ago"

    @property
    def CreatedAt(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(self.i.get("Created", 0)))

    @property
    def Size(self) -> str:
        from berth.cli.format import human_size
        return human_size(self.i.get("Size", 0))

    VirtualSize = Size

    @property
    def SharedSize(self) -> str:
        from berth.cli.format import human_size
        s = self.i.get("SharedSize", -1)
        return "N/A" if s is None or s < 0 else human_size(s)

    @property
    def UniqueSize(self) -> str:
        from berth.cli.format import human_size
        s = self.i.get("SharedSize", -1)
        return "N/A" if s is None or s < 0 else human_size(self.i.get("Size", 0) - s)

    @property
    def Containers(self) -> str:
        c = self.i.get("Containers", -1)
        return "N/A" if c is None or c < 0 else str(c)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("Containers", "CreatedAt", "CreatedSince", "Digest", "ID",
                                              "Repository", "SharedSize", "Size", "Tag", "UniqueSize",
                                              "VirtualSize")}


def rows_for(images: list[dict], trunc: bool) -> list[ImageRow]:
    rows = []
    for img in images:
        tags = img.get("RepoTags") or []
        digests = img.get("RepoDigests") or []
        if not tags:
            repo = digests[0].split("@")[0] if digests else "<none>"
            dig = digests[0].split("@", 1)[1] if digests else "<none>"
            rows.append(ImageRow(img, repo, "<none>", dig, trunc))
            continue
        for t in tags:
            repo, _, tag = t.rpartition(":")
            if "/" in tag or not repo:
                repo, tag = t, "<none>"
            dig = next((d.split("@", 1)[1] for d in digests if d.split("@")[0] == repo), "<none>")
            rows.append(ImageRow(img, repo, tag, dig, trunc))
    return rows


def run(cli, opts, args) -> int:
    from berth.cli.commands.ps import parse_filters
    from berth.cli.format import render
    filters = parse_filters(opts["filter"])
    if args:
        filters.setdefault("reference", []).append(args[0])
    images = cli.client.images.list(all=opts["all"], filters=filters, digests=opts["digests"])
    rows = rows_for(images, not opts["no_trunc"])
    if opts["quiet"] and not opts["format"]:
        seen = set()
        for r in rows:
            if r.ID not in seen:
                seen.add(r.ID)
                cli.print(r.ID)
        return 0
    fmt = opts["format"] or (DIGEST_FORMAT if opts["digests"] else DEFAULT_FORMAT)
    if fmt == "table":
        fmt = DEFAULT_FORMAT
    cli.out.write(render(fmt, rows, HEADERS))
    return 0
