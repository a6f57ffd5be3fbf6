"""Port specs, generated /etc files and the nft ruleset text, without root."""

from __future__ import annotations

import os
import socket
from ipaddress import IPv4Address, IPv4Network

import pytest

from berth.errors import Conflict, InvalidArgument
from berth.network import files, nft
from berth.network.model import Network, PortBinding, PortSpec
from berth.network.ports import parse_port_spec, parse_port_specs, reserve, reserve_in_range


def test_port_specs():
    assert parse_port_spec("80") == [PortSpec(80)]
    assert parse_port_spec("8080:80/udp") == [PortSpec(80, "udp", "", 8080)]
    assert parse_port_spec("127.0.0.1::53/UDP") == [PortSpec(53, "udp", "127.0.0.1", 0)]
    assert parse_port_spec("0.0.0.0:1-2:3-4") == [PortSpec(3, "tcp", "", 1), PortSpec(4, "tcp", "", 2)]
    assert parse_port_specs(["9000-9010:80"]) == [(PortSpec(80, "tcp", "", 9000), (9000, 9010))]
    for bad in ("", "x", "80/sctp", "0", "70000", "1:2:3:4", "1-3:4-5", "999.1.1.1:80:80", "[::1]:80:80",
                "5-1:80"):
        with pytest.raises(InvalidArgument):
            parse_port_spec(bad)


def test_reserve_detects_taken_ports():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(Conflict):
            reserve("tcp", "127.0.0.1", port)
        s = reserve_in_range("tcp", "127.0.0.1", port, port + 50)
        try:
            assert s.getsockname()[1] != port
        finally:
            s.close()
    s = reserve("udp", "127.0.0.1", 0)
    assert s.getsockname()[1] > 0
    s.close()


def test_etc_files(tmp_path):
    host_resolv = tmp_path / "host-resolv.conf"
    host_resolv.write_text("# c\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp.example\n"
                           "options edns0\n")
    d = tmp_path / "c1"
    paths = files.write_container_files(
        str(d), hostname="web1", addresses=[IPv4Address("172.18.0.2")], domainname="example.com",
        extra_hosts=["db:10.1.2.3", "gw:host-gateway"], host_gateway=IPv4Address("172.18.0.1"),
        aliases=["www"], host_resolv_path=str(host_resolv))
    assert open(paths["hostname"]).read() == "web1\n"
    hosts = open(paths["hosts"]).read()
    assert hosts.startswith("127.0.0.1\tlocalhost\n")
    assert "172.18.0.2\tweb1.example.com web1 www\n" in hosts
    assert "10.1.2.3\tdb\n" in hosts and "172.18.0.1\tgw\n" in hosts
    assert open(paths["resolv.conf"]).read() == (
        "nameserver 10.0.0.2\nsearch corp.example\noptions edns0\n")
    assert sorted(os.listdir(d)) == ["hostname", "hosts", "resolv.conf"]  # no temporaries left

    files.write_container_files(str(d), hostname="web1", embedded_dns="172.18.0.1",
                                dns_search=["a.test"], dns_options=["ndots:2"],
                                host_resolv_path=str(host_resolv))
    assert open(paths["resolv.conf"]).read() == "nameserver 172.18.0.1\nsearch a.test\noptions ndots:2\n"
    files.write_container_files(str(d), hostname="x", dns=["1.1.1.1"], host_resolv_path=str(host_resolv))
    assert open(paths["resolv.conf"]).read().startswith("nameserver 1.1.1.1\n")
    only_local = tmp_path / "local.conf"
    only_local.write_text("nameserver 127.0.0.1\n")
    assert files.container_resolv(host_path=str(only_local)).startswith("nameserver 8.8.8.8\n")


def test_etc_files_bad_input_leaves_nothing(tmp_path):
    d = tmp_path / "c2"
    for kw in ({"hostname": "bad host"}, {"hostname": "ok", "extra_hosts": ["nocolon"]},
               {"hostname": "ok", "extra_hosts": ["x:notanip"]}, {"hostname": "ok", "dns": ["dns.example"]},
               {"hostname": "ok", "extra_hosts": ["g:host-gateway"]}, {"hostname": "a" * 64}):
        with pytest.raises(InvalidArgument):
            files.write_container_files(str(d), **kw)
    assert not d.exists()


def test_nft_ruleset_text():
    nets = [
        Network("a" * 64, "bridge", "bridge", IPv4Network("172.17.0.0/16"), bridge="berth0"),
        Network("b" * 64, "in", "bridge", IPv4Network("10.9.0.0/24"), bridge="br-bbb", internal=True),
        Network("c" * 64, "host", "host"),
    ]
    rules = nft.bridge_rules(nets)
    assert [r.bridge for r in rules] == ["berth0", "br-bbb"]
    text = nft.render("t1", rules, [PortBinding("c", "a" * 64, "tcp", "127.0.0.1", 8080, "172.17.0.2", 80)])
    assert text.startswith("table inet t1\ndelete table inet t1\ntable inet t1 {\n")
    assert "ip daddr 127.0.0.1 tcp dport 8080 dnat ip to 172.17.0.2:80" in text
    assert 'ip saddr 172.17.0.0/16 oifname != "berth0" masquerade' in text
    assert 'ip saddr 10.9.0.0/24 oifname != "br-bbb" masquerade' not in text
    assert 'iifname "br-bbb" oifname != "br-bbb" drop' in text
    assert 'iifname "berth0" oifname != "berth0" oifname @bridges drop' in text
