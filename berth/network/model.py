"""Records of the network component: networks, endpoints, published ports."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network


@dataclass
class Network:
    """A network record. bridge is the Linux bridge name ("" for host/none)."""

    id: str
    name: str
    driver: str
    subnet: IPv4Network | None = None
    gateway: IPv4Address | None = None
    ip_range: IPv4Network | None = None
    bridge: str = ""
    internal: bool = False
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    created: float = 0.0

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def user_defined(self) -> bool:
        """User-defined bridge networks get name resolution; the default bridge does not."""
        return self.driver == "bridge" and self.name != "bridge"


@dataclass
class Endpoint:
    """A container's attachment to a network: its veth and address inside netns."""

    network_id: str
    container_id: str
    netns: str
    ifname: str
    host_ifname: str
    address: IPv4Address
    prefixlen: int
    gateway: IPv4Address | None
    mac: str
    aliases: list[str] = field(default_factory=list)
    name: str = ""
    dns: list[str] = field(default_factory=list)  # the container's --dns: upstreams for its queries

    @property
    def short_id(self) -> str:
        return self.container_id[:12]


@dataclass(frozen=True)
class PortSpec:
    """One parsed -p mapping; host_port 0 means "any free port"."""

    container_port: int
    proto: str = "tcp"
    host_ip: str = ""
    host_port: int = 0


@dataclass(frozen=True)
class PortBinding:
    """A published port as set up: host_ip "" means every host address."""

    container_id: str
    network_id: str
    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int
