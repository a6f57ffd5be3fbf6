"""nftables rules in berth's own table, rendered whole from the records and swapped atomically.

Every change re-renders the table and loads it with one `nft -f -` transaction
("create the table if missing; delete it; define it again"), so the kernel never sees a
half-applied state and stale rules cannot accumulate. Only berth's table is touched.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from berth.errors import BerthError
from berth.network.model import Network, PortBinding

NFT = "nft"


@dataclass(frozen=True)
class BridgeRules:
    """What the firewall needs to know about one bridge network."""

    bridge: str
    subnet: str
    internal: bool = False
    masquerade: bool = True


def _q(name: str) -> str:
    return json.dumps(name)  # nft accepts double-quoted strings


def bridge_rules(networks: Iterable[Network]) -> list[BridgeRules]:
    out = []
    for n in networks:
        if n.driver != "bridge" or not n.bridge or n.subnet is None:
            continue
        masq = n.options.get("com.docker.network.bridge.enable_ip_masquerade", "true") != "false"
        out.append(BridgeRules(n.bridge, str(n.subnet), n.internal, masq and not n.internal))
    return out


def render(table: str, bridges: list[BridgeRules], ports: list[PortBinding]) -> str:
    """The complete `nft -f` script that (re)defines table inet <table>."""
    lines = [f"table inet {table}", f"delete table inet {table}", f"table inet {table} {{"]
    names = [b.bridge for b in bridges]
    if names:
        lines.append("  set bridges { type ifname; elements = { " + ", ".join(_q(n) for n in names) + " } }")
    else:
        lines.append("  set bridges { type ifname; }")

    lines += [
        "  chain prerouting { type nat hook prerouting priority dstnat; policy accept;",
        "    fib daddr type local jump published",
        "  }",
        "  chain output { type nat hook output priority -100; policy accept;",
        "    fib daddr type local jump published",
        "  }",
        "  chain published {",
    ]
    for p in ports:
        match = f"ip daddr {p.host_ip} " if p.host_ip else ""
        target = f"{p.container_ip}:{p.container_port}"
        lines.append(f"    {match}{p.proto} dport {p.host_port} dnat ip to {target}")
    lines.append("  }")

    lines.append("  chain postrouting { type nat hook postrouting priority srcnat; policy accept;")
    for b in bridges:
        br = _q(b.bridge)
        # 127.0.0.1:port published → container: the source must become the gateway
        lines.append(f"    oifname {br} ip saddr 127.0.0.0/8 masquerade")
        # hairpin: a container reaching its own network through a published host port
        lines.append(f"    oifname {br} ip saddr {b.subnet} ct status dnat masquerade")
        if b.masquerade:
            lines.append(f"    ip saddr {b.subnet} oifname != {br} masquerade")
    lines.append("  }")

    lines.append("  chain forward { type filter hook forward priority filter; policy accept;")
    for b in bridges:
        if b.internal:
            br = _q(b.bridge)
            lines.append(f"    iifname {br} oifname != {br} drop")
            lines.append(f"    oifname {br} iifname != {br} drop")
    if len(bridges) > 1:
        lines.append("    ct status dnat accept")
        for b in bridges:
            br = _q(b.bridge)
            lines.append(f"    iifname {br} oifname != {br} oifname @bridges drop")
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def apply(script: str) -> None:
    """Load an nft script in one transaction (in the calling thread's netns)."""
    try:
        r = subprocess.run([NFT, "-f", "-"], input=script, capture_output=True, text=True)
    except FileNotFoundError:
        raise BerthError("nft (nftables) is not installed") from None
    if r.returncode != 0:
        raise BerthError(f"nft failed: {r.stderr.strip()}")


def delete_table(table: str) -> None:
    """Delete berth's table if it exists."""
    apply(f"table inet {table}\ndelete table inet {table}\n")


def rule_count(table: str) -> int:
    """How many rules the table holds (0 if it does not exist); for checks and tests."""
    r = subprocess.run([NFT, "-j", "list", "table", "inet", table], capture_output=True, text=True)
    if r.returncode != 0:
        return 0
    items = json.loads(r.stdout).get("nftables", [])
    return sum(1 for i in items if "rule" in i)


def table_exists(table: str) -> bool:
    r = subprocess.run([NFT, "list", "table", "inet", table], capture_output=True, text=True)
    return r.returncode == 0
