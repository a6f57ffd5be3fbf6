"""Network routes: list, inspect, create, remove, connect, disconnect, prune."""

from __future__ import annotations

from berth.api.http import Request, Response, json_response, no_content
from berth.api.router import Router
from berth.api.routes._util import method, result
from berth.errors import InvalidArgument


async def list_(req: Request, engine) -> Response:
    return json_response(await result(method(engine, "list_networks")(req.filters())))


async def inspect(req: Request, engine) -> Response:
    return json_response(await result(method(engine, "inspect_network")(req.vars["id"])))


async def create(req: Request, engine) -> Response:
    body = await req.json(default={})
    return json_response(await result(method(engine, "create_network")(body)), 201)


async def remove(req: Request, engine) -> Response:
    await result(method(engine, "remove_network")(req.vars["id"]))
    return no_content()


async def connect(req: Request, engine) -> Response:
    body = await req.json(default={})
    if not body.get("Container"):
        raise InvalidArgument("container is required")
    fn = method(engine, "connect_network")
    await result(fn(req.vars["id"], body["Container"], body.get("EndpointConfig")))
    return Response(200)


async def disconnect(req: Request, engine) -> Response:
    body = await req.json(default={})
    if not body.get("Container"):
        raise InvalidArgument("container is required")
    fn = method(engine, "disconnect_network")
    await result(fn(req.vars["id"], body["Container"], bool(body.get("Force"))))
    return Response(200)


async def prune(req: Request, engine) -> Response:
    return json_response(await result(method(engine, "prune_networks")(req.filters())))


def register(r: Router) -> None:
    r.add("GET", "/networks", list_)
    r.add("POST", "/networks/create", create)
    r.add("POST", "/networks/prune", prune)
    r.add("GET", "/networks/{id}", inspect)
    r.add("DELETE", "/networks/{id}", remove)
    r.add("POST", "/networks/{id}/connect", connect)
    r.add("POST", "/networks/{id}/disconnect", disconnect)
