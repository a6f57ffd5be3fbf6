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


async def build_prune(req: Request, engine) -> Response:
    """POST /build/prune (``all``, ``filters``, ``keep-storage``) → BuildPruneResponse."""
    keep = req.qint("keep-storage")
    if keep is not None and keep < 0:
        raise InvalidArgument(f"invalid keep-storage: {keep}")
    out = await result(method(engine, "prune_build_cache")(all=req.qbool("all"), filters=req.filters(),
                                                           keep_storage=keep))
    return json_response(out)


async def build_cancel(req: Request, engine) -> Response:
    """POST /build/cancel?id=: a classic build stops when its client disconnects; accepted as a no-op."""
    fn = getattr(engine, "build_cancel", None)
    if fn is not None:
        await result(fn(req.q("id")))
    return json_response({})


async def auth(req: Request, engine) -> Response:
    body = await req.json(default={})
    return json_response(await result(method(engine, "auth")(body)))


_DF_TYPES = ("container", "image", "volume", "build-cache")


async def system_df(req: Request, engine) -> Response:
    types = req.qlist("type")
    for t in types:
        if t not in _DF_TYPES:
            raise InvalidArgument(f"unknown object type: {t}")
    fn = method(engine, "system_df")
    return json_response(await result(fn(types) if types else fn()))


def register(r: Router) -> None:
    r.add("POST", "/build", build)
    r.add("POST", "/build/prune", build_prune)
    r.add("POST", "/build/cancel", build_cancel)
    r.add("POST", "/auth", auth)
    r.add("GET", "/system/df", system_df)
