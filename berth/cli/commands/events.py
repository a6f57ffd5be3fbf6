"""berth events: stream the engine's events (docker's line format; until ``--until`` or Ctrl-C)."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("-f", "--filter"), "filter", list, help="Filter output based on conditions provided"),
    Flag(("--format",), "format", str, help="Format output using a custom template"),
    Flag(("--since",), "since", str, help="Show all events created since timestamp"),
    Flag(("--until",), "until", str, help="Stream events until this timestamp"),
]
USAGE = "[OPTIONS]"
SUMMARY = "Get real time events from the server"
MAX_ARGS = 0

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str) -> float | None:
    """Go's time.ParseDuration ("1h30m", "-1.5s", "300ms") in seconds; None if it is not one."""
    import re
    m = re.fullmatch(r"([-+]?)((?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)", value)
    if not m:
        return None
    parts = re.findall(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)", m.group(2))
    total = sum(float(n) * _UNITS[u] for n, u in parts)
    return -total if m.group(1) == "-" else total


def timestamp_arg(value: str, now: float | None = None) -> str:
    """timetypes.GetTimestamp: a duration (relative to now), an RFC 3339 date/time (local when it has
    no zone), or unix seconds → the ``seconds[.nanoseconds]`` string the API takes."""
    import re
    import time
    from datetime import datetime

    from berth.cli.context import CliError
    now = time.time() if now is None else now
    d = parse_duration(value) if value != "0" else None
    if d is not None:
        return str(int(now - d))
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return value
    text = value[:-1] + "+00:00" if value[-1:] in "zZ" else value
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        if "-" in value:
            raise CliError(f'parsing time "{value}": cannot parse as a date/time') from None
        raise CliError(f'failed to parse value as time or duration: "{value}"') from None
    ts = t.timestamp()
    secs = int(ts // 1)
    return f"{secs}.{t.microsecond * 1000:09d}"


def event_line(ev: dict) -> str:
    """docker's prettyPrintEvent: ``<RFC3339NanoFixed> <type> <action> <id> (k=v, ...)``."""
    from berth.cli.format import rfc3339
    parts = []
    if ev.get("timeNano"):
        parts.append(rfc3339(0, int(ev["timeNano"]), fixed=True) + " ")
    elif ev.get("time"):
        parts.append(rfc3339(int(ev["time"]), int(ev["time"]) * 1_000_000_000, fixed=True) + " ")
    actor = ev.get("Actor") or {}
    parts.append(f"{ev.get('Type', '')} {ev.get('Action', '')} {actor.get('ID', '')}")
    attrs = actor.get("Attributes") or {}
    if attrs:
        parts.append(" (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")")
    return "".join(parts)


class EventRow:
    """An event as a template sees docker's events.Message (Go field names; ``json`` gives the wire form)."""

    _FIELDS = {"Status": "status", "ID": "id", "From": "from", "Type": "Type", "Action": "Action",
               "Actor": "Actor", "Scope": "scope", "Time": "time", "TimeNano": "timeNano"}

    def __init__(self, ev: dict) -> None:
        self.ev = ev

    def __getattr__(self, name: str):
        key = EventRow._FIELDS.get(name)
        if key is None:
            raise AttributeError(name)
        v = self.ev.get(key)
        return "" if v is None and name not in ("Time", "TimeNano") else v

    def as_dict(self) -> dict:
        """The message in events.Message's field order (``omitempty`` fields dropped, attributes sorted)."""
        ev = self.ev
        out: dict = {k: ev[k] for k in ("status", "id", "from") if ev.get(k)}
        actor = ev.get("Actor") or {}
        attrs = actor.get("Attributes") or {}
        out.update({"Type": ev.get("Type", ""), "Action": ev.get("Action", ""),
                    "Actor": {"ID": actor.get("ID", ""), "Attributes": {k: attrs[k] for k in sorted(attrs)}}})
        out.update({k: ev[k] for k in ("scope", "time", "timeNano") if ev.get(k)})
        return out


def run(cli, opts, args) -> int:
    from berth.cli.commands.ps import parse_filters
    from berth.client.resources import System
    since = timestamp_arg(opts["since"]) if opts["since"] else None
    until = timestamp_arg(opts["until"]) if opts["until"] else None
    tmpl = None
    if opts["format"]:
        from berth.cli.format import Template
        fmt = "{{json .}}" if opts["format"] == "json" else opts["format"]
        tmpl = Template(fmt.replace("\\t", "\t").replace("\\n", "\n"))
    for ev in System(cli.client.transport).events(since, until, parse_filters(opts["filter"])):
        cli.out.write((tmpl.execute(EventRow(ev)) if tmpl else event_line(ev)) + "\n")
        cli.out.flush()
    return 0
