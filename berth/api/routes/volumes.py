"""Volume routes: list, create, inspect, remove, prune."""

from __future__ import annotations

from berth.api.http import Request, Response, json_response, no_content
from berth.api.router import Router
from berth.api.routes._util import method, result


async def list_(req: Request, engine) -> Response:
    return json_response(await result(method(engine, "list_volumes")(req.filters())))


async def create(req: Request, engine) -> Response:
    body = await req.json(default={})
    return json_response(await result(method(engine, "create_volume")(body)), 201)


async def inspect(req: Request, engine) -> Response:
    return json_response(await result(method(engine, "inspect_volume")(req.vars["name"])))


async def remove(req: Request, engine) -> Response:
    await result(method(engine, "remove_volume")(req.vars["name"], force=req.qbool("force")))
    return no_content()


async def prune(req: Request, engine) -> Response:
    return json_response(await result(method(engine, "prune_volumes")(req.filters())))


def register(r: Router) -> None:
    r.add("GET", "/volumes", list_)
    r.add("POST", "/volumes/create", create)
    r.add("POST", "/volumes/prune", prune)
    r.add("GET", "/volumes/{name}", inspect)
    r.add("DELETE", "/volumes/{name}", remove)
