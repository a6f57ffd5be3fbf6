"""berth network connect: attach a container to a network (``--alias``, ``--ip``)."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("--alias",), "alias", list, help="Add network-scoped alias for the container"),
    Flag(("--driver-opt",), "driver_opt", list, help="driver options for the network"),
    Flag(("--gw-priority",), "gw_priority", int, 0, help="Highest gw-priority provides the default gateway"),
    Flag(("--ip",), "ip", str, help='IPv4 address (e.g., "172.30.100.104")'),
    Flag(("--ip6",), "ip6", str, help='IPv6 address (e.g., "2001:db8::33")'),
    Flag(("--link",), "link", list, help="Add link to another container"),
    Flag(("--link-local-ip",), "link_local_ip", list, help="Add a link-local address for the container"),
]
USAGE = "[OPTIONS] NETWORK CONTAINER"
SUMMARY = "Connect a container to a network"
MIN_ARGS = MAX_ARGS = 2


def endpoint_config(opts: dict) -> dict:
    from berth.cli.commands.network_create import kv_map, split_strings
    cfg: dict = {"IPAMConfig": {"IPv4Address": opts["ip"] or "", "IPv6Address": opts["ip6"] or "",
                                "LinkLocalIPs": split_strings(opts["link_local_ip"]) or None},
                 "Links": opts["link"] or None, "Aliases": split_strings(opts["alias"]) or None,
                 "DriverOpts": kv_map(split_strings(opts["driver_opt"])) or None}
    if opts["gw_priority"]:
        cfg["GwPriority"] = opts["gw_priority"]
    return cfg


def run(cli, opts, args) -> int:
    from berth.client.resources import Networks
    Networks(cli.client.transport).connect(args[0], args[1], endpoint_config(opts))
    return 0
