"""Pseudo-terminals created inside the container and handed over a console socket (as runc)."""

from __future__ import annotations

import os
import struct

TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441
TIOCSWINSZ = 0x5414
TIOCSCTTY = 0x540E
SOL_SOCKET = 1
SCM_RIGHTS = 1


def connect(path: str) -> int:
    """Connect to the console socket (host side, before fork); returns the fd."""
    import _socket

    s = _socket.socket(1, 1)  # AF_UNIX, SOCK_STREAM
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise OSError(e.errno, f"cannot connect to console socket {path}: {e.strerror}") from None
    return s.detach()


def send_fd(sock_fd: int, fd: int, name: str = "/dev/ptmx") -> None:
    """Send fd over a connected unix socket with SCM_RIGHTS."""
    import _socket

    s = _socket.socket(1, 1, 0, sock_fd)
    try:
        s.sendmsg([name.encode()], [(SOL_SOCKET, SCM_RIGHTS, struct.pack("i", fd))])
    finally:
        s.detach()


def new_pty(size: dict | None = None) -> tuple[int, int]:
    """(master, slave) from this mount namespace's /dev/ptmx; the slave is opened via TIOCGPTPEER."""
    import fcntl

    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    if size and (size.get("height") or size.get("width")):
        fcntl.ioctl(slave, TIOCSWINSZ, struct.pack("HHHH", size.get("height", 0), size.get("width", 0), 0, 0))
    return master, slave


def become_console(slave: int) -> None:
    """Make slave the controlling terminal (caller has called setsid) and stdin/stdout/stderr."""
    import fcntl

    fcntl.ioctl(slave, TIOCSCTTY, 0)
    for i in (0, 1, 2):
        os.dup2(slave, i)
    if slave > 2:
        os.close(slave)


def setup(sock_fd: int, size: dict | None, *, mount_console: bool = True) -> None:
    """Create the pty, send its master over sock_fd, bind the slave on /dev/console, adopt it."""
    master, slave = new_pty(size)
    if mount_console and os.path.exists("/dev/console"):
        from berth.sys import linux

        linux.mount(f"/proc/self/fd/{slave}", "/dev/console", None, linux.MS_BIND)
    send_fd(sock_fd, master)
    os.close(master)
    os.close(sock_fd)
    become_console(slave)


def socketpair() -> tuple[int, int]:
    """(ours, theirs): a connected unix stream pair standing in for conmon's console socket."""
    import _socket

    a, b = _socket.socketpair(1, 1)
    return a.detach(), b.detach()


def recv_fd(sock_fd: int) -> int:
    """Receive one fd sent with SCM_RIGHTS on sock_fd."""
    import _socket

    s = _socket.socket(1, 1, 0, sock_fd)
    try:
        _, anc, _, _ = s.recvmsg(256, _socket.CMSG_SPACE(4))
    finally:
        s.detach()
    for level, kind, data in anc:
        if level == SOL_SOCKET and kind == SCM_RIGHTS and len(data) >= 4:
            return struct.unpack("i", data[:4])[0]
    raise OSError(5, "no pty master received on the console socket")


def proxy(master: int) -> None:
    """Foreground terminal (runc run/exec -t without --console-socket): our stdin to the pty,
    the pty to our stdout, until the container side closes; the caller's tty is raw meanwhile."""
    import fcntl
    import select

    TIOCGWINSZ = 0x5413
    saved = None
    try:
        if os.isatty(0):
            import termios
            import tty as stdtty

            saved = termios.tcgetattr(0)
            stdtty.setraw(0)
            fcntl.ioctl(master, TIOCSWINSZ, fcntl.ioctl(0, TIOCGWINSZ, b"\0" * 8))
    except OSError:
        saved = None
    inputs = [0, master]
    try:
        while True:
            r, _, _ = select.select(inputs, [], [])
            if master in r:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every slave fd is closed
                    data = b""
                if not data:
                    break
                os.write(1, data)
            if 0 in r:
                data = os.read(0, 65536)
                if data:
                    os.write(master, data)
                else:
                    inputs = [master]
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, saved)
