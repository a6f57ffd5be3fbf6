"""SQLite records of the network component (db.migrate("network", ...)).

Tables: networks, addresses (IPAM allocations: one row per taken address), endpoints and
port bindings. Allocations survive a daemon restart and are released with their endpoint.
"""

from __future__ import annotations

import json
import sqlite3
from ipaddress import IPv4Address, IPv4Network

from berth.errors import AlreadyExists, Conflict
from berth.metadata.db import Database
from berth.network.model import Endpoint, Network, PortBinding

MIGRATIONS = [
    """
    CREATE TABLE networks (
        id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, driver TEXT NOT NULL,
        subnet TEXT, gateway TEXT, ip_range TEXT, bridge TEXT NOT NULL DEFAULT '',
        internal INTEGER NOT NULL DEFAULT 0, options TEXT NOT NULL DEFAULT '{}',
        labels TEXT NOT NULL DEFAULT '{}', created REAL NOT NULL);
    CREATE TABLE network_addresses (
        network_id TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
        address TEXT NOT NULL, owner TEXT NOT NULL,
        PRIMARY KEY (network_id, address));
    CREATE TABLE network_endpoints (
        network_id TEXT NOT NULL REFERENCES networks(id),
        container_id TEXT NOT NULL, netns TEXT NOT NULL, ifname TEXT NOT NULL,
        host_ifname TEXT NOT NULL, address TEXT NOT NULL, prefixlen INTEGER NOT NULL,
        gateway TEXT, mac TEXT NOT NULL, aliases TEXT NOT NULL DEFAULT '[]',
        name TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (network_id, container_id));
    CREATE TABLE network_ports (
        container_id TEXT NOT NULL, network_id TEXT NOT NULL, proto TEXT NOT NULL,
        host_ip TEXT NOT NULL, host_port INTEGER NOT NULL,
        container_ip TEXT NOT NULL, container_port INTEGER NOT NULL,
        PRIMARY KEY (proto, host_ip, host_port));
    CREATE INDEX network_ports_container ON network_ports(container_id);
    """,
    "ALTER TABLE network_endpoints ADD COLUMN dns TEXT NOT NULL DEFAULT '[]'",
]


def _net(row: sqlite3.Row) -> Network:
    return Network(
        id=row["id"], name=row["name"], driver=row["driver"],
        subnet=IPv4Network(row["subnet"]) if row["subnet"] else None,
        gateway=IPv4Address(row["gateway"]) if row["gateway"] else None,
        ip_range=IPv4Network(row["ip_range"]) if row["ip_range"] else None,
        bridge=row["bridge"], internal=bool(row["internal"]),
        options=json.loads(row["options"]), labels=json.loads(row["labels"]), created=row["created"],
    )


def _ep(row: sqlite3.Row) -> Endpoint:
    return Endpoint(
        network_id=row["network_id"], container_id=row["container_id"], netns=row["netns"],
        ifname=row["ifname"], host_ifname=row["host_ifname"], address=IPv4Address(row["address"]),
        prefixlen=row["prefixlen"], gateway=IPv4Address(row["gateway"]) if row["gateway"] else None,
        mac=row["mac"], aliases=json.loads(row["aliases"]), name=row["name"], dns=json.loads(row["dns"]),
    )


def _port(row: sqlite3.Row) -> PortBinding:
    return PortBinding(row["container_id"], row["network_id"], row["proto"], row["host_ip"],
                       row["host_port"], row["container_ip"], row["container_port"])


class NetworkStore:
    """Network, address, endpoint and port records in the shared database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("network", MIGRATIONS)

    # networks
    def add_network(self, n: Network) -> None:
        try:
            with self.db.transaction() as c:
                c.execute(
                    "INSERT INTO networks(id, name, driver, subnet, gateway, ip_range, bridge, internal,"
                    " options, labels, created) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                    (n.id, n.name, n.driver, str(n.subnet) if n.subnet else None,
                     str(n.gateway) if n.gateway else None, str(n.ip_range) if n.ip_range else None,
                     n.bridge, int(n.internal), json.dumps(n.options), json.dumps(n.labels), n.created))
                if n.gateway:
                    c.execute("INSERT INTO network_addresses VALUES(?,?,?)",
                              (n.id, str(n.gateway), "gateway"))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"network with name {n.name} already exists") from None

    def remove_network(self, network_id: str) -> None:
        with self.db.transaction() as c:
            if c.execute("SELECT 1 FROM network_endpoints WHERE network_id=?", (network_id,)).fetchone():
                raise Conflict("network has active endpoints")
            c.execute("DELETE FROM network_addresses WHERE network_id=?", (network_id,))
            c.execute("DELETE FROM networks WHERE id=?", (network_id,))

    def networks(self) -> list[Network]:
        return [_net(r) for r in self.db.query("SELECT * FROM networks ORDER BY created, name")]

    def network_by_id(self, network_id: str) -> Network | None:
        row = self.db.query_one("SELECT * FROM networks WHERE id=?", (network_id,))
        return _net(row) if row else None

    # addresses
    def used_addresses(self, network_id: str) -> set[IPv4Address]:
        rows = self.db.query("SELECT address FROM network_addresses WHERE network_id=?", (network_id,))
        return {IPv4Address(r["address"]) for r in rows}

    def owner_of(self, network_id: str, addr: IPv4Address) -> str | None:
        row = self.db.query_one("SELECT owner FROM network_addresses WHERE network_id=? AND address=?",
                                (network_id, str(addr)))
        return row["owner"] if row else None

    # endpoints (an endpoint row and its address row are written and removed together)
    def add_endpoint(self, ep: Endpoint) -> None:
        with self.db.transaction() as c:
            try:
                c.execute("INSERT INTO network_addresses VALUES(?,?,?)",
                          (ep.network_id, str(ep.address), ep.container_id))
            except sqlite3.IntegrityError:
                raise Conflict(f"address {ep.address} is already in use") from None
            try:
                c.execute(
                    "INSERT INTO network_endpoints VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                    (ep.network_id, ep.container_id, ep.netns, ep.ifname, ep.host_ifname, str(ep.address),
                     ep.prefixlen, str(ep.gateway) if ep.gateway else None, ep.mac, json.dumps(ep.aliases),
                     ep.name, json.dumps(ep.dns)))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"container {ep.container_id[:12]} is already connected") from None

    def remove_endpoint(self, network_id: str, container_id: str) -> None:
        with self.db.transaction() as c:
            row = c.execute("SELECT address FROM network_endpoints WHERE network_id=? AND container_id=?",
                            (network_id, container_id)).fetchone()
            if row:
                c.execute("DELETE FROM network_addresses WHERE network_id=? AND address=? AND owner=?",
                          (network_id, row["address"], container_id))
            c.execute("DELETE FROM network_endpoints WHERE network_id=? AND container_id=?",
                      (network_id, container_id))

    def endpoint(self, network_id: str, container_id: str) -> Endpoint | None:
        row = self.db.query_one("SELECT * FROM network_endpoints WHERE network_id=? AND container_id=?",
                                (network_id, container_id))
        return _ep(row) if row else None

    def endpoints(self, network_id: str | None = None, container_id: str | None = None) -> list[Endpoint]:
        sql, args = "SELECT * FROM network_endpoints WHERE 1=1", []
        if network_id is not None:
            sql += " AND network_id=?"
            args.append(network_id)
        if container_id is not None:
            sql += " AND container_id=?"
            args.append(container_id)
        return [_ep(r) for r in self.db.query(sql + " ORDER BY address", args)]

    # ports
    def add_ports(self, bindings: list[PortBinding]) -> None:
        with self.db.transaction() as c:
            for b in bindings:
                try:
                    c.execute("INSERT INTO network_ports VALUES(?,?,?,?,?,?,?)",
                              (b.container_id, b.network_id, b.proto, b.host_ip, b.host_port,
                               b.container_ip, b.container_port))
                except sqlite3.IntegrityError:
                    raise Conflict(f"port {b.host_ip or '0.0.0.0'}:{b.host_port}/{b.proto} "
                                   "is already allocated") from None

    def remove_ports(self, container_id: str, network_id: str | None = None) -> list[PortBinding]:
        gone = self.ports(container_id, network_id)
        with self.db.transaction() as c:
            for b in gone:
                c.execute("DELETE FROM network_ports WHERE proto=? AND host_ip=? AND host_port=?",
                          (b.proto, b.host_ip, b.host_port))
        return gone

    def ports(self, container_id: str | None = None, network_id: str | None = None) -> list[PortBinding]:
        sql, args = "SELECT * FROM network_ports WHERE 1=1", []
        if container_id is not None:
            sql += " AND container_id=?"
            args.append(container_id)
        if network_id is not None:
            sql += " AND network_id=?"
            args.append(network_id)
        return [_port(r) for r in self.db.query(sql + " ORDER BY host_port, proto", args)]
