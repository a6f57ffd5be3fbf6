"""Probes for network tests: echo servers and clients inside given network namespaces.

Each socket is created by a thread that entered the namespace (sockets keep their netns),
so a test can play host, containers and an outside peer from one process.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from berth.network.netns import create_netns, delete_netns, run_in_netns

if TYPE_CHECKING:
    from berth.metadata.db import Database
    from berth.network.manager import NetworkManager


def _make_socket(kind: int, addr: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, kind | socket.SOCK_CLOEXEC)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    if kind == socket.SOCK_STREAM:
        s.listen(16)
    return s


class EchoServer:
    """TCP or UDP server in a netns answering b"<peer ip>|" + data; .peers records clients."""

    def __init__(self, netns: str | None, addr: str = "0.0.0.0", port: int = 0, proto: str = "tcp") -> None:
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        self.proto = proto
        self.sock = run_in_netns(netns, _make_socket, kind, addr, port)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.peers: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                if self.proto == "tcp":
                    conn, peer = self.sock.accept()
                    with conn:
                        conn.settimeout(2)
                        data = conn.recv(4096)
                        self.peers.append(peer[0])
                        conn.sendall(peer[0].encode() + b"|" + data)
                else:
                    data, peer = self.sock.recvfrom(4096)
                    self.peers.append(peer[0])
                    self.sock.sendto(peer[0].encode() + b"|" + data, peer)
            except (TimeoutError, OSError):
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@contextlib.contextmanager
def echo_server(netns: str | None, addr: str = "0.0.0.0", port: int = 0,
                proto: str = "tcp") -> Iterator[EchoServer]:
    srv = EchoServer(netns, addr, port, proto)
    try:
        yield srv
    finally:
        srv.close()


def _request(proto: str, addr: str, port: int, payload: bytes, timeout: float) -> bytes | None:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.settimeout(timeout)
        try:
            if proto == "tcp":
                s.connect((addr, port))
                s.sendall(payload)
                return s.recv(4096)
            s.sendto(payload, (addr, port))
            return s.recvfrom(4096)[0]
        except OSError:
            return None


def request(netns: str | None, addr: str, port: int, payload: bytes = b"ping", *, proto: str = "tcp",
            timeout: float = 2.0) -> bytes | None:
    """Send payload from inside netns and return the reply (None: refused/unreachable/timeout)."""
    return run_in_netns(netns, _request, proto, addr, port, payload, timeout)


def routes(netns: str) -> list[tuple[str, int, str | None]]:
    """(dst, prefixlen, gateway) of the main routing table inside netns."""

    def body():
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            return [(r.get_attr("RTA_DST") or "0.0.0.0", r["dst_len"], r.get_attr("RTA_GATEWAY"))
                    for r in ipr.get_routes(family=2, table=254)]

    return run_in_netns(netns, body)


def links(netns: str | None) -> dict[str, dict]:
    """{ifname: {"mtu", "mac", "up", "addrs"}} inside netns."""

    def body():
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            out = {}
            for link in ipr.get_links():
                idx = link["index"]
                out[link.get_attr("IFLA_IFNAME")] = {
                    "mtu": link.get_attr("IFLA_MTU"),
                    "mac": link.get_attr("IFLA_ADDRESS"),
                    "up": bool(link["flags"] & 1),
                    "addrs": [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                              for a in ipr.get_addr(index=idx, family=2)],
                }
            return out

    return run_in_netns(netns, body)


UPLINK_HOST = "198.51.100.1"
UPLINK_OUTSIDE = "198.51.100.2"


class NetLab:
    """A private "host" netns with container netns files and managers, all removed by close()."""

    def __init__(self, tmp_dir: str) -> None:
        self.tmp = tmp_dir
        self.tag = secrets.token_hex(4)
        self.host = create_netns(os.path.join(tmp_dir, f"berth-t-{self.tag}-host"))
        self.table = f"berth_t_{self.tag}"
        self.netns: list[str] = []
        self.managers: list[NetworkManager] = []
        self.dbs: list[Database] = []
        self.run_dir = os.path.join(tmp_dir, "run")
        os.makedirs(self.run_dir)

    def manager(self, **kw) -> NetworkManager:
        """A NetworkManager on the lab's host netns and database, restored (started)."""
        from berth.metadata.db import Database
        from berth.network.manager import NetworkManager

        db = Database(os.path.join(self.tmp, "net.db"))
        self.dbs.append(db)
        kw.setdefault("dns_upstreams", [])
        kw.setdefault("dns_port", 53)
        m = NetworkManager(db, self.run_dir, table=self.table, host_netns=self.host, **kw)
        m.restore()
        self.managers.append(m)
        return m

    def container(self, name: str) -> str:
        path = create_netns(os.path.join(self.tmp, f"berth-t-{self.tag}-{name}"))
        self.netns.append(path)
        return path

    def outside(self) -> str:
        """A peer outside the host: netns "outside" on a veth uplink 198.51.100.0/24."""
        path = self.container("outside")

        def host_side():
            from pyroute2 import IPRoute

            fd = os.open(path, os.O_RDONLY)
            with IPRoute() as ipr:
                ipr.link("add", ifname="uplink0", kind="veth", peer={"ifname": "eth0", "net_ns_fd": fd})
                idx = ipr.link_lookup(ifname="uplink0")[0]
                ipr.addr("add", index=idx, address=UPLINK_HOST, prefixlen=24)
                ipr.link("set", index=idx, state="up")
            os.close(fd)

        def outside_side():
            from pyroute2 import IPRoute

            with IPRoute() as ipr:
                idx = ipr.link_lookup(ifname="eth0")[0]
                ipr.addr("add", index=idx, address=UPLINK_OUTSIDE, prefixlen=24)
                ipr.link("set", index=idx, state="up")

        run_in_netns(self.host, host_side)
        run_in_netns(path, outside_side)
        return path

    def close(self) -> None:
        for m in self.managers:
            m.close()
        for p in self.netns:
            delete_netns(p)
        delete_netns(self.host)  # bridges, veths and the nft table go with it
        for db in self.dbs:
            db.close()
