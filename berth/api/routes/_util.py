"""Shared bits of the route modules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from berth.api.http import Request
from berth.errors import NotFound


def method(engine: Any, name: str) -> Any:
    """engine.<name>; when this engine lacks it, 404 as if the route did not exist (clients such as
    ``docker inspect`` fall through on 404 only)."""
    fn = getattr(engine, name, None)
    if fn is None:
        raise NotFound(f"page not found (this engine does not implement {name})")
    return fn


async def stream_bytes(req: Request, chunks: AsyncIterator[bytes], content_type: str,
                       headers: list[tuple[str, str]] | None = None) -> None:
    """A byte stream reply (tar). The first chunk is fetched before the headers, so an early
    error (404) is still a normal JSON error reply."""
    it = chunks.__aiter__()
    try:
        first = await it.__anext__()
    except StopAsyncIteration:
        first = b""
    out = await req.start_stream(content_type=content_type, headers=headers)
    await out.write(first)
    async for chunk in it:
        await out.write(chunk)
    await out.end()


async def result(value: Any) -> Any:
    """Await value if the engine method was a coroutine, else return it (sync and async engines)."""
    import inspect
    if inspect.isawaitable(value):
        return await value
    return value
