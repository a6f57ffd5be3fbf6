"""DNS wire format and the server on 127.0.0.1 (unprivileged ports), with a fake upstream."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address

import pytest

from berth.network import dns


def test_codec_round_trip():
    q = dns.parse_query(dns.build_query("Web.Example.", qid=7))
    assert (q.id, q.name, q.qtype, q.qclass) == (7, "web.example", dns.QTYPE_A, dns.QCLASS_IN)
    reply = dns.build_response(q, [IPv4Address("10.0.0.5"), IPv4Address("10.0.0.6")])
    qid, rcode, addrs = dns.parse_response(reply)
    assert (qid, rcode, addrs) == (7, 0, [IPv4Address("10.0.0.5"), IPv4Address("10.0.0.6")])
    flags = struct.unpack("!H", reply[2:4])[0]
    assert flags & 0x8000 and flags & 0x0400 and flags & 0x0100  # QR, AA, RD copied
    assert dns.parse_response(dns.build_response(q, rcode=dns.RCODE_NXDOMAIN))[1] == dns.RCODE_NXDOMAIN


@pytest.mark.parametrize("bad", [b"", b"\0" * 11, dns.build_query("x")[:-3],
                                 dns.build_query("x")[:2] + b"\x80\x00" + dns.build_query("x")[4:],
                                 dns.build_query("x")[:12] + b"\xc0\x0c" + b"\0\1\0\1"])
def test_codec_rejects_garbage(bad):
    with pytest.raises(dns.DnsFormatError):
        dns.parse_query(bad)


def test_host_resolvers(tmp_path):
    p = tmp_path / "resolv.conf"
    p.write_text("nameserver 10.0.0.1\nnameserver ::1\nnameserver bogus\nsearch x\n")
    assert dns.host_resolvers(str(p)) == [("10.0.0.1", 53)]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _udp(port, payload, timeout=3.0):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(payload, ("127.0.0.1", port))
        return s.recvfrom(4096)[0]


def _tcp(port, payload):
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(struct.pack("!H", len(payload)) + payload)
        n = struct.unpack("!H", s.recv(2))[0]
        data = b""
        while len(data) < n:
            data += s.recv(n - len(data))
        return data


def test_server_answers_local_names_and_forwards_the_rest():
    up_port, port = _free_port(), _free_port()
    upstream = dns.DnsServer(lambda ip, name: ([IPv4Address("203.0.113.9")], False), [])
    upstream.add_listener("127.0.0.1", up_port)
    asked = []

    def lookup(client, name):
        asked.append((client, name))
        if name == "db":
            return [IPv4Address("10.1.0.2")], True
        if name.endswith(".internal"):
            return None, False
        return None, True

    srv = dns.DnsServer(lookup, [("127.0.0.1", up_port)])
    try:
        srv.add_listener("127.0.0.1", port)
        local, far = [IPv4Address("10.1.0.2")], [IPv4Address("203.0.113.9")]
        assert dns.parse_response(_udp(port, dns.build_query("DB", qid=1))) == (1, 0, local)
        assert dns.parse_response(_tcp(port, dns.build_query("db", qid=2))) == (2, 0, local)
        assert dns.parse_response(_udp(port, dns.build_query("far.away", qid=3)))[2] == far
        assert dns.parse_response(_tcp(port, dns.build_query("far.away", qid=4)))[2] == far
        assert dns.parse_response(_udp(port, dns.build_query("x.internal", qid=5)))[1] == dns.RCODE_REFUSED
        assert _udp(port, b"\x00\x09garbage-garbage")[:2] == b"\x00\x09"  # FORMERR with the same id
        assert asked[0] == ("127.0.0.1", "db")
        upstream.stop()  # upstream gone: SERVFAIL, not a hang
        dns.UPSTREAM_TIMEOUT = 0.5
        assert dns.parse_response(_udp(port, dns.build_query("far.away", qid=6)))[1] == dns.RCODE_SERVFAIL
        srv.remove_listener("127.0.0.1", port)
        assert srv.listeners() == []
    finally:
        dns.UPSTREAM_TIMEOUT = 3.0
        srv.stop()
        upstream.stop()
