"""The engine API server: asyncio + h11 over a unix socket and TCP (+TLS).

One ``_Connection`` per client socket serves requests one after another (keep-alive). A handler
returns a ``Response``, or streams with ``req.start_stream()``, or takes the socket with
``req.hijack()``. Errors become ``{"message": ...}`` replies; nothing a client sends crashes the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import ssl
import stat
import time
from collections.abc import AsyncIterator
from typing import Any

import h11

from berth import __version__
from berth.api.http import JSON, Request, Response, error_response
from berth.api.router import Router
from berth.api.streams import MULTIPLEXED, RAW_STREAM, ChunkedWriter, Hijacked
from berth.errors import BerthError, InvalidArgument

log = logging.getLogger("berth.api")

SERVER_HEADER = f"Docker/berth-{__version__} (linux)"  # the docker CLI reads the OS from "Docker/<v> (<os>)"
MAX_HEADER_BYTES = 256 * 1024
DRAIN_LIMIT = 1024 * 1024  # unread body bytes skipped to keep a connection alive


def common_headers() -> list[tuple[str, str]]:
    from berth.api.http import API_VERSION
    return [("Api-Version", API_VERSION), ("Docker-Experimental", "false"), ("Ostype", "linux"),
            ("Server", SERVER_HEADER)]


class _ClientGone(Exception):
    pass


class _Connection:
    def __init__(self, server: ApiServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=server.max_header_bytes)
        self.req: Request | None = None
        self.started = False
        self.hijacked = False
        self.task: asyncio.Task | None = None
        self.watcher: asyncio.Task | None = None

    # -- reading -----------------------------------------------------------------------------
    async def next_event(self, timeout: float | None) -> Any:
        while True:
            ev = self.h11.next_event()
            if ev is not h11.NEED_DATA:
                return ev
            if self.h11.they_are_waiting_for_100_continue:
                await self._send(h11.InformationalResponse(status_code=100, headers=[]))
            try:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
            except TimeoutError:  # a subclass of OSError: must come first
                raise
            except (ConnectionError, OSError):
                data = b""
            self.h11.receive_data(data)

    async def read_request_head(self) -> Any:
        """Wait idle_timeout for a request to begin, then header_timeout for the whole head."""
        loop = asyncio.get_running_loop()
        deadline = None
        while True:
            ev = self.h11.next_event()
            if ev is not h11.NEED_DATA:
                return ev
            if deadline is None and self.h11.trailing_data[0]:
                deadline = loop.time() + self.server.header_timeout
            timeout = self.server.idle_timeout if deadline is None else max(0.0, deadline - loop.time())
            try:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
            except TimeoutError:  # a subclass of OSError: must come first
                raise
            except (ConnectionError, OSError):
                data = b""
            self.h11.receive_data(data)

    async def body_chunks(self) -> AsyncIterator[bytes]:
        while True:
            ev = await self.next_event(self.server.body_timeout)
            if isinstance(ev, h11.Data):
                yield bytes(ev.data)
            elif isinstance(ev, h11.EndOfMessage):
                return
            elif isinstance(ev, h11.ConnectionClosed):
                raise InvalidArgument("unexpected end of request body")

    # -- writing -----------------------------------------------------------------------------
    async def _send(self, event: Any) -> None:
        data = self.h11.send(event)
        if data:
            if self.writer.is_closing():
                raise _ClientGone()
            self.writer.write(data)
            try:
                await self.writer.drain()
            except (ConnectionError, OSError) as e:
                raise _ClientGone() from e

    def _headers(self, extra: list[tuple[str, str]], content_type: str | None) -> list[tuple[str, str]]:
        from email.utils import formatdate
        hs = common_headers() + [("Date", formatdate(usegmt=True))]
        if content_type:
            hs.append(("Content-Type", content_type))
        return hs + list(extra)

    async def send_response(self, resp: Response) -> None:
        self.started = True
        headers = self._headers(resp.headers, resp.content_type)
        if resp.status not in (204, 304) and not any(k.lower() == "content-length" for k, _ in headers):
            headers.append(("Content-Length", str(len(resp.body))))
        await self._send(h11.Response(status_code=resp.status, headers=headers,
                                      reason=h11_reason(resp.status).encode()))
        if resp.body and self.req is not None and self.req.method != "HEAD" and resp.status not in (204, 304):
            await self._send(h11.Data(data=resp.body))
        await self._send(h11.EndOfMessage())

    async def start_stream(self, status: int, content_type: str,
                           extra: list[tuple[str, str]]) -> ChunkedWriter:
        if self.started:
            raise RuntimeError("response already started")
        assert self.req is not None
        if not self.req._body_used:  # an unread body (wait, logs) is skipped so EOF can be watched
            await self.req.body(DRAIN_LIMIT)
        self.started = True
        await self._send(h11.Response(status_code=status, headers=self._headers(extra, content_type),
                                      reason=h11_reason(status).encode()))
        self._watch_for_disconnect()

        async def send(data: bytes) -> None:
            await self._send(h11.Data(data=data))

        async def finish() -> None:
            await self._send(h11.EndOfMessage())

        return ChunkedWriter(send, finish)

    async def hijack(self, content_type: str) -> Hijacked:
        if self.started:
            raise RuntimeError("response already started")
        assert self.req is not None
        if not self.req._body_used:
            async for _ in self.req.stream():
                pass
        upgrade = self.req.wants_upgrade
        if upgrade and content_type == MULTIPLEXED and not self.req.version_at_least("1.42"):
            content_type = RAW_STREAM
        if upgrade:
            head = (f"HTTP/1.1 101 UPGRADED\r\nContent-Type: {content_type}\r\n"
                    "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        else:
            head = f"HTTP/1.1 200 OK\r\nContent-Type: {RAW_STREAM}\r\n\r\n"
        self.started = self.hijacked = True
        self.writer.write(head.encode())
        try:
            await self.writer.drain()
        except (ConnectionError, OSError) as e:
            raise _ClientGone() from e
        leftover, _closed = self.h11.trailing_data
        return Hijacked(self.reader, self.writer, leftover, self.server.first_output_delay)

    def _watch_for_disconnect(self) -> None:
        """While a streamed reply runs, a read-EOF from the client cancels the handler."""
        if self.h11.their_state is not h11.DONE or self.task is None:
            return
        task = self.task

        async def watch() -> None:
            buffered = 0
            while buffered < self.server.max_header_bytes:
                try:
                    data = await self.reader.read(65536)
                except (ConnectionError, OSError):
                    data = b""
                if not data:
                    self.h11.receive_data(b"")
                    task.cancel()
                    return
                buffered += len(data)
                self.h11.receive_data(data)  # a pipelined next request waits in h11's buffer

        self.watcher = asyncio.get_running_loop().create_task(watch())

    # -- one request ---------------------------------------------------------------------------
    async def serve(self) -> None:
        try:
            while await self.handle_one():
                pass
        except _ClientGone:
            pass
        except Exception:  # never let a connection take the server down
            log.exception("connection error")
        finally:
            if self.watcher:
                self.watcher.cancel()
            with contextlib.suppress(Exception):
                self.writer.close()
                await self.writer.wait_closed()

    async def _bad_request(self, status: int, message: str) -> None:
        body = json.dumps({"message": message}).encode()
        head = [f"HTTP/1.1 {status} {h11_reason(status)}"] + [f"{k}: {v}" for k, v in common_headers()]
        head += [f"Content-Type: {JSON}", f"Content-Length: {len(body)}", "Connection: close"]
        with contextlib.suppress(Exception):
            self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            await self.writer.drain()

    async def handle_one(self) -> bool:
        self.started = self.hijacked = False
        self.req, self.task, self.watcher = None, None, None
        try:
            ev = await self.read_request_head()
        except h11.RemoteProtocolError as e:
            status = e.error_status_hint if e.error_status_hint >= 400 else 400
            await self._bad_request(status, f"bad request: {e}")
            return False
        except TimeoutError:
            return False
        if isinstance(ev, h11.ConnectionClosed) or not isinstance(ev, h11.Request):
            return False
        req = Request(ev.method.decode("ascii", "replace"), ev.target.decode("latin-1"),
                      [(k.decode("latin-1"), v.decode("latin-1")) for k, v in ev.headers], self.body_chunks)
        req.responder = self
        self.req = req
        if log.isEnabledFor(logging.DEBUG):
            t0 = time.perf_counter()
            try:
                await self._dispatch(req)
            finally:  # handling time, up to the reply's end (streams: until they close)
                log.debug("%s %s %.1f ms", req.method, ev.target.decode("latin-1"),
                          (time.perf_counter() - t0) * 1000)
        else:
            await self._dispatch(req)
        if self.watcher:
            self.watcher.cancel()
            with contextlib.suppress(BaseException):
                await self.watcher
        if self.hijacked:
            return False
        if self.h11.our_state is h11.MUST_CLOSE or self.h11.our_state is h11.ERROR:
            return False
        if self.h11.their_state is h11.SEND_BODY:
            try:
                skipped = 0
                async for chunk in req.stream() if not req._body_used else self.body_chunks():
                    skipped += len(chunk)
                    if skipped > DRAIN_LIMIT:
                        return False
            except Exception:
                return False
        if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
            return False
        try:
            self.h11.start_next_cycle()
        except h11.LocalProtocolError:
            return False
        return True

    async def _dispatch(self, req: Request) -> None:
        try:
            handler = self.server.router.resolve(req)
        except BerthError as e:
            await self.send_response(error_response(e.http_status, str(e)))
            return
        self.task = asyncio.get_running_loop().create_task(handler(req, self.server.engine))
        try:
            result = await self.task
        except _ClientGone:
            raise
        except asyncio.CancelledError:
            if self.watcher is not None and self.watcher.done():
                raise _ClientGone() from None  # the client went away mid-stream
            raise
        except h11.RemoteProtocolError as e:
            if not self.started:
                await self.send_response(error_response(400, f"bad request: {e}"))
            return
        except BerthError as e:
            if self.started:
                log.info("%s %s failed after the reply started: %s", req.method, req.path, e)
                raise _ClientGone() from None
            await self.send_response(error_response(e.http_status, str(e)))
            return
        except TimeoutError:
            log.info("%s %s: client too slow, closing", req.method, req.path)
            raise _ClientGone() from None
        except (ConnectionError, OSError) as e:
            if self.started:
                raise _ClientGone() from e
            log.exception("%s %s failed", req.method, req.path)
            await self.send_response(error_response(500, str(e) or type(e).__name__))
            return
        except Exception as e:
            log.exception("%s %s failed", req.method, req.path)
            if self.started:
                raise _ClientGone() from None
            await self.send_response(error_response(500, str(e) or type(e).__name__))
            return
        if self.hijacked:
            return
        if self.started:
            return
        if result is None:
            result = Response(204)
        await self.send_response(result)


def h11_reason(status: int) -> str:
    from http import HTTPStatus
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ApiServer:
    """Serves ``router`` over one or more listeners, calling handlers with ``engine``."""

    def __init__(self, engine: Any, router: Router | None = None, *, idle_timeout: float = 300.0,
                 header_timeout: float = 30.0, body_timeout: float = 120.0,
                 max_header_bytes: int = MAX_HEADER_BYTES, first_output_delay: float | None = None) -> None:
        from berth.api.streams import FIRST_OUTPUT_DELAY
        if router is None:
            from berth.api.routes import default_router
            router = default_router()
        self.engine = engine
        self.router = router
        self.idle_timeout = idle_timeout
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_header_bytes = max_header_bytes
        self.first_output_delay = FIRST_OUTPUT_DELAY if first_output_delay is None else first_output_delay
        self.servers: list[asyncio.base_events.Server] = []
        self._conns: set[asyncio.Task] = set()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            await _Connection(self, reader, writer).serve()
        finally:
            if task is not None:
                self._conns.discard(task)

    async def listen_unix(self, path: str, mode: int = 0o660, gid: int | None = None) -> None:
        """Listen on a unix socket; a stale socket file is replaced, anything else is refused."""
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(path)
            if not stat.S_ISSOCK(st.st_mode):
                raise InvalidArgument(f"{path} exists and is not a socket")
            os.unlink(path)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        old = os.umask(0o177)  # never world-accessible, not even for an instant
        try:
            srv = await asyncio.start_unix_server(self._on_client, path=path, limit=self.max_header_bytes)
        finally:
            os.umask(old)
        if gid is not None:
            os.chown(path, -1, gid)
        os.chmod(path, mode)
        self.servers.append(srv)

    async def listen_tcp(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None,
                         insecure: bool = False) -> int:
        """Listen on TCP; plain TCP only with ``insecure=True`` (logged). Returns the bound port."""
        if ssl_context is None:
            if not insecure:
                raise InvalidArgument("refusing to listen on tcp without TLS (use --tls/--tlsverify)")
            log.warning("API listening on tcp://%s:%d WITHOUT TLS: anyone who reaches it is root",
                        host, port)
        srv = await asyncio.start_server(self._on_client, host, port, ssl=ssl_context,
                                         limit=self.max_header_bytes)
        self.servers.append(srv)
        return srv.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for srv in self.servers:
            srv.close()
        for task in list(self._conns):
            task.cancel()
        for srv in self.servers:
            with contextlib.suppress(Exception):
                await srv.wait_closed()
        if self._conns:
            await asyncio.gather(*self._conns, return_exceptions=True)
        self.servers.clear()


def tls_context(cert: str, key: str, ca: str | None = None, verify: bool = False) -> ssl.SSLContext:
    """Server TLS: TLS 1.2+, and client certificates signed by ``ca`` required when ``verify``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if verify:
        if not ca:
            raise InvalidArgument("--tlsverify needs --tlscacert")
        ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
