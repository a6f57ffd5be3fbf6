"""Client-side stream helpers: stdcopy demultiplexing and the hijacked raw socket."""

from __future__ import annotations

import os
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


def parse_detach_keys(spec: str | None) -> bytes:
    """moby's term.ToBytes: ``ctrl-p,ctrl-q`` (the default) → b"\\x10\\x11"; a single character
    stands for itself; ``ctrl-@ [ \\ ] ^ _`` map to 0 and 27-31."""
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
                continue
            if c in specials:
                out.append(specials[c])
                continue
        elif len(key) == 1:
            out.append(ord(key))
            continue
        raise BerthError(f"Unknown character: '{key}'")
    return bytes(out)


class EscapeScanner:
    """Client-side detach detection on tty input (docker's term.EscapeProxy): bytes that could
    start the sequence are held back, released if it breaks; the full sequence is swallowed."""

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


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def copy_output(hj: Hijacked, tty: bool, out_fd: int = 1, err_fd: int = 2) -> None:
    """Hijacked output → our stdout/stderr (raw with a tty, else demultiplexed) until the engine
    closes the stream (or the socket is shut down under us)."""
    def chunks() -> Iterator[bytes]:
        while True:
            try:
                data = hj.recv()
            except (ConnectionResetError, OSError):
                return
            if not data:
                return
            yield data
    if tty:
        for data in chunks():
            write_all(out_fd, data)
        return
    for stream, data in demux(chunks()):
        write_all(err_fd if stream == 2 else out_fd, data)


def copy_input(hj: Hijacked, in_fd: int = 0, escape: bytes | None = None) -> bool:
    """Our stdin → the hijacked stream; at EOF half-close (the engine then closes the process's
    stdin). Returns True when the escape (detach) sequence was typed."""
    scanner = EscapeScanner(escape) if escape else None
    while True:
        try:
            data = os.read(in_fd, 32768)
        except OSError:
            data = b""
        if not data:
            hj.close_write()
            return False
        if scanner is not None:
            data = scanner.feed(data)
        if data:
            try:
                hj.send(data)
            except OSError:
                return False
        if scanner is not None and scanner.detached:
            return True
