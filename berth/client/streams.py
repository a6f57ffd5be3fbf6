"""Client-side stream helpers: stdcopy demultiplexing and the hijacked raw socket."""

from __future__ import annotations

import socket
import struct

from berth.errors import BerthError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

_HEADER = struct.Struct(">BxxxI")


def demux(chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """stdcopy frames → ``(stream, payload)``; stream 3 (systemerr) raises; zero-length frames skipped."""
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        while len(buf) >= 8:
            stream, size = _HEADER.unpack_from(buf)
            if stream > 3 or any(buf[1:4]):
                raise BerthError(f"Unrecognized input header: {buf[0]}")
            if len(buf) < 8 + size:
                break
            payload = bytes(buf[8:8 + size])
            del buf[:8 + size]
            if stream == 3:
                raise BerthError(payload.decode("utf-8", "replace"))
            if payload:
                yield stream, payload
    if buf:
        raise BerthError("stream ended inside a frame")


class Hijacked:
    """The socket after ``101 UPGRADED``: read output, write stdin, half-close with ``close_write``."""

    def __init__(self, sock: socket.socket, leftover: bytes = b"", content_type: str = "") -> None:
        self.sock = sock
        self._leftover = leftover
        self.content_type = content_type

    def recv(self, n: int = 65536) -> bytes:
        if self._leftover:
            data, self._leftover = self._leftover[:n], self._leftover[n:]
            return data
        return self.sock.recv(n)

    def __iter__(self) -> Iterator[bytes]:
        while data := self.recv():
            yield data

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Hijacked:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
