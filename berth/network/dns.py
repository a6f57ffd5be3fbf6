"""The name server for user-defined networks: asyncio UDP+TCP, minimal DNS wire format.

It listens on the gateway address of each user network (port 53) and answers A queries
for container names, network aliases and short ids, scoped to the network of the asking
client (found from its source address by the `lookup` callback). Other names are forwarded
unchanged to upstream resolvers (the host's /etc/resolv.conf); the reply is relayed as is.

Only what this needs of RFC 1035 is implemented: header, one question, A answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address

from berth.errors import InvalidArgument

log = logging.getLogger(__name__)

QTYPE_A = 1
QTYPE_AAAA = 28
QCLASS_IN = 1
RCODE_OK = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_REFUSED = 5
TTL = 600
UPSTREAM_TIMEOUT = 3.0
MAX_INFLIGHT = 512  # UDP queries being answered at once


class DnsFormatError(InvalidArgument):
    """A DNS message that cannot be parsed."""


@dataclass(frozen=True)
class Query:
    id: int
    flags: int
    name: str  # lower case, no trailing dot
    qtype: int
    qclass: int
    question: bytes  # the raw question section (name + type + class)


def _read_name(data: bytes, off: int) -> tuple[str, int]:
    labels: list[str] = []
    end = None
    jumps = 0
    while True:
        if off >= len(data):
            raise DnsFormatError("truncated name")
        n = data[off]
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(data) or jumps > 16:
                raise DnsFormatError("bad compression pointer")
            if end is None:
                end = off + 2
            off = ((n & 0x3F) << 8) | data[off + 1]
            jumps += 1
            continue
        if n & 0xC0:
            raise DnsFormatError("bad label type")
        off += 1
        if n == 0:
            break
        if off + n > len(data):
            raise DnsFormatError("truncated label")
        labels.append(data[off:off + n].decode("ascii", "replace"))
        off += n
    return ".".join(labels), (end if end is not None else off)


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        if not label:
            continue
        b = label.encode("ascii")
        if len(b) > 63:
            raise DnsFormatError(f"label too long in {name!r}")
        out += bytes([len(b)]) + b
    return out + b"\0"


def parse_query(data: bytes) -> Query:
    """Parse a query with exactly one question."""
    if len(data) < 12:
        raise DnsFormatError("message shorter than a header")
    qid, flags, qd, _an, _ns, _ar = struct.unpack("!6H", data[:12])
    if flags & 0x8000:
        raise DnsFormatError("not a query")
    if qd != 1:
        raise DnsFormatError("exactly one question expected")
    name, off = _read_name(data, 12)
    if off + 4 > len(data):
        raise DnsFormatError("truncated question")
    qtype, qclass = struct.unpack("!HH", data[off:off + 4])
    return Query(qid, flags, name.lower(), qtype, qclass, data[12:off + 4])


def build_query(name: str, qtype: int = QTYPE_A, qid: int = 0x1234) -> bytes:
    """A recursive query (used by tests and health checks)."""
    head = struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0)
    return head + encode_name(name) + struct.pack("!HH", qtype, QCLASS_IN)


def build_response(q: Query, addrs: list[IPv4Address] = (), rcode: int = RCODE_OK) -> bytes:
    """An authoritative answer to q with A records for addrs (name compressed to the question)."""
    flags = 0x8000 | (q.flags & 0x7900) | 0x0400 | 0x0080 | (rcode & 0xF)  # QR, opcode+RD, AA, RA
    head = struct.pack("!6H", q.id, flags, 1, len(addrs), 0, 0)
    body = b"".join(struct.pack("!HHHIH", 0xC00C, QTYPE_A, QCLASS_IN, TTL, 4) + a.packed for a in addrs)
    return head + q.question + body


def parse_response(data: bytes) -> tuple[int, int, list[IPv4Address]]:
    """(id, rcode, A addresses) of a response; for tests and the forwarder's checks."""
    if len(data) < 12:
        raise DnsFormatError("message shorter than a header")
    qid, flags, qd, an, _ns, _ar = struct.unpack("!6H", data[:12])
    off = 12
    for _ in range(qd):
        _, off = _read_name(data, off)
        off += 4
    addrs = []
    for _ in range(an):
        _, off = _read_name(data, off)
        if off + 10 > len(data):
            raise DnsFormatError("truncated answer")
        rtype, _rclass, _ttl, rdlen = struct.unpack("!HHIH", data[off:off + 10])
        off += 10
        if rtype == QTYPE_A and rdlen == 4:
            addrs.append(IPv4Address(data[off:off + 4]))
        off += rdlen
    return qid, flags & 0xF, addrs


def error_response(data: bytes, rcode: int) -> bytes | None:
    """A reply with rcode echoing the header id of an unparsable query, if it has one."""
    if len(data) < 12:
        return None
    qid, flags = struct.unpack("!HH", data[:4])
    return struct.pack("!6H", qid, 0x8000 | (flags & 0x7900) | 0x0080 | rcode, 0, 0, 0, 0)


# lookup(client_ip, name) -> (addresses, or None if the name is not a container's;
#                             forward: False = refuse, True = default upstreams, or a list of upstreams)
Lookup = Callable[[str, str], tuple[list[IPv4Address] | None, "bool | list[tuple[str, int]]"]]


def host_resolvers(path: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    """Nameservers listed in a resolv.conf (IPv4 only), as (address, 53)."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    try:
                        IPv4Address(parts[1])
                    except ValueError:
                        continue
                    out.append((parts[1], 53))
    except FileNotFoundError:
        pass
    return out


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.server._spawn(self._answer(data, addr))

    async def _answer(self, data: bytes, addr) -> None:
        reply = await self.server.answer(data, addr[0], tcp=False)
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)


class DnsServer:
    """One asyncio loop in its own thread serving every listener address."""

    def __init__(self, lookup: Lookup, upstreams: list[tuple[str, int]] | None = None, *,
                 netns: str | None = None) -> None:
        self.lookup = lookup
        self.upstreams = list(upstreams) if upstreams is not None else host_resolvers()
        self.netns = netns
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._listeners: dict[tuple[str, int], tuple[asyncio.DatagramTransport, asyncio.AbstractServer]] = {}
        self._tasks: set[asyncio.Task] = set()

    # life cycle
    def start(self) -> None:
        if self._thread is not None:
            return
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                if self.netns is not None:
                    from berth.network.netns import enter_netns

                    enter_netns(self.netns)
                self._loop = asyncio.new_event_loop()
            except BaseException as e:
                failure.append(e)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, name="berth-dns", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread = None
            raise failure[0]

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        for key in list(self._listeners):
            self.remove_listener(*key)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._thread = None
        self._loop = None

    def _call(self, coro, timeout: float = 10.0):
        if self._loop is None:
            raise RuntimeError("DNS server is not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _spawn(self, coro) -> None:
        if len(self._tasks) >= MAX_INFLIGHT:  # a flood: drop, the client retries
            coro.close()
            return
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # listeners
    def add_listener(self, address: str, port: int = 53) -> None:
        """Serve UDP and TCP on address:port (idempotent)."""
        if (address, port) in self._listeners:
            return
        self.start()
        self._call(self._add(address, port))

    async def _add(self, address: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        usock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            usock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            usock.bind((address, port))
        except BaseException:
            usock.close()
            raise
        transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=usock)
        try:
            server = await asyncio.start_server(self._tcp_client, address, port, reuse_address=True)
        except BaseException:
            transport.close()
            raise
        self._listeners[(address, port)] = (transport, server)

    def remove_listener(self, address: str, port: int = 53) -> None:
        if (address, port) not in self._listeners or self._loop is None:
            return
        self._call(self._remove(address, port))

    async def _remove(self, address: str, port: int) -> None:
        transport, server = self._listeners.pop((address, port))
        transport.close()
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1)

    def listeners(self) -> list[tuple[str, int]]:
        return sorted(self._listeners)

    # serving
    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), 30)
                data = await asyncio.wait_for(reader.readexactly(struct.unpack("!H", head)[0]), 30)
                reply = await self.answer(data, peer[0], tcp=True)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def answer(self, data: bytes, client_ip: str, *, tcp: bool) -> bytes | None:
        """The reply to one query from client_ip (None: drop)."""
        try:
            q = parse_query(data)
        except DnsFormatError:
            return error_response(data, RCODE_FORMERR)
        try:
            addrs, forward = self.lookup(client_ip, q.name)
        except Exception:
            log.exception("dns lookup failed")
            return build_response(q, rcode=RCODE_SERVFAIL)
        if addrs is not None and q.qclass == QCLASS_IN:
            if q.qtype == QTYPE_A:
                return build_response(q, addrs)
            return build_response(q, [])  # the name exists, but has no record of this type
        if forward is False:
            return build_response(q, rcode=RCODE_REFUSED)
        upstreams = forward if isinstance(forward, list) and forward else self.upstreams
        for upstream in upstreams:
            try:
                if tcp:
                    return await self._forward_tcp(data, upstream)
                return await self._forward_udp(data, upstream)
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                continue
        return build_response(q, rcode=RCODE_SERVFAIL)

    async def _forward_udp(self, data: bytes, upstream: tuple[str, int]) -> bytes:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes] = loop.create_future()

        class _Up(asyncio.DatagramProtocol):
            def datagram_received(self, reply: bytes, addr) -> None:
                if not fut.done() and reply[:2] == data[:2]:
                    fut.set_result(reply)

            def error_received(self, exc) -> None:
                if not fut.done():
                    fut.set_exception(exc)

        transport, _ = await loop.create_datagram_endpoint(_Up, remote_addr=upstream)
        try:
            transport.sendto(data)
            return await asyncio.wait_for(fut, UPSTREAM_TIMEOUT)
        finally:
            transport.close()

    async def _forward_tcp(self, data: bytes, upstream: tuple[str, int]) -> bytes:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*upstream), UPSTREAM_TIMEOUT)
        try:
            writer.write(struct.pack("!H", len(data)) + data)
            await writer.drain()
            head = await asyncio.wait_for(reader.readexactly(2), UPSTREAM_TIMEOUT)
            return await asyncio.wait_for(reader.readexactly(struct.unpack("!H", head)[0]), UPSTREAM_TIMEOUT)
        finally:
            writer.close()
