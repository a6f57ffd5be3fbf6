"""Container routes: create, start, stop, kill, rm, ps, inspect, wait, attach, logs, resize..."""

from __future__ import annotations

import asyncio

from berth.api.http import Request, Response, json_response, no_content
from berth.api.router import Router
from berth.api.routes._util import method, result, stream_bytes
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
    from berth.api.routes.system import time_arg_ns
    since_ns = time_arg_ns(req.q("since"), "since") or None  # exact ns: both ends are inclusive
    until_ns = time_arg_ns(req.q("until"), "until") or None
    exact = {k: v for k, v in (("since_ns", since_ns), ("until_ns", until_ns)) if v}
    it = engine.logs(info.get("Id", cid), stdout=stdout, stderr=stderr, follow=req.qbool("follow"),
                     since=since_ns / 1e9 if since_ns else None, until=until_ns / 1e9 if until_ns else None,
                     timestamps=req.qbool("timestamps"), tail=tail, details=req.qbool("details"), **exact)
    out = await req.start_stream(content_type=RAW_STREAM if tty else MULTIPLEXED)
    async for stream, data in it:
        await out.write(data if tty else frame(stream, data))
    await out.end()


def _stat_header(info: dict) -> str:
    """X-Docker-Container-Path-Stat: standard base64 of the JSON path stat."""
    import base64
    return base64.b64encode(_json(info)).decode()


def _archive_path(req: Request) -> str:
    path = req.q("path")
    if not path:
        raise InvalidArgument("path is required")
    return path


async def archive_head(req: Request, engine) -> Response:
    info = await result(method(engine, "archive_stat")(req.vars["id"], _archive_path(req)))
    return Response(200, headers=[("X-Docker-Container-Path-Stat", _stat_header(info)),
                                  ("Content-Length", "0")])


async def archive_get(req: Request, engine) -> None:
    info, chunks = await method(engine, "archive_get")(req.vars["id"], _archive_path(req))
    await stream_bytes(req, chunks, "application/x-tar",
                       [("X-Docker-Container-Path-Stat", _stat_header(info))])


async def archive_put(req: Request, engine) -> Response:
    await method(engine, "archive_put")(req.vars["id"], _archive_path(req), req.stream(),
                                        no_overwrite_dir_non_dir=req.qbool("noOverwriteDirNonDir"),
                                        copy_uid_gid=req.qbool("copyUIDGID"))
    return Response(200)


async def export(req: Request, engine) -> None:
    await stream_bytes(req, method(engine, "export_container")(req.vars["id"]), "application/x-tar")


async def changes(req: Request, engine) -> Response:
    return json_response(await result(method(engine, "container_changes")(req.vars["id"])))


async def stats(req: Request, engine) -> Response | None:
    stream = req.qbool("stream", default=True)
    it = method(engine, "stats")(req.vars["id"], stream=stream, one_shot=req.qbool("one-shot"))
    if not stream:
        async for first in it:
            return json_response(first)
        return json_response({})
    from berth.api.streams import stream_messages
    await stream_messages(req, it)
    return None


async def update(req: Request, engine) -> Response:
    body = await req.json(default={})
    return json_response(await result(method(engine, "update_container")(req.vars["id"], body)))


async def prune(req: Request, engine) -> Response:
    return json_response(await result(method(engine, "prune_containers")(req.filters())))


async def commit(req: Request, engine) -> Response:
    container = req.q("container")
    if not container:
        raise InvalidArgument("container is required")
    config = await req.json(default=None)
    committed = await result(method(engine, "commit_container")(
        container, repo=req.q("repo") or None, tag=req.q("tag") or None, comment=req.q("comment") or "",
        author=req.q("author") or "", changes=req.qlist("changes"), pause=req.qbool("pause", default=True),
        config=config))
    return json_response(committed, 201)


def register(r: Router) -> None:
    r.add("POST", "/containers/create", create)
    r.add("POST", "/containers/prune", prune)
    r.add("POST", "/commit", commit)
    r.add("HEAD", "/containers/{id}/archive", archive_head)
    r.add("GET", "/containers/{id}/archive", archive_get)
    r.add("PUT", "/containers/{id}/archive", archive_put)
    r.add("GET", "/containers/{id}/export", export)
    r.add("GET", "/containers/{id}/changes", changes)
    r.add("GET", "/containers/{id}/stats", stats)
    r.add("POST", "/containers/{id}/update", update)
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
