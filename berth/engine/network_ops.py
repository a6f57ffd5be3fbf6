"""The Engine's networking: container network set-up at start and release at exit, and the
network endpoints of the API (create/list/inspect/remove/connect/disconnect/prune).

The work is done by ``berth.network.NetworkManager`` (netlink, nftables, IPAM, DNS); its calls
block, so they run in worker threads.
"""

from __future__ import annotations

import asyncio
import time

from berth.containers.state import Status
from berth.errors import BerthError, Conflict, InvalidArgument, NotFound

PREDEFINED = ("bridge", "host", "none")


def net_mode(host: dict) -> str:
    mode = host.get("NetworkMode") or "default"
    return "bridge" if mode == "default" else mode


class NetworkOps:
    """Mixed into Engine; ``self.net`` is the NetworkManager (None when networking is off)."""

    def _open_network(self) -> None:
        self.net = None
        if not getattr(self.cfg, "networking", True):
            return
        from berth.network import NetworkManager

        self.net = NetworkManager(
            self.db,
            self.cfg.exec_root,
            bridge_name=self.cfg.bridge,
            table=self.cfg.nft_table,
            default_subnet=self.cfg.default_subnet or None,
        )

    def _needs_netns(self, c) -> bool:
        mode = net_mode(c.host_config)
        return self.net is not None and mode not in ("none", "host") and not mode.startswith("container:")

    def _setup_network(self, c) -> tuple[str | None, dict[str, str] | None]:
        """Before the runtime starts: netns file, endpoints, published ports, /etc files.

        Returns (netns path for the spec, etc files) or (None, None) when the container does not
        get its own bridge networking.
        """
        if not self._needs_netns(c):
            return None, None
        host = c.host_config
        mode = net_mode(host)
        eps_cfg = c.extra.get("endpoints_config") or {}
        netns = self.net.create_netns(c.id)
        try:
            names = [mode] + [n for n in eps_cfg if n not in (mode, "default")]
            endpoints = {}
            for name in names:
                ec = eps_cfg.get(name) or eps_cfg.get("default") or {}
                ipam = ec.get("IPAMConfig") or {}
                aliases = list(ec.get("Aliases") or [])
                ep = self.net.connect(
                    name,
                    c.id,
                    netns,
                    ip=ipam.get("IPv4Address") or None,
                    mac=c.config.get("MacAddress") or ec.get("MacAddress") or None,
                    aliases=aliases,
                    name=c.name,
                    dns=host.get("Dns") or (),
                )
                if ep is not None:
                    endpoints[name] = ep
            ports = self._publish_specs(c)
            bindings = []
            first = endpoints.get(mode)
            if ports and first is not None:
                bindings = self.net.publish(c.id, first, ports)
            files = self.net.write_container_files(
                self.data_dir(c.id),
                c.id,
                hostname=c.config.get("Hostname") or c.id[:12],
                domainname=c.config.get("Domainname") or "",
                extra_hosts=host.get("ExtraHosts") or (),
                dns=host.get("Dns") or (),
                dns_search=host.get("DnsSearch") or (),
                dns_options=host.get("DnsOptions") or (),
            )
        except BaseException:
            self._release_network(c)
            raise
        c.extra["network"] = self._network_settings(c, endpoints, bindings, netns)
        etc = {
            "/etc/hosts": files["hosts"],
            "/etc/resolv.conf": files["resolv.conf"],
            "/etc/hostname": files["hostname"],
        }
        return netns, etc

    def _publish_specs(self, c) -> list[str]:
        host = c.host_config
        specs = []
        bound = set()
        for key, binds in (host.get("PortBindings") or {}).items():
            port, _, proto = key.partition("/")
            proto = proto or "tcp"
            bound.add(f"{port}/{proto}")
            for b in binds or [{}]:
                hip = (b or {}).get("HostIp") or ""
                hport = (b or {}).get("HostPort") or ""
                spec = f"{hport}:{port}/{proto}" if not hip else f"{hip}:{hport}:{port}/{proto}"
                specs.append(spec)
        if host.get("PublishAllPorts"):
            for key in c.config.get("ExposedPorts") or {}:
                port, _, proto = key.partition("/")
                if f"{port}/{proto or 'tcp'}" not in bound:
                    specs.append(f":{port}/{proto or 'tcp'}")
        return specs

    def _network_settings(self, c, endpoints: dict, bindings: list, netns: str) -> dict:
        nets = {}
        for name, ep in endpoints.items():
            nets[name] = {
                "IPAMConfig": None,
                "Links": None,
                "Aliases": ep.aliases or None,
                "NetworkID": ep.network_id,
                "EndpointID": ep.host_ifname,
                "Gateway": str(ep.gateway or ""),
                "IPAddress": str(ep.address),
                "IPPrefixLen": ep.prefixlen,
                "IPv6Gateway": "",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "MacAddress": ep.mac,
                "DriverOpts": None,
                "DNSNames": [c.name, c.id[:12], *ep.aliases] if name not in PREDEFINED else None,
            }
        ports: dict = {}
        for key in c.config.get("ExposedPorts") or {}:
            ports.setdefault(key if "/" in key else key + "/tcp", None)
        for b in bindings:
            key = f"{b.container_port}/{b.proto}"
            if ports.get(key) is None:
                ports[key] = []
            ports[key].append({"HostIp": b.host_ip or "0.0.0.0", "HostPort": str(b.host_port)})
        main = next(iter(endpoints.values()), None)
        out = {"sandbox_key": netns, "sandbox": c.id[:12], "ports": ports, "networks": nets}
        if main is not None and net_mode(c.host_config) == "bridge":
            out.update(
                {
                    "ip": str(main.address),
                    "prefix": main.prefixlen,
                    "gateway": str(main.gateway or ""),
                    "mac": main.mac,
                }
            )
        return out

    def _release_network(self, c) -> None:
        if self.net is None:
            return
        try:
            self.net.release(c.id)
        except BerthError:
            pass
        except Exception as e:  # noqa: BLE001 - best effort, logged
            import logging

            logging.getLogger("berth.engine").warning("releasing network of %s: %s", c.id, e)
        try:
            self.net.delete_netns(c.id)
        except Exception:  # noqa: BLE001
            pass
        net = c.extra.get("network")
        if net:
            c.extra["network"] = {"networks": net.get("networks", {}), "ports": {}}
            for ep in c.extra["network"]["networks"].values():
                ep.update(
                    {"IPAddress": "", "Gateway": "", "MacAddress": "", "IPPrefixLen": 0, "EndpointID": ""}
                )

    # -- API: networks ------------------------------------------------------------------
    def _net(self):
        if self.net is None:
            raise InvalidArgument("networking is disabled in this engine")
        return self.net

    def network_view(self, n) -> dict:
        containers = {}
        for ep in self.net.endpoints(network=n.id):
            try:
                c = self.containers.get(ep.container_id)
                name = c.name
            except NotFound:
                name = ""
            containers[ep.container_id] = {
                "Name": name,
                "EndpointID": ep.host_ifname,
                "MacAddress": ep.mac,
                "IPv4Address": f"{ep.address}/{ep.prefixlen}",
                "IPv6Address": "",
            }
        ipam_cfg = []
        if n.subnet is not None:
            entry = {"Subnet": str(n.subnet)}
            if n.gateway is not None:
                entry["Gateway"] = str(n.gateway)
            if n.ip_range is not None:
                entry["IPRange"] = str(n.ip_range)
            ipam_cfg.append(entry)
        return {
            "Name": n.name,
            "Id": n.id,
            "Created": _rfc(n.created),
            "Scope": "local",
            "Driver": n.driver if n.driver != "none" else "null",
            "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None, "Config": ipam_cfg},
            "Internal": n.internal,
            "Attachable": False,
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": containers,
            "Options": dict(n.options),
            "Labels": dict(n.labels),
        }

    def list_networks(self, filters: dict[str, list[str]] | None = None) -> list[dict]:
        out = []
        for n in self._net().list():
            v = self.network_view(n)
            if _net_matches(v, filters or {}):
                out.append(v)
        return out

    def inspect_network(self, id: str) -> dict:
        try:
            return self.network_view(self._net().get(id))
        except NotFound:
            raise NotFound(f"network {id} not found") from None

    def create_network(self, body: dict) -> dict:
        name = body.get("Name") or ""
        if not name:
            raise InvalidArgument("network name is required")
        driver = body.get("Driver") or "bridge"
        if driver != "bridge":
            raise InvalidArgument(
                f'plugin "{driver}" not found'
                if driver not in ("host", "null")
                else f'only one instance of "{driver}" network is allowed'
            )
        ipam = (body.get("IPAM") or {}).get("Config") or [{}]
        cfg = ipam[0] if ipam else {}
        try:
            self._net().get(name)
            raise Conflict(f"network with name {name} already exists")
        except NotFound:
            pass
        n = self._net().create_network(
            name,
            driver=driver,
            subnet=cfg.get("Subnet") or None,
            gateway=cfg.get("Gateway") or None,
            ip_range=cfg.get("IPRange") or None,
            internal=bool(body.get("Internal")),
            labels=body.get("Labels") or {},
            options=body.get("Options") or {},
        )
        self.bus.emit("network", "create", n.id, {"name": n.name, "type": driver})
        return {"Id": n.id, "Warning": ""}

    def remove_network(self, id: str) -> None:
        try:
            n = self._net().get(id)
        except NotFound:
            raise NotFound(f"network {id} not found") from None
        if n.name in PREDEFINED:
            raise Conflict(f"{n.name} is a pre-defined network and cannot be removed")
        self._net().remove_network(n.id)
        self.bus.emit("network", "destroy", n.id, {"name": n.name, "type": n.driver})

    async def connect_network(self, id: str, container: str, endpoint_config: dict | None = None) -> None:
        n = self._net().get(id)
        c = self.containers.get(container)
        eps = c.extra.setdefault("endpoints_config", {})
        eps[n.name] = endpoint_config or {}
        if c.state.status in (Status.RUNNING, Status.PAUSED) and c.extra.get("network", {}).get(
            "sandbox_key"
        ):
            ec = endpoint_config or {}
            ep = await asyncio.to_thread(
                self.net.connect,
                n.name,
                c.id,
                c.extra["network"]["sandbox_key"],
                ip=(ec.get("IPAMConfig") or {}).get("IPv4Address") or None,
                aliases=list(ec.get("Aliases") or []),
                name=c.name,
            )
            if ep is not None:
                c.extra["network"]["networks"][n.name] = self._network_settings(
                    c, {n.name: ep}, [], c.extra["network"]["sandbox_key"]
                )["networks"][n.name]
        self.containers.save(c)
        self.bus.emit("network", "connect", n.id, {"name": n.name, "container": c.id, "type": n.driver})

    async def disconnect_network(self, id: str, container: str, force: bool = False) -> None:
        n = self._net().get(id)
        c = self.containers.get(container)
        (c.extra.get("endpoints_config") or {}).pop(n.name, None)
        if c.host_config.get("NetworkMode") in (n.name, n.id):
            c.host_config["NetworkMode"] = (
                "none" if not c.extra.get("endpoints_config") else next(iter(c.extra["endpoints_config"]))
            )
        if c.state.status in (Status.RUNNING, Status.PAUSED):
            try:
                await asyncio.to_thread(self.net.disconnect, n.name, c.id)
            except NotFound:
                if not force:
                    raise
        (c.extra.get("network") or {}).get("networks", {}).pop(n.name, None)
        self.containers.save(c)
        self.bus.emit("network", "disconnect", n.id, {"name": n.name, "container": c.id, "type": n.driver})

    def prune_networks(self, filters: dict[str, list[str]] | None = None) -> dict:
        """``docker network prune``: unused custom networks; filters ``until``, ``label``, ``label!``."""
        from berth.engine.build_ops import until_time

        filters = {k: v for k, v in (filters or {}).items() if v}
        unknown = sorted(set(filters) - {"until", "label", "label!"})
        if unknown:
            raise InvalidArgument(f"invalid filter '{unknown[0]}'")
        until = until_time(filters["until"][0]) if filters.get("until") else None
        deleted = []
        for n in self._net().list():
            if n.name in PREDEFINED or self.net.endpoints(network=n.id):
                continue
            if until is not None and n.created >= until:
                continue
            if not all(_label_match(n.labels, lw) for lw in filters.get("label", [])):
                continue
            if any(_label_match(n.labels, lw) for lw in filters.get("label!", [])):
                continue
            if any(net_mode(c.host_config) in (n.name, n.id) for c in self.containers.all()):
                continue
            self.net.remove_network(n.id)
            self.bus.emit("network", "destroy", n.id, {"name": n.name, "type": n.driver})
            deleted.append(n.name)
        self.bus.emit("network", "prune", "", {"reclaimed": "0"})
        return {"NetworksDeleted": deleted or None}


def _net_matches(v: dict, filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if not values:
            continue
        if key == "name" and not any(x in v["Name"] for x in values):
            return False
        if key == "id" and not any(v["Id"].startswith(x) for x in values):
            return False
        if key == "driver" and v["Driver"] not in values:
            return False
        if key == "type":
            kind = "builtin" if v["Name"] in PREDEFINED else "custom"
            if kind not in values:
                return False
        if key == "label":
            for x in values:
                k, eq, val = x.partition("=")
                if k not in v["Labels"] or (eq and v["Labels"][k] != val):
                    return False
    return True


def _rfc(ts: float) -> str:
    ts = ts or time.time()
    ns = int(ts * 1e9)
    s, n = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{n:09d}Z"


def _label_match(labels: dict[str, str], want: str) -> bool:
    k, eq, v = want.partition("=")
    return k in labels and (not eq or labels[k] == v)
