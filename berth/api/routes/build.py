"""Build, auth and system df routes."""

from __future__ import annotations

import json
from typing import Any

from berth.api.http import Request, Response, decode_registry_auth, json_response
from berth.api.router import Router
from berth.api.routes._util import method, result
from berth.api.streams import stream_messages
from berth.errors import InvalidArgument

_BOOL_KEYS = ("q", "nocache", "forcerm", "pull", "squash")
_INT_KEYS = ("shmsize", "memory", "memswap", "cpushares", "cpuperiod", "cpuquota")
_STR_KEYS = ("dockerfile", "target", "networkmode", "platform", "remote", "cpusetcpus", "cpusetmems",
             "extrahosts", "version", "isolation", "cgroupparent", "outputs")
_JSON_KEYS = {"buildargs": dict, "labels": dict, "cachefrom": list, "ulimits": list}


def build_options(req: Request) -> dict[str, Any]:
    """The query of POST /build, decoded: tags list, JSON maps, moby booleans (``rm`` defaults to true)."""
    opts: dict[str, Any] = {"t": req.qlist("t"), "rm": req.qbool("rm", default=True)}
    for k in _BOOL_KEYS:
        opts[k] = req.qbool(k)
    for k in _INT_KEYS:
        opts[k] = req.qint(k)
    for k in _STR_KEYS:
        opts[k] = req.q(k) or None
    for k, typ in _JSON_KEYS.items():
        raw = req.q(k)
        if not raw:
            opts[k] = typ()
            continue
        try:
            val = json.loads(raw)
        except ValueError:
            raise InvalidArgument(f"invalid {k}: {raw!r}") from None
        if val is None:
            val = typ()
        if not isinstance(val, typ):
            raise InvalidArgument(f"invalid {k}: expected a JSON {'object' if typ is dict else 'list'}")
        opts[k] = val
    opts["dockerfile"] = opts["dockerfile"] or "Dockerfile"
    return opts


async def build(req: Request, engine) -> None:
    opts = build_options(req)
    registry = decode_registry_auth(req.header("x-registry-config"))
    fn = method(engine, "build")
    await stream_messages(req, fn(req.stream(), opts, registry))


async def auth(req: Request, engine) -> Response:
    body = await req.json(default={})
    return json_response(await result(method(engine, "auth")(body)))


async def system_df(req: Request, engine) -> Response:
    return json_response(await result(method(engine, "system_df")()))


def register(r: Router) -> None:
    r.add("POST", "/build", build)
    r.add("POST", "/auth", auth)
    r.add("GET", "/system/df", system_df)
