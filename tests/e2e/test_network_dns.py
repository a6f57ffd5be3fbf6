"""Name resolution on user networks, inside private netns; the upstream is fake, on 127.0.0.1."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address

import pytest

from berth.network import dns
from berth.network.netns import run_in_netns
from berth.network.testing import NetLab, request

pytestmark = pytest.mark.root

UPSTREAM_ANSWER = IPv4Address("203.0.113.7")


@pytest.fixture
def env(tmp_path):
    e = NetLab(str(tmp_path))
    try:
        yield e
    finally:
        e.close()


@pytest.fixture
def upstream(env):
    """A fake upstream resolver on the host's 127.0.0.1 answering every name."""

    def free_port() -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    port = run_in_netns(env.host, free_port)
    seen: list[str] = []

    def lookup(client, name):
        seen.append(name)
        return [UPSTREAM_ANSWER], False

    srv = dns.DnsServer(lookup, [], netns=env.host)
    srv.add_listener("127.0.0.1", port)
    try:
        yield port, seen
    finally:
        srv.stop()


def ask(netns: str, server: str, name: str, *, tcp: bool = False, qtype: int = dns.QTYPE_A):
    q = dns.build_query(name, qtype, qid=0x4242)
    if tcp:
        raw = request(netns, server, 53, struct.pack("!H", len(q)) + q)
        assert raw is not None
        raw = raw[2:]
    else:
        raw = request(netns, server, 53, q, proto="udp")
        assert raw is not None
    qid, rcode, addrs = dns.parse_response(raw)
    assert qid == 0x4242
    return rcode, addrs


def test_names_are_scoped_per_network_and_others_forwarded(env, upstream):
    port, seen = upstream
    m = env.manager(dns_upstreams=[("127.0.0.1", port)])
    n1 = m.create_network("front")
    n2 = m.create_network("back")
    a, b, c = env.container("a"), env.container("b"), env.container("c")
    ea = m.connect("front", "a1" * 32, a, name="/alpha", aliases=["web"])
    eb = m.connect("front", "b1" * 32, b, name="beta")
    ec = m.connect("back", "c1" * 32, c, name="gamma")
    gw1, gw2 = str(n1.gateway), str(n2.gateway)

    assert ask(a, gw1, "beta") == (0, [eb.address])
    assert ask(b, gw1, "ALPHA.") == (0, [ea.address])
    assert ask(b, gw1, "web") == (0, [ea.address])
    assert ask(b, gw1, "a1" * 6) == (0, [ea.address])  # short id
    assert ask(b, gw1, "alpha", tcp=True) == (0, [ea.address])
    assert ask(b, gw1, "alpha", qtype=dns.QTYPE_AAAA) == (0, [])  # exists, no IPv6
    assert ask(c, gw2, "gamma") == (0, [ec.address])
    # gamma is not on "front": the name goes upstream, which answers its fake address
    assert ask(a, gw1, "gamma") == (0, [UPSTREAM_ANSWER])
    assert ask(c, gw2, "alpha", tcp=True) == (0, [UPSTREAM_ANSWER])
    assert ask(a, gw1, "example.org") == (0, [UPSTREAM_ANSWER])
    assert seen == ["gamma", "alpha", "example.org"]

    m.disconnect("front", "b1" * 32)
    assert ask(a, gw1, "beta") == (0, [UPSTREAM_ANSWER])


def test_internal_network_does_not_forward_and_default_bridge_has_no_dns(env, upstream):
    port, seen = upstream
    m = env.manager(dns_upstreams=[("127.0.0.1", port)])
    n = m.create_network("vault", internal=True)
    s = env.container("s")
    es = m.connect("vault", "5" * 64, s, name="safe")
    assert ask(s, str(n.gateway), "safe") == (0, [es.address])
    assert ask(s, str(n.gateway), "example.org")[0] == dns.RCODE_REFUSED
    assert seen == []
    d = env.container("d")
    ed = m.connect("bridge", "d" * 64, d, name="dflt")
    assert request(d, str(ed.gateway), 53, dns.build_query("dflt"), proto="udp", timeout=0.7) is None


def test_removing_a_network_stops_its_listener(env):
    m = env.manager()
    n = m.create_network("short")
    assert (str(n.gateway), 53) in m._dns.listeners()
    m.remove_network("short")
    assert (str(n.gateway), 53) not in m._dns.listeners()


def test_container_dns_servers_are_its_upstreams(env, upstream):
    port, seen = upstream
    own_answer = IPv4Address("203.0.113.99")
    own = dns.DnsServer(lambda client, name: ([own_answer], False), [], netns=env.host)
    own.add_listener("127.0.0.2", 53)  # --dns servers are asked on port 53
    try:
        m = env.manager(dns_upstreams=[("127.0.0.1", port)])
        n = m.create_network("custom")
        a, b = env.container("a"), env.container("b")
        ea = m.connect("custom", "a" * 64, a, name="plain")
        eb = m.connect("custom", "b" * 64, b, name="picky", dns=["127.0.0.2"])
        assert eb.dns == ["127.0.0.2"] and m.endpoints("b" * 64)[0].dns == ["127.0.0.2"]
        assert ask(b, str(n.gateway), "example.org") == (0, [own_answer])
        assert ask(b, str(n.gateway), "plain") == (0, [ea.address])  # local names still answered here
        assert ask(a, str(n.gateway), "example.org") == (0, [UPSTREAM_ANSWER])
    finally:
        own.stop()
