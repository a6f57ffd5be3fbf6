"""berth.network: container networking (bridge/host/none/container:<id>), IPAM, nftables, DNS.

Public API (names are imported lazily)::

    NetworkManager(db, run_dir, *, bridge_name="berth0", pool=None, default_subnet=None,
                   table="berth", host_netns=None, mtu=1500, dns_upstreams=None, dns_port=53)
      .restore()                       start-up/after restart: predefined networks (bridge, host,
                                       none), ip_forward, bridges, nft table, DNS, port guards
      .create_network(name, driver="bridge", subnet=None, gateway=None, ip_range=None,
                      internal=False, labels=None, options=None) -> Network
      .remove_network(id_or_name)      Conflict while endpoints exist; Forbidden for predefined
      .get(id_or_name) -> Network      full id, name or unique id prefix; .list() -> [Network]
      .connect(network, container_id, netns_path, *, ip=None, mac=None, aliases=(),
               ifname=None, name="", dns=()) -> Endpoint | None    (None for host and none)
      .disconnect(network, container_id); .endpoints(container_id=None, network=None)
      .release(container_id)           unpublish + disconnect from every network (container removal)
      .publish(container_id, endpoint, ["8080:80", "127.0.0.1::53/udp", ...]) -> [PortBinding]
      .unpublish(container_id) -> [PortBinding]; .ports(container_id=None)
      .write_container_files(dir, container_id, *, hostname, domainname="", extra_hosts=(),
                             dns=(), dns_search=(), dns_options=()) -> {name: path}
      .create_netns(container_id) -> path; .delete_netns(container_id)   (under run_dir/netns)
      .close()                         stop DNS, drop port reservations (kernel state stays)
      .teardown(*, remove_bridges=False)   close() and delete the nft table

    container:<id> networking: the engine reuses the other container's netns path; no call here.
    Call restore() once at start-up before anything else. Calls block (netlink work runs in
    short-lived threads, nft in one subprocess per change): from asyncio, use a worker thread.

    netns: create_netns(path), delete_netns(path), run_in_netns(path, fn, *args), is_netns(path)
    files: write_container_files(dir, hostname=..., addresses=..., extra_hosts=..., embedded_dns=...,
           dns=..., dns_search=..., dns_options=...) -> {"hosts"|"resolv.conf"|"hostname": path}
    ports: parse_port_spec("[ip:][hostPort:]containerPort[/proto]") -> [PortSpec]
    dns:   DnsServer(lookup, upstreams, netns=None)  (used by NetworkManager)

Design: docs/design/network.md.
"""

from __future__ import annotations

_EXPORTS = {
    "NetworkManager": "berth.network.manager",
    "Network": "berth.network.model",
    "Endpoint": "berth.network.model",
    "PortBinding": "berth.network.model",
    "PortSpec": "berth.network.model",
    "create_netns": "berth.network.netns",
    "delete_netns": "berth.network.netns",
    "run_in_netns": "berth.network.netns",
    "is_netns": "berth.network.netns",
    "write_container_files": "berth.network.files",
    "parse_port_spec": "berth.network.ports",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'berth.network' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(mod), name)
