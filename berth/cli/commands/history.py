"""berth history: show the history of an image (IMAGE CREATED CREATED BY SIZE COMMENT)."""

from __future__ import annotations

import time

from berth.cli.flags import Flag

FLAGS = [
    Flag(("--format",), "format", str, help="Format output using a custom template"),
    Flag(("-H", "--human"), "human", bool, True, help="Print sizes and dates in human readable format"),
    Flag(("--no-trunc",), "no_trunc", bool, help="Don't truncate output"),
    Flag(("--platform",), "platform", str, help="Show history for the given platform"),
    Flag(("-q", "--quiet"), "quiet", bool, help="Only show image IDs"),
]
USAGE = "[OPTIONS] IMAGE"
SUMMARY = "Show the history of an image"
MIN_ARGS = MAX_ARGS = 1

HUMAN_FORMAT = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
RAW_FORMAT = "table {{.ID}}\t{{.CreatedAt}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY",
           "Size": "SIZE", "Comment": "COMMENT"}


class HistoryRow:
    """The fields a history template sees (docker's historyContext)."""

    def __init__(self, h: dict, trunc: bool = True, human: bool = True, now: float | None = None) -> None:
        self.h, self.trunc, self.human = h, trunc, human
        self.now = time.time() if now is None else now

    @property
    def ID(self) -> str:
        i = self.h.get("Id") or ""
        if self.trunc and i != "<missing>":
            return i.partition(":")[2][:12] if ":" in i else i[:12]
        return i

    @property
    def CreatedAt(self) -> str:
        from berth.cli.format import rfc3339
        return rfc3339(self.h.get("Created") or 0)

    @property
    def CreatedSince(self) -> str:
        if not self.human:
            return self.CreatedAt
        from berth.cli.format import human_duration
        return human_duration(self.now - (self.h.get("Created") or 0)) + " ago"

    @property
    def CreatedBy(self) -> str:
        from berth.cli.format import ellipsis
        by = (self.h.get("CreatedBy") or "").replace("\t", " ")
        return ellipsis(by, 45) if self.trunc else by

    @property
    def Size(self) -> str:
        size = self.h.get("Size") or 0
        if self.human:
            from berth.cli.format import human_size
            return human_size(size)
        return str(size)

    @property
    def Comment(self) -> str:
        return self.h.get("Comment") or ""

    def as_dict(self) -> dict:
        keys = ("Comment", "CreatedAt", "CreatedBy", "CreatedSince", "ID", "Size")
        return {k: getattr(self, k) for k in keys}


def run(cli, opts, args) -> int:
    from berth.cli.format import render
    hist = cli.client.images.history(args[0])
    rows = [HistoryRow(h, not opts["no_trunc"], opts["human"]) for h in hist or []]
    fmt = opts["format"] or "table"
    if fmt == "table":
        fmt = "{{.ID}}" if opts["quiet"] else HUMAN_FORMAT if opts["human"] else RAW_FORMAT
    elif fmt == "json":
        fmt = "{{json .}}"
    cli.out.write(render(fmt, rows, HEADERS))
    return 0
