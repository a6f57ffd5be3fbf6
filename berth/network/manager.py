"""NetworkManager: networks, endpoints, published ports and name service, from records.

The records (berth.network.store) are the truth; the kernel state (bridges, veths, the nft
table, DNS listeners, port reservations) is derived from them and rebuilt by restore().
All host-side kernel work runs in `host_netns` (None: the daemon's own netns).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Sequence
from hashlib import sha256
from ipaddress import IPv4Address, IPv4Network

from berth.errors import AlreadyExists, Conflict, Forbidden, InvalidArgument, NotFound
from berth.metadata.db import Database
from berth.network import ipam, links, nft
from berth.network import ports as portlib
from berth.network.model import Endpoint, Network, PortBinding, PortSpec
from berth.network.netns import create_netns, delete_netns, is_netns, loopback_up, run_in_netns
from berth.network.store import NetworkStore

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
IFNAME_RE = re.compile(r"^[a-zA-Z0-9_.-]{1,15}$")
TABLE_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]{0,63}$")
PREDEFINED = ("bridge", "host", "none")
OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"


class NetworkManager:
    """The engine's entry point to container networking (see berth.network's docstring)."""

    def __init__(self, db: Database, run_dir: str, *, bridge_name: str = "berth0",
                 pool: Sequence[tuple[str, int]] | None = None, default_subnet: str | None = None,
                 table: str = "berth", host_netns: str | None = None, mtu: int = 1500,
                 dns_upstreams: list[tuple[str, int]] | None = None, dns_port: int = 53) -> None:
        if not TABLE_RE.match(table):
            raise InvalidArgument(f"invalid nftables table name {table!r}")
        if not IFNAME_RE.match(bridge_name):
            raise InvalidArgument(f"invalid bridge name {bridge_name!r}")
        self.store = NetworkStore(db)
        self.run_dir = run_dir
        self.bridge_name = bridge_name
        self.pools = ipam.parse_pools(pool) if pool is not None else ipam.default_pools()
        self.default_subnet = default_subnet
        self.table = table
        self.host_netns = host_netns
        self.mtu = mtu
        self.dns_port = dns_port
        self._dns_upstreams = dns_upstreams
        self._dns = None
        self._lock = threading.RLock()
        self._reservations: dict[tuple[str, str, int], socket.socket] = {}
        self._dns_nets: list[tuple[IPv4Network, str, bool]] = []  # (subnet, network id, internal)
        self._dns_names: dict[str, dict[str, list[IPv4Address]]] = {}
        self._dns_clients: dict[str, dict[IPv4Address, list[tuple[str, int]]]] = {}  # per-container --dns

    # helpers
    def _host(self, fn, *args, **kwargs):
        return run_in_netns(self.host_netns, fn, *args, **kwargs)

    def _taken_subnets(self) -> list[IPv4Network]:
        taken = [n.subnet for n in self.store.networks() if n.subnet is not None]
        return taken + self._host(links.host_networks)

    def _mtu(self, n: Network) -> int:
        try:
            return int(n.options.get(OPT_MTU, self.mtu))
        except ValueError:
            return self.mtu

    def _apply_firewall(self) -> None:
        script = nft.render(self.table, nft.bridge_rules(self.store.networks()), self.store.ports())
        self._host(nft.apply, script)

    # networks
    def get(self, id_or_name: str) -> Network:
        """A network by full id, name, or unique id prefix."""
        nets = self.store.networks()
        for n in nets:
            if n.id == id_or_name:
                return n
        for n in nets:
            if n.name == id_or_name:
                return n
        found = [n for n in nets if id_or_name and n.id.startswith(id_or_name)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise Conflict(f"network {id_or_name} is ambiguous ({len(found)} matches)")
        raise NotFound(f"network {id_or_name} not found")

    def list(self) -> list[Network]:
        return self.store.networks()

    def create_network(self, name: str, driver: str = "bridge", subnet: str | None = None,
                       gateway: str | None = None, ip_range: str | None = None, internal: bool = False,
                       labels: dict[str, str] | None = None,
                       options: dict[str, str] | None = None) -> Network:
        """Create a user-defined bridge network (its bridge, DNS listener and firewall rules)."""
        if not NAME_RE.match(name or ""):
            raise InvalidArgument(f"invalid network name {name!r}")
        if driver in ("host", "null", "none"):
            raise Forbidden(f"only one instance of \"{driver}\" network is allowed")
        if driver != "bridge":
            raise InvalidArgument(f"network driver {driver!r} is not supported (bridge)")
        if (gateway or ip_range) and not subnet:
            raise InvalidArgument("--gateway and --ip-range need --subnet")
        options = dict(options or {})
        with self._lock:
            if any(n.name == name for n in self.store.networks()):
                raise AlreadyExists(f"network with name {name} already exists")
            net_id = secrets.token_hex(32)
            if subnet:
                cfg = ipam.make_config(subnet, gateway, ip_range)
                for other in self.store.networks():
                    if other.subnet is not None and other.subnet.overlaps(cfg.subnet):
                        raise Conflict(f"subnet {cfg.subnet} overlaps with network {other.name}"
                                       f" ({other.subnet})")
            else:
                cfg = ipam.make_config(ipam.pick_subnet(self.pools, self._taken_subnets()))
            bridge = options.get(OPT_BRIDGE_NAME) or f"br-{net_id[:12]}"
            if not IFNAME_RE.match(bridge):
                raise InvalidArgument(f"invalid bridge name {bridge!r} (at most 15 of [A-Za-z0-9_.-])")
            if OPT_MTU in options:
                try:
                    if not 68 <= int(options[OPT_MTU]) <= 65535:
                        raise ValueError
                except ValueError:
                    raise InvalidArgument(f"invalid MTU {options[OPT_MTU]!r}") from None
            n = Network(net_id, name, "bridge", cfg.subnet, cfg.gateway, cfg.ip_range, bridge, internal,
                        options, dict(labels or {}), time.time())
            if bridge in self._host(links.link_names):
                raise Conflict(f"interface {bridge} already exists on the host")
            self.store.add_network(n)
            try:
                self._host(links.ensure_bridge, bridge, cfg.gateway, cfg.subnet.prefixlen, self._mtu(n))
                self._apply_firewall()
                self._start_dns(n)
            except BaseException:
                with contextlib.suppress(Exception):
                    self._stop_dns(n)
                self.store.remove_network(n.id)
                with contextlib.suppress(Exception):
                    self._host(links.delete_link, bridge)
                with contextlib.suppress(Exception):
                    self._apply_firewall()
                raise
            return n

    def remove_network(self, id_or_name: str) -> None:
        """Remove a user-defined network with no endpoints: its bridge, rules and DNS listener."""
        with self._lock:
            n = self.get(id_or_name)
            if n.name in PREDEFINED:
                raise Forbidden(f"{n.name} is a pre-defined network and cannot be removed")
            self.store.remove_network(n.id)  # Conflict while endpoints exist
            self._stop_dns(n)
            self._apply_firewall()
            if n.bridge:
                self._host(links.delete_link, n.bridge)

    def _ensure_predefined(self) -> None:
        names = {n.name for n in self.store.networks()}
        now = time.time()
        if "bridge" not in names:
            if self.default_subnet:
                cfg = ipam.make_config(self.default_subnet)
            else:
                taken = [n.subnet for n in self.store.networks() if n.subnet is not None]
                taken += self._host(links.host_networks, self.bridge_name)
                cfg = ipam.make_config(ipam.pick_subnet(self.pools, taken))
            self.store.add_network(Network(secrets.token_hex(32), "bridge", "bridge", cfg.subnet, cfg.gateway,
                                           cfg.ip_range, self.bridge_name, False,
                                           {OPT_BRIDGE_NAME: self.bridge_name}, {}, now))
        if "host" not in names:
            self.store.add_network(Network(secrets.token_hex(32), "host", "host", created=now))
        if "none" not in names:
            self.store.add_network(Network(secrets.token_hex(32), "none", "null", created=now))

    # endpoints
    def connect(self, network: str, container_id: str, netns_path: str | None, *, ip: str | None = None,
                mac: str | None = None, aliases: Sequence[str] = (), ifname: str | None = None,
                name: str = "", dns: Sequence[str] = ()) -> Endpoint | None:
        """Attach the container's netns to a network; returns the endpoint (None: host/none).

        host: nothing to do (the container shares the host netns). none: only loopback up.
        bridge: a veth pair, address (--ip or the next free), MAC (--mac-address or derived
        from the address), default route (unless internal), name registration for DNS.
        """
        n = self.get(network)
        if n.driver == "host":
            return None
        if not netns_path or not is_netns(netns_path):
            raise InvalidArgument(f"{netns_path!r} is not a network namespace")
        if n.driver == "null":
            loopback_up(netns_path)
            return None
        if not container_id:
            raise InvalidArgument("container id is required")
        mac_addr = ipam.parse_mac(mac) if mac else None
        dns_servers = [str(ipam.parse_address(d, "DNS server")) for d in dns]
        with self._lock:
            if self.store.endpoint(n.id, container_id):
                raise AlreadyExists(f"container {container_id[:12]} is already connected to network {n.name}")
            cfg = ipam.SubnetConfig(n.subnet, n.gateway, n.ip_range or n.subnet)
            used = self.store.used_addresses(n.id)
            if ip:
                addr = ipam.parse_address(ip)
                ipam.check_static(cfg, addr, used)
            else:
                addr = ipam.next_free(cfg, used)
            if ifname is None:
                ifname = run_in_netns(netns_path, links.next_ifname)
            elif not IFNAME_RE.match(ifname):
                raise InvalidArgument(f"invalid interface name {ifname!r}")
            host_if = "veth" + sha256(f"{n.id}/{container_id}".encode()).hexdigest()[:11]
            ep = Endpoint(n.id, container_id, netns_path, ifname, host_if, addr, n.subnet.prefixlen,
                          None if n.internal else n.gateway, mac_addr or ipam.mac_for(addr),
                          list(dict.fromkeys(aliases)), name.lstrip("/"), dns_servers)
            self.store.add_endpoint(ep)
            try:
                self._host(links.add_veth, host_if, netns_path, ifname, n.bridge, self._mtu(n))
                run_in_netns(netns_path, links.configure_container_if, ifname, ep.mac, addr,
                             n.subnet.prefixlen, ep.gateway)
            except BaseException:
                with contextlib.suppress(Exception):
                    self._host(links.delete_link, host_if)
                self.store.remove_endpoint(n.id, container_id)
                raise
            self._refresh_dns(n.id)
            return ep

    def disconnect(self, network: str, container_id: str) -> None:
        """Detach a container: its published ports on the network, veth, address, DNS names."""
        n = self.get(network)
        with self._lock:
            ep = self.store.endpoint(n.id, container_id)
            if ep is None:
                raise NotFound(f"container {container_id[:12]} is not connected to network {n.name}")
            gone = self.store.remove_ports(container_id, n.id)
            if gone:
                self._apply_firewall()
                self._release(gone)
            self._host(links.delete_link, ep.host_ifname)
            self.store.remove_endpoint(n.id, container_id)
            self._refresh_dns(n.id)

    def release(self, container_id: str) -> None:
        """Everything of a container that is going away: its ports, then each endpoint."""
        with self._lock:
            self.unpublish(container_id)
            for ep in self.store.endpoints(container_id=container_id):
                self.disconnect(ep.network_id, container_id)

    def endpoints(self, container_id: str | None = None, network: str | None = None) -> list[Endpoint]:
        return self.store.endpoints(self.get(network).id if network else None, container_id)

    # ports
    def publish(self, container_id: str, endpoint: Endpoint,
                ports: Sequence[str | PortSpec]) -> list[PortBinding]:
        """Publish container ports (docker -p syntax) to the host via the endpoint's address.

        Each host port is reserved by binding it on the host; a taken port is a Conflict and
        nothing of this call is left behind.
        """
        n = self.store.network_by_id(endpoint.network_id)
        if n is None or n.driver != "bridge":
            raise InvalidArgument("ports can only be published on bridge networks")
        if n.internal:
            raise InvalidArgument(f"ports cannot be published on internal network {n.name}")
        specs = portlib.parse_port_specs(list(ports))
        with self._lock:
            held: list[tuple[tuple[str, str, int], socket.socket]] = []
            try:
                bindings = []
                for spec, rng in specs:
                    if rng is not None:
                        sock = self._host(portlib.reserve_in_range, spec.proto, spec.host_ip, *rng)
                    else:
                        sock = self._host(portlib.reserve, spec.proto, spec.host_ip, spec.host_port)
                    port = sock.getsockname()[1]
                    held.append(((spec.proto, spec.host_ip, port), sock))
                    bindings.append(PortBinding(container_id, n.id, spec.proto, spec.host_ip, port,
                                                str(endpoint.address), spec.container_port))
                self.store.add_ports(bindings)
                try:
                    self._apply_firewall()
                except BaseException:
                    self.store.remove_ports(container_id, n.id)
                    raise
            except BaseException:
                for _, s in held:
                    s.close()
                raise
            self._reservations.update(held)
            return bindings

    def unpublish(self, container_id: str) -> list[PortBinding]:
        """Remove every published port of the container; returns what was removed."""
        with self._lock:
            gone = self.store.remove_ports(container_id)
            if gone:
                self._apply_firewall()
                self._release(gone)
            return gone

    def ports(self, container_id: str | None = None) -> list[PortBinding]:
        return self.store.ports(container_id)

    def _release(self, bindings: Sequence[PortBinding]) -> None:
        for b in bindings:
            s = self._reservations.pop((b.proto, b.host_ip, b.host_port), None)
            if s is not None:
                s.close()

    # name service
    def _start_dns(self, n: Network) -> None:
        if not n.user_defined or n.gateway is None:
            return
        if self._dns is None:
            from berth.network.dns import DnsServer, host_resolvers

            upstreams = self._dns_upstreams if self._dns_upstreams is not None else host_resolvers()
            self._dns = DnsServer(self._lookup, upstreams, netns=self.host_netns)
        self._dns.add_listener(str(n.gateway), self.dns_port)
        self._refresh_dns(n.id)

    def _stop_dns(self, n: Network) -> None:
        if self._dns is not None and n.gateway is not None:
            self._dns.remove_listener(str(n.gateway), self.dns_port)
        self._dns_names.pop(n.id, None)
        self._dns_clients.pop(n.id, None)
        self._refresh_dns_nets()

    def _refresh_dns_nets(self) -> None:
        self._dns_nets = [(n.subnet, n.id, n.internal) for n in self.store.networks()
                          if n.user_defined and n.subnet is not None]

    def _refresh_dns(self, network_id: str) -> None:
        names: dict[str, list[IPv4Address]] = {}
        clients: dict[IPv4Address, list[tuple[str, int]]] = {}
        for ep in self.store.endpoints(network_id):
            for nm in [ep.name, *ep.aliases, ep.short_id]:
                if nm:
                    names.setdefault(nm.lower(), []).append(ep.address)
            if ep.dns:
                clients[ep.address] = [(d, 53) for d in ep.dns]
        self._dns_names[network_id] = names
        self._dns_clients[network_id] = clients
        self._refresh_dns_nets()

    def _lookup(self, client_ip: str, qname: str):
        """(addresses of qname on the client's network or None, how to forward other names)."""
        try:
            ip = IPv4Address(client_ip)
        except ValueError:
            return None, False
        for subnet, net_id, internal in self._dns_nets:
            if ip in subnet:
                found = self._dns_names.get(net_id, {}).get(qname.rstrip(".").lower())
                if internal:
                    return (list(found) if found else None), False
                return (list(found) if found else None), self._dns_clients.get(net_id, {}).get(ip, True)
        return None, False

    # generated /etc files
    def write_container_files(self, directory: str, container_id: str, *, hostname: str,
                              domainname: str = "", extra_hosts: Sequence[str] = (),
                              dns: Sequence[str] = (), dns_search: Sequence[str] = (),
                              dns_options: Sequence[str] = ()) -> dict[str, str]:
        """hosts, resolv.conf and hostname for a connected container (see berth.network.files).

        On a user-defined network the nameserver is berth's DNS on that network's gateway
        (give the container's --dns to connect() too: they become its upstreams there);
        "host-gateway" in --add-host is the default bridge's gateway.
        """
        from berth.network.files import write_container_files

        eps = self.store.endpoints(container_id=container_id)
        nets = {n.id: n for n in self.store.networks()}
        embedded = next((str(nets[e.network_id].gateway) for e in eps
                         if e.network_id in nets and nets[e.network_id].user_defined), None)
        default = next((n for n in nets.values() if n.name == "bridge"), None)
        aliases = [a for e in eps for a in e.aliases]
        return write_container_files(
            directory, hostname=hostname, addresses=[e.address for e in eps], domainname=domainname,
            extra_hosts=extra_hosts, embedded_dns=embedded, dns=dns, dns_search=dns_search,
            dns_options=dns_options, host_gateway=default.gateway if default else None,
            aliases=list(dict.fromkeys(aliases)))

    # netns files for the engine
    def create_netns(self, container_id: str) -> str:
        """A persistent netns for a container under run_dir/netns (bind-mounted nsfs file)."""
        d = os.path.join(self.run_dir, "netns")
        os.makedirs(d, mode=0o700, exist_ok=True)
        return create_netns(os.path.join(d, container_id))

    def delete_netns(self, container_id: str) -> None:
        delete_netns(os.path.join(self.run_dir, "netns", container_id))

    # life cycle
    def restore(self) -> None:
        """Bring the host in line with the records (start-up, also after a daemon restart).

        Creates the predefined networks on first use, enables forwarding, re-creates bridges,
        the nft table, DNS listeners and port reservations. Endpoints are kept as recorded.
        """
        with self._lock:
            self._ensure_predefined()
            self._host(links.set_sysctl, "net.ipv4.ip_forward", "1")
            for n in self.store.networks():
                if n.driver == "bridge" and n.bridge:
                    self._host(links.ensure_bridge, n.bridge, n.gateway, n.subnet.prefixlen, self._mtu(n))
            self._apply_firewall()
            for n in self.store.networks():
                self._start_dns(n)
                self._refresh_dns(n.id)
            for b in self.store.ports():
                key = (b.proto, b.host_ip, b.host_port)
                if key in self._reservations:
                    continue
                try:
                    self._reservations[key] = self._host(portlib.reserve, *key)
                except Exception as e:  # the rule still forwards; only the guard is missing
                    log.warning("cannot re-reserve published port %s: %s", key, e)

    def close(self) -> None:
        """Stop serving DNS and drop port reservations; kernel state and records stay."""
        with self._lock:
            if self._dns is not None:
                self._dns.stop()
                self._dns = None
            for s in self._reservations.values():
                s.close()
            self._reservations.clear()

    def teardown(self, *, remove_bridges: bool = False) -> None:
        """close(), then delete berth's nft table (and with remove_bridges, every bridge)."""
        with self._lock:
            self.close()
            self._host(nft.delete_table, self.table)
            if remove_bridges:
                for n in self.store.networks():
                    if n.bridge:
                        self._host(links.delete_link, n.bridge)
