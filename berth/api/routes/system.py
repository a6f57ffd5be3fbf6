"""System routes: _ping, version, info, events."""

from __future__ import annotations

import re

from berth.api.http import Request, Response, json_response
from berth.api.router import Router
from berth.errors import InvalidArgument

_RFC3339_FRAC = re.compile(r"T\d\d:\d\d:\d\d\.(\d+)")
_PING_HEADERS = [("Cache-Control", "no-cache, no-store, must-revalidate"), ("Pragma", "no-cache"),
                 ("Builder-Version", "1"), ("Swarm", "inactive")]


async def ping(req: Request, engine) -> Response:
    """HEAD → 200 with Content-Length 0; GET → "OK"; 500 when the engine says it cannot serve."""
    status, body = 200, b"OK"
    try:
        engine.ping()
    except Exception as e:  # noqa: BLE001 - any engine failure is a 500 ping
        status, body = 500, str(e).encode() or b"engine unavailable"
    if req.method == "HEAD":
        body = b""
    return Response(status, body, headers=list(_PING_HEADERS) + [("Content-Length", str(len(body)))],
                    content_type="text/plain; charset=utf-8")


_ENGINE_DETAILS = ("ApiVersion", "MinAPIVersion", "GitCommit", "GoVersion", "Os", "Arch", "KernelVersion",
                   "BuildTime")


async def version(req: Request, engine) -> Response:
    """The Engine component's Details carry every field `docker version` prints, as strings."""
    v = engine.version()
    for comp in v.get("Components") or []:
        if comp.get("Name") == "Engine":
            details = comp.setdefault("Details", {})
            for key in _ENGINE_DETAILS:
                if key in v:
                    details[key] = str(v[key])
            details.setdefault("Experimental", "false")
    return json_response(v)


async def info(req: Request, engine) -> Response:
    return json_response(engine.info())


def time_arg(value: str | None, name: str) -> float | None:
    """since/until: unix seconds with an optional fraction (moby also accepts RFC 3339 here)."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    from datetime import datetime
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidArgument(f"invalid {name} value {value!r}") from None


def time_arg_ns(value: str | None, name: str) -> int | None:
    """since/until as exact integer nanoseconds ("sec.nanos" as the docker CLI sends, or RFC 3339).

    A float cannot hold nanoseconds at today's epoch (about 240 ns apart), so a record whose time
    is exactly `since` or `until` (both inclusive in moby) can fall out of the window.
    """
    if value is None or value == "":
        return None
    sec, dot, frac = value.partition(".")
    if sec.lstrip("-").isdigit() and (not dot or frac.isdigit()):
        ns = int((frac + "000000000")[:9]) if dot else 0
        return int(sec) * 1_000_000_000 + (ns if not sec.startswith("-") else -ns)
    m = _RFC3339_FRAC.search(value)
    whole = value if m is None else value[:m.start(1) - 1] + value[m.end(1):]  # seconds: exact in a float
    t = time_arg(whole, name)
    assert t is not None
    return int(t) * 1_000_000_000 + (int((m.group(1) + "000000000")[:9]) if m else 0)


async def events(req: Request, engine) -> None:
    since = time_arg(req.q("since"), "since")
    until = time_arg(req.q("until"), "until")
    if since is not None and until is not None and until < since:
        raise InvalidArgument("`since` time must be before `until`")
    filters = req.filters()
    out = await req.start_stream()
    async for ev in engine.events(since, until, filters):
        await out.send_json(ev)
        if until is not None and ev.get("time", 0) > until:
            break
    await out.end()


def register(r: Router) -> None:
    r.add("GET", "/_ping", ping)
    r.add("HEAD", "/_ping", ping)
    r.add("GET", "/version", version)
    r.add("GET", "/info", info)
    r.add("GET", "/events", events)
