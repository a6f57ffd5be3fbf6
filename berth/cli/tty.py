"""Terminal handling for attached sessions (run/start -a/attach/exec): raw mode, window size and
SIGWINCH resizes, the stdin/stdout pumps, detach keys and the signal proxy."""

from __future__ import annotations

import os
import signal
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from berth.client.streams import Hijacked

# docker's ForwardAllSignals skips SIGCHLD, SIGPIPE, SIGURG and SIGWINCH; these are the ones that a
# terminal user sends in practice
PROXIED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")


def isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def size(*fds: int) -> tuple[int, int] | None:
    """(rows, columns) of the first terminal among fds; None if none is a terminal (or it is 0×0)."""
    for fd in fds:
        try:
            sz = os.get_terminal_size(fd)
        except OSError:
            continue
        if sz.lines and sz.columns:
            return sz.lines, sz.columns
    return None


class RawMode:
    """Put a terminal fd in raw mode (docker's term.MakeRaw); restored on exit, even on errors,
    and on SIGTERM/SIGHUP (which then end the command with 128+signal)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.saved: list | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> RawMode:
        if not isatty(self.fd):
            return self
        import termios
        import tty
        self.saved = termios.tcgetattr(self.fd)
        tty.setraw(self.fd, termios.TCSANOW)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            try:
                self._old[sig] = signal.signal(sig, _exit_on_signal)
            except ValueError:  # not the main thread
                pass
        return self

    def restore(self) -> None:
        if self.saved is not None:
            import termios
            try:
                termios.tcsetattr(self.fd, termios.TCSANOW, self.saved)
            except termios.error:
                pass
            self.saved = None

    def __exit__(self, *exc: object) -> None:
        self.restore()
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
        self._old = {}


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


class ResizeMonitor:
    """Send the terminal size now and on every SIGWINCH (``resize(rows, cols)``, errors ignored)."""

    def __init__(self, resize: Callable[[int, int], None], fds: tuple[int, ...] = (1, 0)) -> None:
        self.resize, self.fds = resize, fds
        self._old: object = None

    def send(self) -> None:
        sz = size(*self.fds)
        if sz is None:
            return
        try:
            self.resize(*sz)
        except Exception:  # noqa: BLE001 - a failed resize must not end the session
            pass

    def __enter__(self) -> ResizeMonitor:
        self.send()
        try:
            self._old = signal.signal(signal.SIGWINCH, lambda s, f: self._async_send())
        except ValueError:
            pass
        return self

    def _async_send(self) -> None:
        threading.Thread(target=self.send, daemon=True).start()

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGWINCH, self._old)  # type: ignore[arg-type]


class SignalProxy:
    """Forward the signals we receive to the container (``kill(name)``, e.g. ``kill("INT")``)."""

    def __init__(self, kill: Callable[[str], None]) -> None:
        self.kill = kill
        self._old: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        name = signal.Signals(signum).name.removeprefix("SIG")

        def send() -> None:
            try:
                self.kill(name)
            except Exception:  # noqa: BLE001 - the container may be gone already
                pass
        threading.Thread(target=send, daemon=True).start()

    def __enter__(self) -> SignalProxy:
        for name in PROXIED:
            sig = getattr(signal, name)
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
        self._old = {}


def session(hj: Hijacked, *, tty: bool, stdin: bool, detach_keys: str | None = None,
            resize: Callable[[int, int], None] | None = None, kill: Callable[[str], None] | None = None,
            in_fd: int = 0, out_fd: int = 1, err_fd: int = 2) -> bool:
    """Pump a hijacked attach/exec stream until the engine ends it. With a tty and stdin a
    terminal: raw mode and detach keys (checked here, as docker does); with ``resize`` the window
    size follows SIGWINCH; with ``kill`` (no tty) signals are proxied. True if the user detached."""
    from contextlib import ExitStack

    from berth.client.streams import copy_input, copy_output, parse_detach_keys
    escape = parse_detach_keys(detach_keys) if (tty and stdin) else None
    detached = threading.Event()

    def feed() -> None:
        if copy_input(hj, in_fd, escape):
            detached.set()
            import socket
            try:
                hj.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    with ExitStack() as stack:
        if tty and stdin and isatty(in_fd):
            stack.enter_context(RawMode(in_fd))
        if tty and resize is not None:
            stack.enter_context(ResizeMonitor(resize, (out_fd, in_fd)))
        if kill is not None and not tty:
            stack.enter_context(SignalProxy(kill))
        if stdin:
            threading.Thread(target=feed, daemon=True, name="stdin").start()
        copy_output(hj, tty, out_fd, err_fd)
    hj.close()
    return detached.is_set()
