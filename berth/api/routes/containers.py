"""Container routes: create, start, stop, kill, rm, ps, inspect, wait, attach, logs, resize..."""

from __future__ import annotations

import asyncio

from berth.api.http import Request, Response, json_response, no_content
from berth.api.router import Router
from berth.api.streams import MULTIPLEXED, RAW_STREAM, StdioStreams, frame, parse_detach_keys
from berth.errors import InvalidArgument, NotModified

WAIT_CONDITIONS = ("not-running", "next-exit", "removed")


async def create(req: Request, engine) -> Response:
    config = await req.json(default={})
    name = req.q("name") or None
    result = engine.create_container(name, config, req.q("platform") or None)
    return json_response(result, 201)


async def list_(req: Request, engine) -> Response:
    limit = req.qint("limit", None)
    if limit is not None and limit <= 0:
        limit = None
    return json_response(engine.list_containers(all=req.qbool("all"), limit=limit, size=req.qbool("size"),
                                                 filters=req.filters()))


async def inspect(req: Request, engine) -> Response:
    return json_response(engine.inspect_container(req.vars["id"], size=req.qbool("size")))


async def _no_op_ok(coro) -> Response:
    try:
        await coro
    except NotModified:
        return no_content(304)
    return no_content()


async def start(req: Request, engine) -> Response:
    await req.body(64 * 1024)  # old clients sent a HostConfig here; ignored as in moby ≥1.24
    return await _no_op_ok(engine.start(req.vars["id"]))


async def stop(req: Request, engine) -> Response:
    return await _no_op_ok(engine.stop(req.vars["id"], req.qint("t"), req.q("signal") or None))


async def restart(req: Request, engine) -> Response:
    await engine.restart(req.vars["id"], req.qint("t"), req.q("signal") or None)
    return no_content()


async def kill(req: Request, engine) -> Response:
    await engine.kill(req.vars["id"], req.q("signal") or None)
    return no_content()


async def pause(req: Request, engine) -> Response:
    await engine.pause(req.vars["id"])
    return no_content()


async def unpause(req: Request, engine) -> Response:
    await engine.unpause(req.vars["id"])
    return no_content()


async def remove(req: Request, engine) -> Response:
    await engine.remove(req.vars["id"], force=req.qbool("force"), volumes=req.qbool("v"),
                        link=req.qbool("link"))
    return no_content()


async def rename(req: Request, engine) -> Response:
    name = req.q("name")
    if not name:
        raise InvalidArgument("name cannot be empty")
    engine.rename(req.vars["id"], name)
    return no_content()


async def resize(req: Request, engine) -> Response:
    h, w = req.qint("h", 0), req.qint("w", 0)
    engine.resize(req.vars["id"], h, w)
    return Response(200)


async def top(req: Request, engine) -> Response:
    return json_response(engine.top(req.vars["id"], req.q("ps_args") or None))


async def wait(req: Request, engine) -> None:
    """200 headers at once (the CLI waits for them before start), the body at the condition."""
    condition = req.q("condition") or "not-running"
    if condition not in WAIT_CONDITIONS:
        raise InvalidArgument(f'invalid condition: "{condition}"')
    pending = await engine.wait(req.vars["id"], condition)
    out = await req.start_stream()
    try:
        result = await pending
    except Exception as e:  # noqa: BLE001 - reported in the body, headers are gone
        result = {"StatusCode": -1, "Error": {"Message": str(e)}}
    result.setdefault("Error", None)
    await out.write(_json(result) + b"\n")
    await out.end()


def _json(obj) -> bytes:
    import json
    return json.dumps(obj).encode()


async def attach(req: Request, engine) -> None:
    cid = req.vars["id"]
    info = engine.inspect_container(cid)
    tty = bool((info.get("Config") or {}).get("Tty"))
    keys = parse_detach_keys(req.q("detachKeys"))
    stdin, stdout, stderr = req.qbool("stdin"), req.qbool("stdout"), req.qbool("stderr")
    sock = await req.hijack(RAW_STREAM if tty else MULTIPLEXED)
    io = StdioStreams(sock, tty=tty, stdin=stdin, detach_keys=keys)
    try:
        await engine.attach(info.get("Id", cid), io, stdin=stdin, stdout=stdout, stderr=stderr,
                            logs=req.qbool("logs"), stream=req.qbool("stream"))
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception as e:  # noqa: BLE001 - after the hijack errors go in-stream as text
        try:
            await io.write(2, f"Error: {e}\n".encode())
        except (ConnectionError, OSError):
            pass
    finally:
        await sock.close()


async def logs(req: Request, engine) -> None:
    cid = req.vars["id"]
    stdout, stderr = req.qbool("stdout"), req.qbool("stderr")
    if not (stdout or stderr):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    info = engine.inspect_container(cid)
    tty = bool((info.get("Config") or {}).get("Tty"))
    tail_s = req.q("tail", "all") or "all"
    tail = None if tail_s == "all" else req.qint("tail")
    if tail is not None and tail < 0:
        tail = None
    since = float(req.q("since") or 0) or None
    until = float(req.q("until") or 0) or None
    it = engine.logs(info.get("Id", cid), stdout=stdout, stderr=stderr, follow=req.qbool("follow"),
                     since=since, until=until, timestamps=req.qbool("timestamps"), tail=tail,
                     details=req.qbool("details"))
    out = await req.start_stream(content_type=RAW_STREAM if tty else MULTIPLEXED)
    async for stream, data in it:
        await out.write(data if tty else frame(stream, data))
    await out.end()


def register(r: Router) -> None:
    r.add("POST", "/containers/create", create)
    r.add("GET", "/containers/json", list_)
    r.add("GET", "/containers/{id}/json", inspect)
    r.add("POST", "/containers/{id}/start", start)
    r.add("POST", "/containers/{id}/stop", stop)
    r.add("POST", "/containers/{id}/restart", restart)
    r.add("POST", "/containers/{id}/kill", kill)
    r.add("POST", "/containers/{id}/pause", pause)
    r.add("POST", "/containers/{id}/unpause", unpause)
    r.add("POST", "/containers/{id}/rename", rename)
    r.add("POST", "/containers/{id}/resize", resize)
    r.add("GET", "/containers/{id}/top", top)
    r.add("POST", "/containers/{id}/wait", wait)
    r.add("POST", "/containers/{id}/attach", attach)
    r.add("GET", "/containers/{id}/logs", logs)
    r.add("DELETE", "/containers/{id}", remove)
