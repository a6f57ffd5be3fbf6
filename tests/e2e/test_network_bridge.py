"""Bridge networks for real, inside a private "host" network namespace made by each test.

Each test gets a fresh netns that plays the host (bridges, nft table, published ports live
there), container netns files, and optionally an "outside" netns behind a veth uplink.
Nothing is created in the machine's own network namespace; traffic stays in these netns.
"""

from __future__ import annotations

import os
import time
from ipaddress import IPv4Address

import pytest

from berth.errors import AlreadyExists, Conflict, Forbidden, InvalidArgument, NotFound
from berth.network import nft
from berth.network.netns import run_in_netns
from berth.network.ports import reserve
from berth.network.testing import UPLINK_HOST, UPLINK_OUTSIDE, NetLab, echo_server, links, request, routes

pytestmark = pytest.mark.root

@pytest.fixture
def env(tmp_path):
    e = NetLab(str(tmp_path))
    try:
        yield e
    finally:
        e.close()


def test_default_bridge_and_predefined_networks(env):
    m = env.manager()
    names = {n.name: n for n in m.list()}
    assert set(names) == {"bridge", "host", "none"}
    br = names["bridge"]
    assert br.bridge == "berth0" and str(br.subnet) == "172.17.0.0/16" and str(br.gateway) == "172.17.0.1"
    host_links = links(env.host)
    assert "172.17.0.1/16" in host_links["berth0"]["addrs"] and host_links["berth0"]["up"]
    assert run_in_netns(env.host, lambda: open("/proc/sys/net/ipv4/ip_forward").read().strip()) == "1"
    with pytest.raises(Forbidden):
        m.remove_network("bridge")
    with pytest.raises(Forbidden):
        m.create_network("myhost", driver="host")
    assert m.get(br.id[:6]).name == "bridge"
    with pytest.raises(NotFound):
        m.get("nope")


def test_default_pool_skips_host_routes(env):
    def add_dummy():
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            ipr.link("add", ifname="taken0", kind="bridge")
            idx = ipr.link_lookup(ifname="taken0")[0]
            ipr.addr("add", index=idx, address="172.17.9.1", prefixlen=24)
            ipr.addr("add", index=idx, address="172.19.0.1", prefixlen=16)
            ipr.link("set", index=idx, state="up")

    run_in_netns(env.host, add_dummy)
    m = env.manager()
    assert str(m.get("bridge").subnet) == "172.18.0.0/16"
    assert str(m.create_network("n1").subnet) == "172.20.0.0/16"  # 172.19 is routed on the host


def test_containers_on_one_network_talk_and_mac_mtu_ip(env):
    m = env.manager()
    net = m.create_network("appnet", subnet="10.77.0.0/24", options={"com.docker.network.driver.mtu": "1400"})
    a, b = env.container("a"), env.container("b")
    ea = m.connect("appnet", "a" * 64, a, name="alpha")
    eb = m.connect("appnet", "b" * 64, b, ip="10.77.0.50", mac="02:aa:bb:cc:dd:ee")
    assert str(ea.address) == "10.77.0.2" and str(eb.address) == "10.77.0.50"
    lb = links(b)
    assert lb["eth0"]["mac"] == "02:aa:bb:cc:dd:ee" and lb["eth0"]["mtu"] == 1400 and lb["lo"]["up"]
    assert lb["eth0"]["addrs"] == ["10.77.0.50/24"]
    assert ("0.0.0.0", 0, "10.77.0.1") in routes(b)
    assert links(env.host)[net.bridge]["mtu"] == 1400
    with echo_server(b, port=7000) as srv:
        assert request(a, "10.77.0.50", srv.port, b"hi") == b"10.77.0.2|hi"
    with pytest.raises(Conflict):
        m.connect("appnet", "c" * 64, env.container("c"), ip="10.77.0.50")
    with pytest.raises(AlreadyExists):
        m.connect("appnet", "a" * 64, a)
    with pytest.raises(InvalidArgument):
        m.connect("appnet", "d" * 64, os.path.join(env.tmp, "not-a-netns"))
    with pytest.raises(Conflict):
        m.remove_network("appnet")  # active endpoints
    for bad in ({"ip": "10.78.0.5"}, {"mac": "01:00:00:00:00:01"}, {"ifname": "x" * 16}, {"dns": ["nope"]}):
        with pytest.raises(InvalidArgument):
            m.connect("appnet", "e" * 64, env.container(f"bad{len(env.netns)}"), **bad)
    for kw in ({"subnet": "10.77.0.128/25"}, {"options": {"com.docker.network.bridge.name": 'x"y'}},
               {"gateway": "10.1.1.1"}, {"subnet": "10.90.0.0/16", "ip_range": "10.91.0.0/24"}):
        with pytest.raises((Conflict, InvalidArgument)):
            m.create_network("other", **kw)
    with pytest.raises(AlreadyExists):
        m.create_network("appnet")
    assert [n.name for n in m.list()] == ["bridge", "host", "none", "appnet"]
    assert set(links(env.host)) == {"lo", "berth0", net.bridge, ea.host_ifname, eb.host_ifname}
    assert m.store.used_addresses(net.id) == {net.gateway, ea.address, eb.address}


def test_default_bridge_reaches_host_and_outside_is_masqueraded(env):
    m = env.manager()
    outside = env.outside()
    c = env.container("c")
    ep = m.connect("bridge", "c" * 64, c)
    with echo_server(env.host, port=7001) as srv:
        assert request(c, str(ep.gateway), srv.port, b"x") == f"{ep.address}|x".encode()
    with echo_server(outside, port=7002) as srv:
        assert request(c, UPLINK_OUTSIDE, srv.port, b"y") == f"{UPLINK_HOST}|y".encode()


def test_networks_are_isolated_and_internal_has_no_way_out(env):
    m = env.manager()
    outside = env.outside()
    m.create_network("n1")
    m.create_network("n2")
    m.create_network("secret", internal=True)
    a, b, s = env.container("a"), env.container("b"), env.container("s")
    m.connect("n1", "a" * 64, a)
    eb = m.connect("n2", "b" * 64, b)
    es = m.connect("secret", "s" * 64, s)
    assert all(gw is None for dst, _, gw in routes(s))  # no default route
    with echo_server(b, port=7003) as srv:
        assert request(a, str(eb.address), srv.port, timeout=0.7) is None
        assert request(s, str(eb.address), srv.port, timeout=0.7) is None
    with echo_server(s, port=7004) as srv:
        assert request(a, str(es.address), srv.port, timeout=0.7) is None
    with echo_server(outside, port=7005) as srv:
        assert request(s, UPLINK_OUTSIDE, srv.port, timeout=0.7) is None
        assert request(a, UPLINK_OUTSIDE, srv.port) is not None
    # the rules are what isolates them: without berth's table, n1 reaches n2
    run_in_netns(env.host, nft.delete_table, env.table)
    with echo_server(b, port=7006) as srv:
        assert request(a, str(eb.address), srv.port) is not None


def test_published_port_on_loopback_gateway_and_uplink(env):
    m = env.manager()
    outside = env.outside()
    m.create_network("web")
    c = env.container("c")
    ep = m.connect("web", "c" * 64, c)
    gw = str(m.get("bridge").gateway)
    with echo_server(c, port=8000) as tsrv, echo_server(c, port=8001, proto="udp") as usrv:
        bound = m.publish("c" * 64, ep, [f"18080:{tsrv.port}", f"127.0.0.1::{usrv.port}/udp"])
        assert [b.host_port for b in bound][0] == 18080
        uport = bound[1].host_port
        assert uport > 0 and bound[1].host_ip == "127.0.0.1"
        assert request(env.host, "127.0.0.1", 18080, b"lo").endswith(b"|lo")
        assert request(env.host, gw, 18080, b"gw").endswith(b"|gw")
        assert request(outside, UPLINK_HOST, 18080, b"out").endswith(b"|out")
        assert request(env.host, "127.0.0.1", uport, b"u", proto="udp").endswith(b"|u")
        # hairpin: the container itself and a neighbour reach it through the host's addresses
        web_gw = str(m.get("web").gateway)
        assert request(c, web_gw, 18080, b"self") == f"{web_gw}|self".encode()
        n = env.container("n")
        m.connect("web", "n" * 64, n)
        assert request(n, web_gw, 18080, b"nb") == f"{web_gw}|nb".encode()
        # and a container on another network, through the published port only
        o = env.container("o")
        eo = m.connect("bridge", "o" * 64, o)
        assert request(o, gw, 18080, b"o").endswith(b"|o")
        assert request(o, str(ep.address), tsrv.port, timeout=0.7) is None
        m.disconnect("web", "n" * 64)
        m.disconnect("bridge", "o" * 64)
        assert eo.network_id == m.get("bridge").id
        # the UDP one is bound to 127.0.0.1 only
        assert request(outside, UPLINK_HOST, uport, b"u", proto="udp", timeout=0.7) is None
        # conflicts: the same port again, and a port some other program holds
        with pytest.raises(Conflict):
            m.publish("c" * 64, ep, ["18080:80"])
        with echo_server(env.host, port=0) as other:
            with pytest.raises(Conflict):
                m.publish("c" * 64, ep, [f"{other.port}:80"])
        assert len(m.ports("c" * 64)) == 2
        # ranges map one to one
        rng = m.publish("c" * 64, ep, [f"18100-18101:{tsrv.port}-{tsrv.port + 1}"])
        assert [(b.host_port, b.container_port) for b in rng] == [(18100, tsrv.port), (18101, tsrv.port + 1)]
        assert request(env.host, "127.0.0.1", 18100, b"r").endswith(b"|r")
        assert len(m.ports("c" * 64)) == 4
        m.unpublish("c" * 64)
        assert request(env.host, "127.0.0.1", 18080, b"lo", timeout=0.7) is None
        assert m.ports() == []


def test_disconnect_removes_reachability_and_the_veth(env):
    m = env.manager()
    net = m.create_network("n")
    a, b = env.container("a"), env.container("b")
    m.connect("n", "a" * 64, a)
    eb = m.connect("n", "b" * 64, b)
    bridge_mac = links(env.host)[net.bridge]["mac"]
    with echo_server(b, port=7007) as srv:
        assert request(a, str(eb.address), srv.port) is not None
        m.disconnect("n", "b" * 64)
        assert request(a, str(eb.address), srv.port, timeout=0.7) is None
    # the gateway keeps its MAC when ports come and go (else ARP caches go stale)
    assert links(env.host)[net.bridge]["mac"] == bridge_mac == "02:42:" + ":".join(
        f"{x:02x}" for x in net.gateway.packed)
    assert eb.host_ifname not in links(env.host) and "eth0" not in links(b)
    with pytest.raises(NotFound):
        m.disconnect("n", "b" * 64)
    m.disconnect("n", "a" * 64)
    m.remove_network("n")
    assert not [n for n in links(env.host) if n.startswith("br-")]


def test_none_network_brings_up_loopback_only(env):
    m = env.manager()
    c = env.container("c")
    assert m.connect("none", "c" * 64, c) is None
    assert set(links(c)) == {"lo"} and links(c)["lo"]["up"]
    assert m.connect("host", "c" * 64, None) is None


def test_leak_twenty_connect_disconnect_cycles(env):
    m = env.manager()
    m.create_network("cyc")
    c = env.container("c")
    base_links = {k: v["addrs"] for k, v in links(env.host).items()}
    base_rules = run_in_netns(env.host, nft.rule_count, env.table)
    for i in range(20):
        ep = m.connect("cyc", "c" * 64, c, aliases=[f"x{i}"])
        m.publish("c" * 64, ep, ["8080/tcp"])
        assert run_in_netns(env.host, nft.rule_count, env.table) == base_rules + 1
        m.disconnect("cyc", "c" * 64)
    assert {k: v["addrs"] for k, v in links(env.host).items()} == base_links
    assert set(links(c)) == {"lo"}
    assert run_in_netns(env.host, nft.rule_count, env.table) == base_rules
    n = m.get("cyc")
    assert m.store.used_addresses(n.id) == {n.gateway} and m.ports() == [] and m.endpoints() == []
    assert m._reservations == {}


def test_restore_after_restart_keeps_allocations_and_rules(env):
    m1 = env.manager()
    m1.create_network("keep", subnet="10.88.0.0/16", ip_range="10.88.5.0/24")
    c = env.container("c")
    ep = m1.connect("keep", "c" * 64, c, name="cee")
    assert str(ep.address) == "10.88.5.0"  # ip-range starts at its first address
    with echo_server(c, port=9000) as srv:
        m1.publish("c" * 64, ep, [f"19000:{srv.port}"])
        m1.teardown()  # the daemon goes away and the table with it; records stay
        assert not run_in_netns(env.host, nft.table_exists, env.table)
        assert request(env.host, "127.0.0.1", 19000, timeout=0.7) is None
        m2 = env.manager()
        assert request(env.host, "127.0.0.1", 19000, b"back").endswith(b"|back")
        assert m2.endpoints("c" * 64)[0].address == ep.address
        d = env.container("d")
        assert str(m2.connect("keep", "d" * 64, d).address) == "10.88.5.1"
        assert {p.host_port for p in m2.ports()} == {19000}
        with pytest.raises(Conflict):  # the reservation is held again after restore
            run_in_netns(env.host, reserve, "tcp", "", 19000)
    assert IPv4Address("10.88.5.0") in m2.store.used_addresses(m2.get("keep").id)


def test_container_files_name_the_right_resolver(env, tmp_path):
    m = env.manager()
    user = m.create_network("u")
    a, b = env.container("a"), env.container("b")
    ea = m.connect("u", "a" * 64, a, aliases=["api"])
    m.connect("bridge", "b" * 64, b)
    pa = m.write_container_files(str(tmp_path / "fa"), "a" * 64, hostname="aaa",
                                 extra_hosts=["hg:host-gateway"])
    assert open(pa["resolv.conf"]).read().splitlines()[0] == f"nameserver {user.gateway}"
    hosts = open(pa["hosts"]).read()
    assert f"{ea.address}\taaa api\n" in hosts and f"{m.get('bridge').gateway}\thg\n" in hosts
    pb = m.write_container_files(str(tmp_path / "fb"), "b" * 64, hostname="bbb", dns=["192.0.2.53"])
    assert open(pb["resolv.conf"]).read().startswith("nameserver 192.0.2.53\n")


def test_process_netns_and_disconnect_after_the_container_died(env):
    import subprocess

    m = env.manager()
    m.create_network("p")
    proc = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        path = f"/proc/{proc.pid}/ns/net"
        for _ in range(100):  # wait until unshare has exec'd sleep in its own netns
            if os.readlink(path) != os.readlink("/proc/self/ns/net"):
                break
            time.sleep(0.02)
        ep = m.connect("p", "f" * 64, path, name="proc")
        assert ep.ifname == "eth0" and links(path)["eth0"]["addrs"] == [f"{ep.address}/16"]
        assert ep.host_ifname in links(env.host)
    finally:
        proc.kill()
        proc.wait()
    # the netns died with the process and took the veth pair with it; release still works
    m.release("f" * 64)
    assert ep.host_ifname not in links(env.host)
    assert m.endpoints("f" * 64) == []
