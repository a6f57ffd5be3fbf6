"""berth network create: create a network (prints its ID)."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("--attachable",), "attachable", bool, help="Enable manual container attachment"),
    Flag(("--aux-address",), "aux_address", list, help="Auxiliary addresses used by Network driver"),
    Flag(("-d", "--driver"), "driver", str, "bridge", help='Driver to manage the Network (default "bridge")'),
    Flag(("--gateway",), "gateway", list, help="IPv4 or IPv6 Gateway for the master subnet"),
    Flag(("--internal",), "internal", bool, help="Restrict external access to the network"),
    Flag(("--ip-range",), "ip_range", list, help="Allocate container ip from a sub-range"),
    Flag(("--ipam-driver",), "ipam_driver", str, "default", help="IP Address Management Driver"),
    Flag(("--ipam-opt",), "ipam_opt", list, help="Set IPAM driver specific options"),
    Flag(("--ipv6",), "ipv6", bool, help="Enable or disable IPv6 address assignment"),
    Flag(("--label",), "label", list, help="Set metadata on a network"),
    Flag(("-o", "--opt"), "opt", list, help="Set driver specific options"),
    Flag(("--scope",), "scope", str, help="Control the network's scope"),
    Flag(("--subnet",), "subnet", list, help="Subnet in CIDR format that represents a network segment"),
]
USAGE = "[OPTIONS] NETWORK"
SUMMARY = "Create a network"
MIN_ARGS = MAX_ARGS = 1


def kv_map(items: list[str]) -> dict[str, str]:
    """``k=v`` strings → dict (``k`` alone maps to ""), as docker's ConvertKVStringsToMap."""
    out = {}
    for it in items:
        k, _, v = it.partition("=")
        out[k] = v
    return out


def split_strings(items: list[str]) -> list[str]:
    """pflag "strings" flags: repeatable and comma-separated."""
    return [p.strip() for it in items for p in it.split(",") if p.strip()]


def _contains(subnet: str, addr: str) -> bool:
    import ipaddress

    from berth.cli.context import CliError
    try:
        net = ipaddress.ip_network(subnet, strict=False)
        if "/" in addr:
            other = ipaddress.ip_network(addr, strict=False)
            return other.version == net.version and other.subnet_of(net)
        ip = ipaddress.ip_address(addr)
    except ValueError as e:
        raise CliError(f"invalid CIDR address: {e}") from None
    return ip.version == net.version and ip in net


def ipam_config(subnets: list[str], ranges: list[str], gateways: list[str],
                aux: dict[str, str] | None = None) -> list[dict]:
    """docker's consolidateIpam: match every --ip-range/--gateway/--aux-address to its --subnet."""
    from berth.cli.context import CliError
    if len(subnets) < len(ranges) or len(subnets) < len(gateways):
        raise CliError("every ip-range or gateway must have a corresponding subnet")
    data: dict[str, dict] = {}
    for s in subnets:
        for k in data:
            if _contains(s, k) or _contains(k, s):
                raise CliError("multiple overlapping subnet configuration is not supported")
        data[s] = {"Subnet": s, "AuxiliaryAddresses": {}}
    for key, values, what in (("IPRange", ranges, "range"), ("Gateway", gateways, "gateway")):
        for v in values:
            match = False
            for s in subnets:
                if not _contains(s, v):
                    continue
                if data[s].get(key):
                    plural = "ranges" if what == "range" else "gateways"
                    prep = "on" if what == "range" else "for"
                    raise CliError(f"cannot configure multiple {plural} ({v}, {data[s][key]}) {prep} "
                                   f"the same subnet ({s})")
                data[s][key] = v
                match = True
            if not match:
                raise CliError(f"no matching subnet for {what} {v}")
    for name, addr in (aux or {}).items():
        match = False
        for s in subnets:
            if _contains(s, addr):
                data[s]["AuxiliaryAddresses"][name] = addr
                match = True
        if not match:
            raise CliError(f"no matching subnet for aux-address {addr}")
    out = []
    for d in data.values():
        if not d["AuxiliaryAddresses"]:
            del d["AuxiliaryAddresses"]
        out.append(d)
    return out


def body_for(name: str, opts: dict) -> dict:
    subnets = split_strings(opts["subnet"])
    cfg = ipam_config(subnets, split_strings(opts["ip_range"]), split_strings(opts["gateway"]),
                      kv_map(opts["aux_address"]))
    body = {"Name": name, "Driver": opts["driver"] or "bridge", "Options": kv_map(opts["opt"]),
            "IPAM": {"Driver": opts["ipam_driver"] or "default", "Config": cfg,
                     "Options": kv_map(opts["ipam_opt"])},
            "EnableIPv6": opts["ipv6"], "Internal": opts["internal"], "Attachable": opts["attachable"],
            "Ingress": False, "ConfigOnly": False, "Labels": kv_map(opts["label"])}
    if opts["scope"]:
        body["Scope"] = opts["scope"]
    return body


def run(cli, opts, args) -> int:
    from berth.client.resources import Networks
    resp = Networks(cli.client.transport).create(body_for(args[0], opts))
    if resp.get("Warning"):
        cli.error(resp["Warning"])
    cli.print(resp["Id"])
    return 0
