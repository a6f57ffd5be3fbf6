"""asyncio client of a container monitor's control socket (see ``berth.engine.monitor``)."""

from __future__ import annotations

import asyncio
import json
import os
import struct
from collections.abc import AsyncIterator

from berth.errors import BerthError, Conflict

EXIT = 4


class short_path:
    """A unix socket path that fits sun_path: long paths go through /proc/self/fd/<dir fd>/name."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> str:
        if len(self.path.encode()) < 100:
            return self.path
        self.fd = os.open(os.path.dirname(self.path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return f"/proc/self/fd/{self.fd}/{os.path.basename(self.path)}"

    def __exit__(self, *exc) -> None:
        if self.fd >= 0:
            os.close(self.fd)


async def _open(path: str, req: dict) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        with short_path(path) as p:
            reader, writer = await asyncio.open_unix_connection(p, limit=1 << 20)
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as e:
        raise Conflict("container is not running (its monitor is gone)") from e
    writer.write((json.dumps(req) + "\n").encode())
    await writer.drain()
    return reader, writer


async def request(path: str, req: dict, timeout: float | None = 60) -> dict:
    """Send one request and return its one-line reply."""
    reader, writer = await _open(path, req)
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
    if not line:
        raise BerthError("monitor closed the connection")
    return json.loads(line)


class Stream:
    """An attach or exec session: the reply line, then frames; write() sends stdin."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reply: dict) -> None:
        self.reader = reader
        self.writer = writer
        self.reply = reply
        self.exit: dict | None = None

    async def frames(self) -> AsyncIterator[tuple[int, bytes]]:
        while True:
            try:
                head = await self.reader.readexactly(8)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            stream, n = struct.unpack(">BxxxI", head)
            try:
                data = await self.reader.readexactly(n)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if stream == EXIT:
                self.exit = json.loads(data)
                return
            yield stream, data

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close_stdin(self) -> None:
        try:
            if self.writer.can_write_eof():
                self.writer.write_eof()
        except (OSError, RuntimeError):
            pass

    def close(self) -> None:
        self.writer.close()


async def open_stream(path: str, req: dict) -> Stream:
    reader, writer = await _open(path, req)
    line = await reader.readline()
    reply = json.loads(line) if line else {"ok": False, "error": "monitor closed the connection"}
    return Stream(reader, writer, reply)
