"""Image routes: list, inspect, tag, rm, history, pull/import, push, load, save."""

from __future__ import annotations

from berth.api.http import Request, Response, json_response
from berth.api.router import Router
from berth.api.routes._util import method, result, stream_bytes
from berth.api.streams import stream_messages
from berth.errors import InvalidArgument


async def list_(req: Request, engine) -> Response:
    return json_response(engine.list_images(all=req.qbool("all"), filters=req.filters(),
                                            digests=req.qbool("digests")))


async def inspect(req: Request, engine) -> Response:
    return json_response(engine.inspect_image(req.vars["name"]))


async def history(req: Request, engine) -> Response:
    return json_response(engine.image_history(req.vars["name"]))


async def tag(req: Request, engine) -> Response:
    repo = req.q("repo")
    if not repo:
        raise InvalidArgument("repository name must have at least one component")
    engine.tag_image(req.vars["name"], repo, req.q("tag") or None)
    return Response(201)


async def remove(req: Request, engine) -> Response:
    return json_response(engine.remove_image(req.vars["name"], force=req.qbool("force"),
                                             noprune=req.qbool("noprune")))


async def create(req: Request, engine) -> None:
    """Pull (``fromImage``) or import (``fromSrc=-`` with the tar as body), as a message stream."""
    src, image = req.q("fromSrc"), req.q("fromImage")
    if image:
        msgs = engine.pull(image, req.q("tag") or None, req.q("platform") or None, req.registry_auth())
    elif src:
        if src != "-":
            raise InvalidArgument("importing from a URL is not supported")
        msgs = engine.import_image(req.stream(), req.q("repo") or None, req.q("tag") or None,
                                   req.q("message") or None, req.qlist("changes"))
    else:
        raise InvalidArgument("one of fromImage or fromSrc is required")
    await stream_messages(req, msgs)


async def push(req: Request, engine) -> None:
    await stream_messages(req, engine.push(req.vars["name"], req.q("tag") or None, req.registry_auth()))


async def load(req: Request, engine) -> None:
    await stream_messages(req, engine.load_images(req.stream(), req.qbool("quiet")))


async def save(req: Request, engine) -> None:
    names = req.qlist("names") or ([req.vars["name"]] if "name" in req.vars else [])
    if not names:
        raise InvalidArgument("no image names given")
    await stream_bytes(req, engine.save_images(names), "application/x-tar")


async def prune(req: Request, engine) -> Response:
    return json_response(await result(method(engine, "prune_images")(req.filters())))


async def bootstrap(req: Request, engine) -> Response:
    """berth's own: make a base image locally (busybox from busybox-static, debian via debootstrap)."""
    import asyncio

    name = req.q("name") or "busybox"
    return json_response(await asyncio.to_thread(engine.bootstrap_image, name))


def register(r: Router) -> None:
    r.add("POST", "/berth/images/bootstrap", bootstrap)
    r.add("GET", "/images/json", list_)
    r.add("POST", "/images/create", create)
    r.add("POST", "/images/load", load)
    r.add("POST", "/images/prune", prune)
    r.add("GET", "/images/get", save)
    r.add("GET", "/images/{name:*}/json", inspect)
    r.add("GET", "/images/{name:*}/history", history)
    r.add("GET", "/images/{name:*}/get", save)
    r.add("POST", "/images/{name:*}/tag", tag)
    r.add("POST", "/images/{name:*}/push", push)
    r.add("DELETE", "/images/{name:*}", remove)
