"""IPAM logic and the network records (SQLite), without root."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from berth.errors import AlreadyExists, Conflict, InvalidArgument
from berth.metadata.db import Database
from berth.network import ipam
from berth.network.model import Endpoint, Network, PortBinding
from berth.network.store import NetworkStore

N = IPv4Network


def test_default_pools_follow_docker():
    pools = ipam.default_pools()
    subnets = [s for p in pools for s in p.subnets()]
    assert subnets[0] == N("172.17.0.0/16") and subnets[14] == N("172.31.0.0/16")
    assert subnets[15] == N("192.168.0.0/20") and subnets[-1] == N("192.168.240.0/20")
    assert len(subnets) == 15 + 16


def test_pick_skips_taken_and_routed_subnets():
    pools = ipam.default_pools()
    assert ipam.pick_subnet(pools, []) == N("172.17.0.0/16")
    taken = [N("172.17.0.0/16"), N("172.18.3.0/24"), N("0.0.0.0/0")]  # default route is ignored
    assert ipam.pick_subnet(pools, taken) == N("172.19.0.0/16")
    assert ipam.pick_subnet(pools, [N("172.16.0.0/12"), N("192.168.0.0/21")]) == N("192.168.16.0/20")


def test_pool_exhaustion():
    pools = ipam.parse_pools([{"base": "10.9.0.0/23", "size": 24}])
    first = ipam.pick_subnet(pools, [])
    second = ipam.pick_subnet(pools, [first])
    assert (first, second) == (N("10.9.0.0/24"), N("10.9.1.0/24"))
    with pytest.raises(ipam.AddressExhausted):
        ipam.pick_subnet(pools, [first, second])
    with pytest.raises(InvalidArgument):
        ipam.parse_pools([("10.0.0.0/16", 8)])


def test_config_validation():
    cfg = ipam.make_config("10.1.0.0/16")
    assert cfg.gateway == IPv4Address("10.1.0.1") and cfg.ip_range == N("10.1.0.0/16")
    cfg = ipam.make_config("10.1.0.0/16", "10.1.255.254", "10.1.4.0/22")
    assert cfg.to_dict() == {"Subnet": "10.1.0.0/16", "Gateway": "10.1.255.254", "IPRange": "10.1.4.0/22"}
    for bad in [("nonsense",), ("10.1.0.0/31",), ("10.1.0.0/16", "10.2.0.1"), ("10.1.0.0/16", "10.1.0.0"),
                ("10.1.0.0/16", None, "10.2.0.0/24"), ("10.1.0.0/16", "x")]:
        with pytest.raises(InvalidArgument):
            ipam.make_config(*bad)


def test_allocation_with_range_static_and_exhaustion():
    cfg = ipam.make_config("10.1.0.0/29")  # .1 gateway, .2-.6 hosts
    used: set[IPv4Address] = set()
    got = []
    for _ in range(5):
        a = ipam.next_free(cfg, used)
        used.add(a)
        got.append(str(a))
    assert got == ["10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"]
    with pytest.raises(ipam.AddressExhausted):
        ipam.next_free(cfg, used)
    used.discard(IPv4Address("10.1.0.4"))
    assert str(ipam.next_free(cfg, used)) == "10.1.0.4"
    rng = ipam.make_config("10.2.0.0/16", ip_range="10.2.7.128/25")
    assert str(ipam.next_free(rng, set())) == "10.2.7.128"
    with pytest.raises(Conflict):
        ipam.check_static(cfg, IPv4Address("10.1.0.3"), used)
    for bad in ("10.1.0.1", "10.1.0.7", "10.1.0.0", "10.9.9.9"):
        with pytest.raises(InvalidArgument):
            ipam.check_static(cfg, IPv4Address(bad), used)


def test_mac_helpers():
    assert ipam.mac_for(IPv4Address("172.17.0.2")) == "02:42:ac:11:00:02"
    assert ipam.parse_mac("02-AA-bb-cc-dd-ee") == "02:aa:bb:cc:dd:ee"
    for bad in ("01:00:5e:00:00:01", "02:aa", "zz:aa:bb:cc:dd:ee"):
        with pytest.raises(InvalidArgument):
            ipam.parse_mac(bad)


def _ep(net_id, cid, addr):
    return Endpoint(net_id, cid, "/proc/1/ns/net", "eth0", "vethx", IPv4Address(addr), 24,
                    IPv4Address("10.5.0.1"), "02:42:0a:05:00:02", ["al"], "name")


def test_store_persists_and_releases(tmp_path):
    path = str(tmp_path / "db.sqlite")
    db = Database(path)
    st = NetworkStore(db)
    n = Network("f" * 64, "n", "bridge", N("10.5.0.0/24"), IPv4Address("10.5.0.1"), N("10.5.0.0/24"),
                "br-ffff", True, {"o": "1"}, {"l": "2"}, 1.0)
    st.add_network(n)
    with pytest.raises(AlreadyExists):
        st.add_network(Network("e" * 64, "n", "bridge", created=2.0))
    st.add_endpoint(_ep(n.id, "c1", "10.5.0.2"))
    with pytest.raises(Conflict):
        st.add_endpoint(_ep(n.id, "c2", "10.5.0.2"))
    st.add_ports([PortBinding("c1", n.id, "tcp", "", 8080, "10.5.0.2", 80)])
    with pytest.raises(Conflict):
        st.add_ports([PortBinding("c9", n.id, "tcp", "", 8080, "10.5.0.9", 80)])
    db.close()

    db = Database(path)  # a restarted daemon sees the same records
    st = NetworkStore(db)
    [back] = st.networks()
    assert back == n
    assert st.used_addresses(n.id) == {IPv4Address("10.5.0.1"), IPv4Address("10.5.0.2")}
    assert st.endpoint(n.id, "c1").aliases == ["al"]
    assert len(st.ports("c1")) == 1
    with pytest.raises(Conflict):
        st.remove_network(n.id)
    st.remove_ports("c1")
    st.remove_endpoint(n.id, "c1")
    assert st.used_addresses(n.id) == {IPv4Address("10.5.0.1")}
    st.remove_network(n.id)
    assert st.networks() == [] and db.query("SELECT * FROM network_addresses") == []
    db.close()
