"""Line messages over a pair of pipes between the runtime and the processes it forks."""

from __future__ import annotations

import os

from berth.errors import BerthError


class ChildError(BerthError):
    """The container's init (or an exec'd process) reported a failure before execve."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Channel:
    """One direction to read and one to write; messages are single lines of text."""

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd = rfd
        self.wfd = wfd
        self._buf = b""

    def send(self, msg: str) -> None:
        data = (msg.replace("\n", " ") + "\n").encode()
        while data:
            n = os.write(self.wfd, data)
            data = data[n:]

    def recv(self) -> str:
        """The next line, or '' on EOF."""
        while b"\n" not in self._buf:
            chunk = os.read(self.rfd, 4096)
            if not chunk:
                rest, self._buf = self._buf, b""
                return rest.decode(errors="replace")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode(errors="replace")

    def expect(self, word: str) -> str:
        """Receive a message starting with word; raise ChildError for 'error <code> <msg>' or EOF."""
        msg = self.recv()
        if msg.startswith("error "):
            _, code, text = msg.split(" ", 2)
            raise ChildError(text, int(code))
        if not msg:
            raise ChildError("container init exited unexpectedly during set-up")
        if msg.split(" ", 1)[0] != word:
            raise ChildError(f"unexpected message from container init: {msg!r}")
        return msg[len(word):].strip()

    def close(self) -> None:
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass


def pair() -> tuple[Channel, Channel]:
    """(parent end, child end); all fds are close-on-exec."""
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    return Channel(r1, w2), Channel(r2, w1)
