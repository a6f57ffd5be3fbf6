"""Exec routes: create, start (hijacked or detached), inspect, resize."""

from __future__ import annotations

import asyncio

from berth.api.http import Request, Response, json_response
from berth.api.router import Router
from berth.api.streams import MULTIPLEXED, RAW_STREAM, StdioStreams, parse_detach_keys


async def create(req: Request, engine) -> Response:
    config = await req.json(default={})
    return json_response(engine.exec_create(req.vars["id"], config), 201)


async def start(req: Request, engine) -> Response | None:
    body = await req.json(default={})
    eid = req.vars["id"]
    detach, tty = bool(body.get("Detach")), bool(body.get("Tty"))
    info = engine.exec_inspect(eid)  # 404 before any upgrade
    if detach:
        await engine.exec_start(eid, None, detach=True, tty=tty)
        return Response(200)
    pc = info.get("ProcessConfig") or {}
    tty = tty or bool(pc.get("tty"))
    keys = parse_detach_keys(req.q("detachKeys") or body.get("DetachKeys") or None)
    sock = await req.hijack(RAW_STREAM if tty else MULTIPLEXED)
    io = StdioStreams(sock, tty=tty, stdin=bool(info.get("OpenStdin", True)), detach_keys=keys)
    try:
        await engine.exec_start(eid, io, detach=False, tty=tty)
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception as e:  # noqa: BLE001 - after the upgrade errors go in-stream as text
        try:
            await sock.write(f"{e}\n".encode() if tty else _err_frame(e))
        except (ConnectionError, OSError):
            pass
    finally:
        await sock.close()
    return None


def _err_frame(e: Exception) -> bytes:
    from berth.api.streams import STDERR, frame
    return frame(STDERR, f"{e}\n".encode())


async def inspect(req: Request, engine) -> Response:
    return json_response(engine.exec_inspect(req.vars["id"]))


async def resize(req: Request, engine) -> Response:
    engine.exec_resize(req.vars["id"], req.qint("h", 0), req.qint("w", 0))
    return Response(200)


def register(r: Router) -> None:
    r.add("POST", "/containers/{id}/exec", create)
    r.add("POST", "/exec/{id}/start", start)
    r.add("GET", "/exec/{id}/json", inspect)
    r.add("POST", "/exec/{id}/resize", resize)
