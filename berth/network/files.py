"""Generated /etc/hosts, /etc/resolv.conf and /etc/hostname for a container.

The engine bind-mounts the files of write_container_files()'s directory into the
container. Every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, ip_address

from berth.errors import InvalidArgument

HOSTS_HEADER = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)
FALLBACK_DNS = ("8.8.8.8", "8.8.4.4")
HOST_GATEWAY = "host-gateway"


def check_hostname(name: str) -> str:
    """A hostname is at most 63 bytes per label, letters, digits, '-' and '.'."""
    if not name or len(name) > 253 or any(not lbl or len(lbl) > 63 for lbl in name.split(".")):
        raise InvalidArgument(f"invalid hostname {name!r}")
    if not all(c.isalnum() or c in "-." for c in name) or not name.isascii():
        raise InvalidArgument(f"invalid hostname {name!r}")
    return name


def parse_add_host(spec: str, host_gateway: IPv4Address | None = None) -> tuple[str, str]:
    """--add-host "name:ip" (or "name=ip"); "host-gateway" becomes the gateway address."""
    sep = "=" if "=" in spec else ":"
    name, _, addr = spec.partition(sep)
    if not name or not addr:
        raise InvalidArgument(f"invalid --add-host {spec!r} (want name:ip)")
    if addr == HOST_GATEWAY:
        if host_gateway is None:
            raise InvalidArgument("host-gateway is not available on this network")
        addr = str(host_gateway)
    addr = addr.strip("[]")
    try:
        ip_address(addr)
    except ValueError:
        raise InvalidArgument(f"invalid address {addr!r} in --add-host {spec!r}") from None
    return check_hostname(name), addr


def hosts(hostname: str, addresses: Iterable[IPv4Address | str] = (), *, domainname: str = "",
          extra_hosts: Sequence[tuple[str, str]] = (), aliases: Sequence[str] = ()) -> str:
    """/etc/hosts: localhost entries, each container address with its names, --add-host lines."""
    out = HOSTS_HEADER
    names = [f"{hostname}.{domainname}", hostname] if domainname else [hostname]
    names += [a for a in aliases if a not in names]
    for addr in addresses:
        out += f"{addr}\t{' '.join(names)}\n"
    for name, addr in extra_hosts:
        out += f"{addr}\t{name}\n"
    return out


def resolv_conf(nameservers: Sequence[str], *, search: Sequence[str] = (),
                options: Sequence[str] = ()) -> str:
    """/etc/resolv.conf from nameservers, search domains and options."""
    for ns in nameservers:
        try:
            ip_address(ns)
        except ValueError:
            raise InvalidArgument(f"invalid DNS server {ns!r}") from None
    lines = [f"nameserver {ns}" for ns in nameservers]
    if search:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def host_resolv(path: str = "/etc/resolv.conf") -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search, options) of the host's resolv.conf; loopback servers dropped."""
    ns: list[str] = []
    search: list[str] = []
    opts: list[str] = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if not parts or parts[0].startswith(("#", ";")):
                    continue
                if parts[0] == "nameserver" and len(parts) > 1:
                    try:
                        if not ip_address(parts[1]).is_loopback:
                            ns.append(parts[1])
                    except ValueError:
                        pass
                elif parts[0] in ("search", "domain"):
                    search = parts[1:]
                elif parts[0] == "options":
                    opts += parts[1:]
    except FileNotFoundError:
        pass
    return ns, search, opts


def container_resolv(*, embedded_dns: str | None = None, dns: Sequence[str] = (),
                     dns_search: Sequence[str] = (), dns_options: Sequence[str] = (),
                     host_path: str = "/etc/resolv.conf") -> str:
    """resolv.conf for a container.

    On user networks (embedded_dns = the network's gateway) the only nameserver is berth's
    DNS server, which forwards other names; elsewhere --dns or the host's (non-loopback)
    servers, falling back to public resolvers as Docker does.
    """
    h_ns, h_search, h_opts = host_resolv(host_path)
    search = list(dns_search) or h_search
    opts = list(dns_options) or h_opts
    if embedded_dns:
        servers = [embedded_dns]
    else:
        servers = list(dns) or h_ns or list(FALLBACK_DNS)
    return resolv_conf(servers, search=search, options=opts)


def write_file(directory: str, name: str, content: str, mode: int = 0o644) -> str:
    """Write directory/name atomically (temporary file, fsync, rename)."""
    path = os.path.join(directory, name)
    tmp = os.path.join(directory, f".{name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        os.write(fd, content.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    return path


def write_container_files(directory: str, *, hostname: str, addresses: Iterable[IPv4Address | str] = (),
                          domainname: str = "", extra_hosts: Sequence[str] = (),
                          embedded_dns: str | None = None, dns: Sequence[str] = (),
                          dns_search: Sequence[str] = (), dns_options: Sequence[str] = (),
                          host_gateway: IPv4Address | None = None, aliases: Sequence[str] = (),
                          host_resolv_path: str = "/etc/resolv.conf") -> dict[str, str]:
    """Write hosts, resolv.conf and hostname into directory; returns {name: path}.

    Everything is validated before the first write, so bad input leaves nothing behind.
    """
    check_hostname(hostname)
    extra = [parse_add_host(s, host_gateway) for s in extra_hosts]
    contents = {
        "hostname": hostname + "\n",
        "hosts": hosts(hostname, addresses, domainname=domainname, extra_hosts=extra, aliases=aliases),
        "resolv.conf": container_resolv(embedded_dns=embedded_dns, dns=dns, dns_search=dns_search,
                                        dns_options=dns_options, host_path=host_resolv_path),
    }
    os.makedirs(directory, exist_ok=True)
    return {name: write_file(directory, name, text) for name, text in contents.items()}
