"""HTTP/1.1 to an engine over unix, tcp or tcp+TLS, on raw sockets (stdlib only, fast to import).

One connection per request; a response is read by Content-Length, chunked framing, or until
close. ``hijack()`` sends an Upgrade request, checks for ``101`` and hands back the raw socket.
"""

from __future__ import annotations

import _socket  # the C module: socket.py costs ~2-3 ms at start-up (enum set-up, selectors)
import os

from berth.errors import BerthError, InvalidArgument, Unavailable, from_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Iterator
    from typing import Any

DEFAULT_HOST = "unix:///run/berth/berth.sock"
API_VERSION = "1.44"
USER_AGENT = "berth-client"


class ConnectionFailed(Unavailable):
    """The engine could not be reached at all."""


class TLSConfig:
    """Client TLS settings: verify the server against ``ca``; present ``cert``/``key`` if given."""

    def __init__(self, verify: bool = False, ca: str | None = None, cert: str | None = None,
                 key: str | None = None) -> None:
        self.verify, self.ca, self.cert, self.key = verify, ca, cert, key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TLSConfig) and vars(self) == vars(other)

    def __repr__(self) -> str:
        return f"TLSConfig({self.verify!r}, {self.ca!r}, {self.cert!r}, {self.key!r})"


def tls_from_env(env: dict[str, str] | None = None, verify: bool | None = None) -> TLSConfig | None:
    """BERTH_TLS_VERIFY / BERTH_CERT_PATH (then DOCKER_TLS_VERIFY / DOCKER_CERT_PATH)."""
    env = os.environ if env is None else env
    if verify is None:
        flag = env.get("BERTH_TLS_VERIFY") or env.get("DOCKER_TLS_VERIFY") or ""
        verify = flag not in ("", "0", "false")
    if not verify:
        return None
    path = env.get("BERTH_CERT_PATH") or env.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")
    return TLSConfig(True, os.path.join(path, "ca.pem"), os.path.join(path, "cert.pem"),
                     os.path.join(path, "key.pem"))


def resolve_host(host: str | None = None, env: dict[str, str] | None = None) -> str:
    """-H, then BERTH_HOST, then DOCKER_HOST, then the default unix socket."""
    env = os.environ if env is None else env
    return host or env.get("BERTH_HOST") or env.get("DOCKER_HOST") or DEFAULT_HOST


def parse_host(host: str) -> tuple[str, Any]:
    """``unix:///p`` → ("unix", "/p"); ``tcp://h:p`` → ("tcp", (h, p)); a bare path is unix."""
    if host.startswith("unix://"):
        path = host[len("unix://"):]
        if not path:
            raise InvalidArgument(f"invalid host {host!r}: empty socket path")
        return "unix", path
    if host.startswith("/"):
        return "unix", host
    for prefix in ("tcp://", "http://", "https://"):
        if host.startswith(prefix):
            rest = host[len(prefix):].rstrip("/")
            h, sep, p = rest.rpartition(":")
            if not sep:
                h, p = rest, "2376" if prefix == "https://" else "2375"
            h = h.strip("[]") or "127.0.0.1"
            try:
                return "tcp", (h, int(p))
            except ValueError:
                raise InvalidArgument(f"invalid host {host!r}: bad port") from None
    raise InvalidArgument(f"invalid host {host!r}: use unix:///path or tcp://host:port")


class Response:
    """A response head plus a body reader over the socket."""

    def __init__(self, sock: socket.socket, status: int, reason: str, headers: dict[str, str],
                 buf: bytes, method: str) -> None:
        self.sock, self.status, self.reason, self.headers = sock, status, reason, headers
        self._buf = buf
        self._method = method
        self._done = False

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def _recv(self) -> bytes:
        if self._buf:
            data, self._buf = self._buf, b""
            return data
        return self.sock.recv(65536)

    def _read_exact(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            d = self._recv()
            if not d:
                raise ConnectionFailed("connection closed in the middle of a response")
            out += d
        if len(out) > n:
            self._buf = bytes(out[n:]) + self._buf
        return bytes(out[:n])

    def _read_line(self) -> bytes:
        out = bytearray()
        while b"\n" not in out:
            d = self._recv()
            if not d:
                raise ConnectionFailed("connection closed in the middle of a response")
            out += d
        line, _, rest = bytes(out).partition(b"\n")
        self._buf = rest + self._buf
        return line.rstrip(b"\r")

    def iter_raw(self) -> Iterator[bytes]:
        """The body as it arrives (chunk boundaries kept for chunked replies)."""
        if self._done:
            return
        try:
            if self._method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200:
                return
            if "chunked" in self.header("transfer-encoding").lower():
                while True:
                    size = int(self._read_line().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self._read_line():  # trailers
                            pass
                        return
                    yield self._read_exact(size)
                    self._read_exact(2)
            elif self.header("content-length"):
                left = int(self.header("content-length"))
                while left > 0:
                    d = self._recv()
                    if not d:
                        raise ConnectionFailed("connection closed in the middle of a response")
                    if len(d) > left:
                        self._buf, d = d[left:], d[:left]
                    left -= len(d)
                    yield d
            else:
                while d := self._recv():
                    yield d
        finally:
            self._done = True
            self.close()

    def read(self) -> bytes:
        return b"".join(self.iter_raw())

    def json(self) -> Any:
        import json
        data = self.read()
        return json.loads(data) if data.strip() else None

    def iter_json(self) -> Iterator[dict]:
        """A JSON message stream: objects separated by newlines (``\\r\\n`` from moby-style servers)."""
        import json
        buf = b""
        dec = json.JSONDecoder()
        for chunk in self.iter_raw():
            buf += chunk
            text = buf.decode("utf-8", "replace")
            pos = 0
            while True:
                while pos < len(text) and text[pos] in " \r\n\t":
                    pos += 1
                try:
                    obj, end = dec.raw_decode(text, pos)
                except ValueError:
                    break
                yield obj
                pos = end
            buf = text[pos:].encode()
        if buf.strip():
            raise BerthError(f"truncated JSON message: {buf[:100]!r}")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Transport:
    """Sends requests to one engine address."""

    def __init__(self, host: str | None = None, tls: TLSConfig | None = None, timeout: float | None = 60.0,
                 version: str | None = API_VERSION) -> None:
        self.host = resolve_host(host)
        self.kind, self.addr = parse_host(self.host)
        self.tls = tls
        self.timeout = timeout
        self.version = version

    def _connect(self, timeout: float | None) -> socket.socket:
        try:
            if self.kind == "unix":  # a plain _socket.socket: recv/sendall/shutdown/close as usual
                s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                s.settimeout(timeout)
                s.connect(self.addr)
            else:
                import socket

                s = socket.create_connection(self.addr, timeout=timeout)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.tls is not None:
                    s = self._wrap_tls(s)
        except OSError as e:  # refused, missing socket, timeout, DNS, TLS handshake
            raise ConnectionFailed(
                f"Cannot connect to the berth daemon at {self.host}. Is the daemon running? ({e})") from None
        return s

    def _wrap_tls(self, s: socket.socket) -> socket.socket:
        import ssl
        assert self.tls is not None
        if self.tls.verify:
            ctx = ssl.create_default_context(cafile=self.tls.ca)
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.tls.cert:
            ctx.load_cert_chain(self.tls.cert, self.tls.key)
        return ctx.wrap_socket(s, server_hostname=self.addr[0])

    def url(self, path: str, params: dict[str, Any] | None = None, versioned: bool = True) -> str:
        import json
        prefix = f"/v{self.version}" if versioned and self.version else ""
        target = prefix + path
        if params:
            items = []
            for k, v in params.items():
                if v is None:
                    continue
                for one in v if isinstance(v, list | tuple) else [v]:
                    if isinstance(one, bool):
                        one = "1" if one else "0"
                    elif isinstance(one, dict):
                        one = json.dumps(one)
                    items.append((k, str(one)))
            if items:
                target += "?" + urlencode(items)
        return target

    def send(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None,
             headers: dict[str, str] | None = None, versioned: bool = True, timeout: float | None = -1.0,
             upgrade: bool = False) -> Response:
        """Send one request and read the response head. ``body``: dict/list → JSON, bytes, or an
        iterator of bytes (sent chunked)."""
        import json
        hs = {"Host": "berth", "User-Agent": USER_AGENT}
        payload: bytes | None = None
        chunks: Iterator[bytes] | None = None
        if isinstance(body, dict | list):
            payload = json.dumps(body).encode()
            hs["Content-Type"] = "application/json"
        elif isinstance(body, bytes | bytearray):
            payload = bytes(body)
        elif body is not None:
            chunks = iter(body)
            hs["Transfer-Encoding"] = "chunked"
        if payload is not None or method in ("POST", "PUT"):
            if chunks is None:
                hs["Content-Length"] = str(len(payload or b""))
        if upgrade:
            hs["Connection"] = "Upgrade"
            hs["Upgrade"] = "tcp"
        hs.update(headers or {})
        target = self.url(path, params, versioned)
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs.items()) + "\r\n"
        sock = self._connect(self.timeout if timeout == -1.0 else timeout)
        try:
            sock.sendall(head.encode("latin-1") + (payload or b""))
            if chunks is not None:
                for c in chunks:
                    if c:
                        sock.sendall(b"%x\r\n%s\r\n" % (len(c), c))
                sock.sendall(b"0\r\n\r\n")
            return self._read_head(sock, method)
        except BaseException:
            sock.close()
            raise

    def _read_head(self, sock: socket.socket, method: str) -> Response:
        buf = b""
        while b"\r\n\r\n" not in buf:
            try:
                d = sock.recv(65536)
            except OSError as e:
                raise ConnectionFailed(f"error reading from the daemon: {e}") from None
            if not d:
                raise ConnectionFailed("the daemon closed the connection without a response")
            buf += d
            if len(buf) > 1 << 20:
                raise BerthError("response head too large")
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            raise BerthError(f"malformed response from the daemon: {lines[0]!r}") from None
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return Response(sock, status, parts[2] if len(parts) > 2 else "", headers, rest, method)

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None,
                **kw: Any) -> Response:
        """send() and raise the matching berth.errors class for a status ≥ 400."""
        resp = self.send(method, path, params, body, **kw)
        if resp.status >= 400:
            raise error_from(resp)
        return resp


def error_from(resp: Response) -> BerthError:
    import json
    data = resp.read()
    msg = ""
    if resp.header("content-type") == "application/json":
        try:
            msg = json.loads(data).get("message", "")
        except (ValueError, AttributeError):
            msg = ""
    if not msg:
        msg = data.decode("utf-8", "replace").strip() or f"request returned {resp.status} {resp.reason}"
    if resp.status == 413:
        from berth.errors import LimitExceeded
        err: BerthError = LimitExceeded(msg)
    else:
        err = from_status(resp.status, msg)
    err.http_status = resp.status
    return err


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(s: str, safe: str = "") -> str:
    """Percent-encode like urllib.parse.quote (kept local: urllib.parse costs start-up time)."""
    ok = _UNRESERVED | frozenset(safe.encode())
    return "".join(chr(b) if b in ok else f"%{b:02X}" for b in s.encode("utf-8"))


def urlencode(items: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in items)


def quote_ref(name: str) -> str:
    """A container/image reference in a path: ``/`` ``:`` ``@`` stay as they are (moby matches greedily)."""
    return quote(name, safe="/:@")
