"""Streaming replies: chunked JSON message streams, stdcopy frames, and hijacked raw sockets."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from berth.errors import BerthError, InvalidArgument

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW_STREAM = "application/vnd.docker.raw-stream"
STREAM_NEWLINE = b"\r\n"  # moby's streamNewline after each JSON message
FIRST_OUTPUT_DELAY = 0.05  # seconds between the 101 header and the first output (docker-py #3332)

_HEADER = struct.Struct(">BxxxI")


# -- stdcopy ------------------------------------------------------------------------------------
def frame(stream: int, data: bytes) -> bytes:
    """One stdcopy frame: ``[stream][0 0 0][len u32 BE]`` + data."""
    return _HEADER.pack(stream, len(data)) + data


class StdcopyDecoder:
    """Incremental reader of stdcopy frames: feed bytes, get ``(stream, payload)`` pairs."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out = []
        while len(self._buf) >= 8:
            stream, size = _HEADER.unpack_from(self._buf)
            if stream > SYSTEMERR or any(self._buf[1:4]):
                raise InvalidArgument(f"Unrecognized input header: {self._buf[0]}")
            if len(self._buf) < 8 + size:
                break
            payload = bytes(self._buf[8:8 + size])
            del self._buf[:8 + size]
            if payload:
                out.append((stream, payload))
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


# -- chunked replies ----------------------------------------------------------------------------
class ChunkedWriter:
    """The body of a reply whose headers have gone out; every write is one flushed chunk."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]],
                 finish: Callable[[], Awaitable[None]]) -> None:
        self._send = send
        self._finish = finish
        self.closed = False

    async def write(self, data: bytes) -> None:
        if data and not self.closed:
            await self._send(data)

    async def send_json(self, obj: Any) -> None:
        """One JSON message, ended by ``\\r\\n`` and flushed at once."""
        await self.write(json.dumps(obj).encode() + STREAM_NEWLINE)

    async def send_error(self, message: str, code: int | None = None) -> None:
        """An in-stream failure, with both ``errorDetail`` (CLI, compose) and ``error`` (docker-py)."""
        detail: dict[str, Any] = {"message": message}
        if code is not None:
            detail["code"] = code
        await self.send_json({"errorDetail": detail, "error": message})

    async def end(self) -> None:
        if not self.closed:
            self.closed = True
            await self._finish()


async def stream_messages(req: Any, messages: AsyncIterator[dict], status: int = 200) -> None:
    """Reply with a chunked JSON message stream; an error after the headers goes in-stream."""
    it = messages.__aiter__()
    try:
        first = await it.__anext__()
    except StopAsyncIteration:
        first = None
    out = await req.start_stream(status)
    try:
        if first is not None:
            await out.send_json(first)
            async for msg in it:
                await out.send_json(msg)
    except BerthError as e:
        await out.send_error(str(e))
    await out.end()


# -- hijacked connections -----------------------------------------------------------------------
class Hijacked:
    """The raw bidirectional socket after ``101 UPGRADED``.

    ``read()`` returns b"" once the client half-closed (the socket stays open for output);
    ``write()`` holds the first output until FIRST_OUTPUT_DELAY after the header went out.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, leftover: bytes = b"",
                 delay: float = FIRST_OUTPUT_DELAY) -> None:
        self.reader = reader
        self.writer = writer
        self._leftover = leftover
        self._not_before = asyncio.get_running_loop().time() + delay
        self._wrote = False
        self.eof = False

    async def read(self, n: int = 65536) -> bytes:
        if self._leftover:
            data, self._leftover = self._leftover[:n], self._leftover[n:]
            return data
        if self.eof:
            return b""
        try:
            data = await self.reader.read(n)
        except (ConnectionError, OSError):
            data = b""
        if not data:
            self.eof = True
        return data

    async def write(self, data: bytes) -> None:
        if not self._wrote:
            self._wrote = True
            wait = self._not_before - asyncio.get_running_loop().time()
            if wait > 0:
                await asyncio.sleep(wait)
        if self.writer.is_closing():
            raise ConnectionResetError("client went away")
        self.writer.write(data)
        await self.writer.drain()

    async def close_write(self) -> None:
        if self.writer.can_write_eof() and not self.writer.is_closing():
            try:
                self.writer.write_eof()
            except OSError:
                pass

    async def close(self) -> None:
        if not self.writer.is_closing():
            try:
                await self.writer.drain()
            except (ConnectionError, OSError):
                pass
            self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


# -- detach keys --------------------------------------------------------------------------------
def parse_detach_keys(spec: str | None) -> bytes:
    """moby's term.ToBytes: ``ctrl-p,ctrl-q`` → b"\\x10\\x11"; single characters stand for themselves."""
    if not spec:
        spec = "ctrl-p,ctrl-q"
    out = bytearray()
    specials = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}
    for key in spec.split(","):
        k = key.strip().lower()
        if k.startswith("ctrl-") and len(k) == 6:
            c = k[5]
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
            elif c in specials:
                out.append(specials[c])
            else:
                raise InvalidArgument(f"Unknown character: '{key}'")
        elif len(key) == 1:
            out.append(ord(key))
        else:
            raise InvalidArgument(f"Unknown character: '{key}'")
    return bytes(out)


class DetachScanner:
    """Finds the detach sequence in stdin; bytes of a partial match are released when it breaks."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self._held = b""
        self.detached = False

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        for b in data:
            if self.detached:
                break
            cand = self._held + bytes([b])
            if self.keys.startswith(cand):
                self._held = cand
                if cand == self.keys:
                    self.detached = True
                    self._held = b""
                continue
            out += self._held
            self._held = b""
            if self.keys[:1] == bytes([b]):
                self._held = bytes([b])
            else:
                out.append(b)
        return bytes(out)


class StdioStreams:
    """What the engine sees of an attach/exec session: read stdin, write stdout/stderr.

    Output is framed (stdcopy) unless ``tty``. ``read_stdin()`` returns b"" at EOF (client
    half-close) or when the detach sequence was typed (``detached`` is then True).
    """

    def __init__(self, sock: Hijacked, tty: bool, stdin: bool = True,
                 detach_keys: bytes | None = None) -> None:
        self.sock = sock
        self.tty = tty
        self.stdin_open = stdin
        self._scan = DetachScanner(detach_keys) if detach_keys else None
        self.detached = False

    async def read_stdin(self) -> bytes:
        if not self.stdin_open or self.detached:
            return b""
        while True:
            data = await self.sock.read()
            if not data:
                return b""
            if self._scan is None:
                return data
            data = self._scan.feed(data)
            if self._scan.detached:
                self.detached = True
                return data  # may be b"", which reads as EOF
            if data:
                return data

    async def write(self, stream: int, data: bytes) -> None:
        if not data:
            return
        await self.sock.write(data if self.tty else frame(stream, data))

    async def stdout(self, data: bytes) -> None:
        await self.write(STDOUT, data)

    async def stderr(self, data: bytes) -> None:
        await self.write(STDERR, data)
