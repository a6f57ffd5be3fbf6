"""Links and addresses through netlink (pyroute2): bridges, veth pairs, container interfaces.

Functions run in the calling thread's netns; the manager calls them through
berth.network.netns.run_in_netns so the host or container namespace is explicit.
"""

from __future__ import annotations

import contextlib
import errno
import os
from ipaddress import IPv4Address

from berth.errors import BerthError, Conflict
from berth.network.ipam import as_network, mac_for


def _iproute():
    from pyroute2 import IPRoute

    return IPRoute()


def _nl_errno(e: Exception) -> int:
    return getattr(e, "code", None) or getattr(e, "errno", 0) or 0


def _index(ipr, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


def set_sysctl(key: str, value: str) -> None:
    """Write /proc/sys/<key with dots as slashes> (in the calling thread's netns)."""
    with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
        f.write(value)


def ensure_bridge(name: str, gateway: IPv4Address, prefixlen: int, mtu: int = 1500) -> None:
    """Create (or adopt) bridge name with the gateway address, MTU, route_localnet; up."""
    with _iproute() as ipr:
        idx = _index(ipr, name)
        if idx is None:
            ipr.link("add", ifname=name, kind="bridge")
            idx = _index(ipr, name)
            # a fixed MAC: otherwise the bridge takes its lowest port's MAC, changes it when
            # that port goes, and containers' ARP entries for the gateway go stale
            ipr.link("set", index=idx, address=mac_for(gateway))
        ipr.link("set", index=idx, mtu=mtu)
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=idx, family=2)}
        if (str(gateway), prefixlen) not in have:
            ipr.addr("add", index=idx, address=str(gateway), prefixlen=prefixlen)
        ipr.link("set", index=idx, state="up")
    # published ports must answer on 127.0.0.1: DNAT from the output hook sends a packet
    # with a loopback source out of the bridge, which the kernel only allows with this set.
    set_sysctl(f"net.ipv4.conf.{name}.route_localnet", "1")


def delete_link(name: str) -> bool:
    """Delete a link by name; False if it did not exist."""
    with _iproute() as ipr:
        idx = _index(ipr, name)
        if idx is None:
            return False
        try:
            ipr.link("del", index=idx)
        except Exception as e:
            if _nl_errno(e) == errno.ENODEV:
                return False
            raise
        return True


def link_names() -> set[str]:
    """Names of the links in the calling thread's netns."""
    with _iproute() as ipr:
        return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}


def host_networks(exclude_ifname: str | None = None) -> list:
    """IPv4 networks routed on this host (main table routes and interface addresses).

    Routes and addresses of exclude_ifname (e.g. berth's own default bridge) are left out.
    """
    out = []
    with _iproute() as ipr:
        skip = _index(ipr, exclude_ifname) if exclude_ifname else None
        for r in ipr.get_routes(family=2, table=254):
            dst = r.get_attr("RTA_DST")
            if dst and (skip is None or r.get_attr("RTA_OIF") != skip):
                net = as_network(f"{dst}/{r['dst_len']}")
                if net is not None:
                    out.append(net)
        for a in ipr.get_addr(family=2):
            if skip is not None and a["index"] == skip:
                continue
            net = as_network(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
            if net is not None and not net.is_loopback:
                out.append(net)
    return out


def add_veth(host_ifname: str, netns_path: str, ifname: str, bridge: str, mtu: int) -> None:
    """Create a veth pair: host_ifname on bridge (up), its peer ifname inside netns_path."""
    with _iproute() as ipr:
        if _index(ipr, host_ifname) is not None:  # stale from a crash: replace it
            ipr.link("del", index=_index(ipr, host_ifname))
        br = _index(ipr, bridge)
        if br is None:
            raise BerthError(f"bridge {bridge} does not exist")
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            ipr.link("add", ifname=host_ifname, kind="veth", mtu=mtu,
                     peer={"ifname": ifname, "net_ns_fd": fd, "mtu": mtu})
        except Exception as e:
            if _nl_errno(e) == errno.EEXIST:
                raise Conflict(f"interface {ifname} already exists in the container") from None
            raise
        finally:
            os.close(fd)
        try:
            idx = _index(ipr, host_ifname)
            ipr.link("set", index=idx, master=br)
            # hairpin: a container reaching its own published port through a host address is
            # DNATed back out of the port it came in on (br_netfilter), which needs this mode
            ipr.brport("set", index=idx, mode=1)
            ipr.link("set", index=idx, state="up")
        except BaseException:
            with contextlib.suppress(Exception):
                ipr.link("del", ifname=host_ifname)
            raise


def configure_container_if(ifname: str, mac: str, address: IPv4Address, prefixlen: int,
                           gateway: IPv4Address | None) -> None:
    """Inside the container netns: MAC, address, up, loopback up, default route via gateway."""
    with _iproute() as ipr:
        lo = _index(ipr, "lo")
        if lo is not None:
            ipr.link("set", index=lo, state="up")
        idx = _index(ipr, ifname)
        if idx is None:
            raise BerthError(f"interface {ifname} vanished from the container netns")
        ipr.link("set", index=idx, address=mac)
        ipr.addr("add", index=idx, address=str(address), prefixlen=prefixlen)
        ipr.link("set", index=idx, state="up")
        if gateway is not None:
            try:
                ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway), oif=idx)
            except Exception as e:
                if _nl_errno(e) != errno.EEXIST:  # a first network already set the default route
                    raise


def next_ifname(prefix: str = "eth") -> str:
    """The first <prefix>N not present in the calling thread's netns."""
    names = link_names()
    n = 0
    while f"{prefix}{n}" in names:
        n += 1
    return f"{prefix}{n}"
