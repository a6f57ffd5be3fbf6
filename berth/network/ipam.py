"""IP address management, pure logic: subnet pools, subnet choice, address allocation.

Records (which subnets and addresses are taken) live in berth.network.store; this module
only decides. Pools follow Docker's default-address-pools: a list of (base, size) where the
base network is cut into subnets of prefix length size.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from berth.errors import Conflict, InvalidArgument


class AddressExhausted(Conflict):
    """No subnet left in the pools, or no address left in a subnet."""


@dataclass(frozen=True)
class Pool:
    """A base network handed out in subnets of prefix length `size`."""

    base: IPv4Network
    size: int

    @classmethod
    def parse(cls, base: str, size: int) -> Pool:
        try:
            net = IPv4Network(base, strict=True)
        except ValueError as e:
            raise InvalidArgument(f"invalid address pool {base!r}: {e}") from None
        if not net.prefixlen <= size <= 30:
            raise InvalidArgument(f"pool size /{size} must be between /{net.prefixlen} and /30")
        return cls(net, size)

    def subnets(self) -> Iterator[IPv4Network]:
        return self.base.subnets(new_prefix=self.size)


def default_pools() -> list[Pool]:
    """Docker's defaults: 172.17-31.0.0/16 (one /16 each), then 192.168.0.0/16 in /20s."""
    pools = [Pool.parse(f"172.{n}.0.0/16", 16) for n in range(17, 32)]
    pools.append(Pool.parse("192.168.0.0/16", 20))
    return pools


def parse_pools(spec: Iterable[tuple[str, int] | dict]) -> list[Pool]:
    """Pools from [(base, size)] or Docker's [{"base": ..., "size": ...}]."""
    out = []
    for item in spec:
        if isinstance(item, dict):
            out.append(Pool.parse(item["base"], int(item["size"])))
        else:
            out.append(Pool.parse(item[0], int(item[1])))
    return out


def pick_subnet(pools: Sequence[Pool], taken: Iterable[IPv4Network]) -> IPv4Network:
    """The first subnet of the pools that overlaps none of taken (networks and host routes)."""
    taken = [t for t in taken if t.prefixlen > 0]  # a default route overlaps everything
    for pool in pools:
        for cand in pool.subnets():
            if not any(cand.overlaps(t) for t in taken):
                return cand
    raise AddressExhausted("could not find an available, non-overlapping IPv4 address pool")


@dataclass(frozen=True)
class SubnetConfig:
    """A network's addressing: subnet, gateway, and the range containers are given addresses from."""

    subnet: IPv4Network
    gateway: IPv4Address
    ip_range: IPv4Network

    def to_dict(self) -> dict:
        return {"Subnet": str(self.subnet), "Gateway": str(self.gateway), "IPRange": str(self.ip_range)}


def make_config(subnet: IPv4Network | str, gateway: str | None = None,
                ip_range: str | None = None) -> SubnetConfig:
    """Validate --subnet/--gateway/--ip-range; the gateway defaults to the first host address."""
    try:
        net = IPv4Network(subnet, strict=False) if isinstance(subnet, str) else subnet
    except ValueError as e:
        raise InvalidArgument(f"invalid subnet {subnet!r}: {e}") from None
    if net.prefixlen > 30:
        raise InvalidArgument(f"subnet {net} is too small (at most /30)")
    if ip_range:
        try:
            rng = IPv4Network(ip_range, strict=False)
        except ValueError as e:
            raise InvalidArgument(f"invalid ip-range {ip_range!r}: {e}") from None
        if not rng.subnet_of(net):
            raise InvalidArgument(f"ip-range {rng} is not inside subnet {net}")
    else:
        rng = net
    if gateway:
        gw = parse_address(gateway, "gateway")
        if gw not in net or gw in (net.network_address, net.broadcast_address):
            raise InvalidArgument(f"gateway {gw} is not a usable address of subnet {net}")
    else:
        gw = net.network_address + 1
    return SubnetConfig(net, gw, rng)


def parse_address(value: str, what: str = "address") -> IPv4Address:
    try:
        return IPv4Address(value)
    except ValueError:
        raise InvalidArgument(f"invalid {what} {value!r}: not an IPv4 address") from None


def check_static(cfg: SubnetConfig, addr: IPv4Address, used: set[IPv4Address]) -> None:
    """Refuse a requested --ip outside the subnet, reserved, or already in use."""
    net = cfg.subnet
    if addr not in net:
        raise InvalidArgument(f"address {addr} is not in subnet {net}")
    if addr in (net.network_address, net.broadcast_address, cfg.gateway):
        raise InvalidArgument(f"address {addr} is reserved in subnet {net}")
    if addr in used:
        raise Conflict(f"address {addr} is already in use")


def next_free(cfg: SubnetConfig, used: set[IPv4Address]) -> IPv4Address:
    """The lowest free host address of the ip-range (never network, broadcast or gateway)."""
    net, rng = cfg.subnet, cfg.ip_range
    reserved = {net.network_address, net.broadcast_address, cfg.gateway}
    first, last = int(rng.network_address), int(rng.broadcast_address)
    for i in range(first, last + 1):
        a = IPv4Address(i)
        if a not in used and a not in reserved:
            return a
    raise AddressExhausted(f"no available IPv4 address in {rng}")


def mac_for(addr: IPv4Address) -> str:
    """Docker's MAC scheme: 02:42 followed by the four address bytes."""
    return "02:42:" + ":".join(f"{b:02x}" for b in addr.packed)


def parse_mac(value: str) -> str:
    parts = value.lower().replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts):
        raise InvalidArgument(f"invalid MAC address {value!r}")
    if int(parts[0], 16) & 1:
        raise InvalidArgument(f"MAC address {value!r} is a multicast address")
    return ":".join(parts)


def as_network(value: str) -> IPv4Network | None:
    """A host route/address as a network (None for IPv6 or garbage)."""
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None
    return net if isinstance(net, IPv4Network) else None
