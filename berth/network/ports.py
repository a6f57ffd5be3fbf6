"""Published ports: -p parsing and host-port reservation.

A reservation is a socket bound to the host address and port (TCP: bound, never listening;
UDP: bound). Holding it makes a conflict with any other program a clear error at set-up
time, picks a free port for "-p 80", and keeps the port from being taken while the nft DNAT
rule forwards its traffic (DNAT happens before the socket could ever see a packet).
"""

from __future__ import annotations

import errno
import socket
from ipaddress import IPv4Address

from berth.errors import Conflict, InvalidArgument
from berth.network.model import PortSpec

PROTOS = ("tcp", "udp")


def _port_range(text: str, what: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    try:
        a = int(lo)
        b = int(hi) if sep else a
    except ValueError:
        raise InvalidArgument(f"invalid {what} port {text!r}") from None
    if not (1 <= a <= b <= 65535):
        raise InvalidArgument(f"invalid {what} port range {text!r}")
    return a, b


def parse_port_spec(spec: str) -> list[PortSpec]:
    """Parse "[hostIP:][hostPort[-end]:]containerPort[-end][/tcp|udp]" into mappings.

    Ranges of equal length map one to one. A host range with a single container port means
    "the first free port of that range" (parse_port_specs() returns the range with it).
    """
    out, _ = _parse(spec)
    return out


def _parse(spec: str) -> tuple[list[PortSpec], tuple[int, int] | None]:
    text, _, proto = spec.strip().partition("/")
    proto = proto.lower() or "tcp"
    if proto not in PROTOS:
        raise InvalidArgument(f"invalid protocol {proto!r} in port spec {spec!r} (tcp or udp)")
    if text.startswith("["):
        raise InvalidArgument(f"IPv6 host addresses are not supported: {spec!r}")
    parts = text.split(":")
    if len(parts) == 1:
        host_ip, host, cont = "", "", parts[0]
    elif len(parts) == 2:
        host_ip, host, cont = "", parts[0], parts[1]
    elif len(parts) == 3:
        host_ip, host, cont = parts
    else:
        raise InvalidArgument(f"invalid port spec {spec!r}")
    if host_ip:
        try:
            IPv4Address(host_ip)
        except ValueError:
            raise InvalidArgument(f"invalid host IP {host_ip!r} in port spec {spec!r}") from None
        if host_ip == "0.0.0.0":
            host_ip = ""
    c0, c1 = _port_range(cont, "container")
    if not host:
        return [PortSpec(p, proto, host_ip, 0) for p in range(c0, c1 + 1)], None
    h0, h1 = _port_range(host, "host")
    if h1 - h0 == c1 - c0:
        return [PortSpec(c0 + i, proto, host_ip, h0 + i) for i in range(c1 - c0 + 1)], None
    if c0 == c1:
        return [PortSpec(c0, proto, host_ip, h0)], (h0, h1)
    raise InvalidArgument(f"port ranges of different sizes in {spec!r}")


def parse_port_specs(specs: list[str] | list[PortSpec]) -> list[tuple[PortSpec, tuple[int, int] | None]]:
    """Parse many specs; each result carries the host range to choose from (or None)."""
    out: list[tuple[PortSpec, tuple[int, int] | None]] = []
    for s in specs:
        if isinstance(s, PortSpec):
            out.append((s, None))
            continue
        mappings, rng = _parse(s)
        out.extend((m, rng) for m in mappings)
    return out


def reserve(proto: str, host_ip: str, port: int) -> socket.socket:
    """Bind a socket on host_ip:port (0 = any free port); Conflict if taken.

    Call in the host's network namespace (the socket stays in the netns it is made in).
    """
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind | socket.SOCK_CLOEXEC)
    try:
        s.bind((host_ip or "0.0.0.0", port))
    except OSError as e:
        s.close()
        if e.errno == errno.EADDRINUSE:
            where = f"{host_ip or '0.0.0.0'}:{port}"
            raise Conflict(f"Bind for {where} failed: port is already allocated") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise InvalidArgument(f"host address {host_ip} is not an address of this host") from None
        raise
    return s


def reserve_in_range(proto: str, host_ip: str, lo: int, hi: int) -> socket.socket:
    """Reserve the first free port of [lo, hi]."""
    for p in range(lo, hi + 1):
        try:
            return reserve(proto, host_ip, p)
        except Conflict:
            continue
    raise Conflict(f"no free host port in {lo}-{hi}/{proto}")
