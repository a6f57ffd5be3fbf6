"""One Config (data root, socket, storage driver, runtime root) from file, environment and flags."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields

DEFAULT_CONFIG_FILE = "/etc/berth/daemon.json"


@dataclass
class Config:
    data_root: str = "/var/lib/berth"
    exec_root: str = "/run/berth"
    socket: str = "/run/berth/berth.sock"
    storage_driver: str = ""  # "" = pick by priority (overlay, btrfs, vfs)
    runtime: str = "berth"  # "berth" (in-process berth runtime) or the path of a runc-compatible binary
    runtime_root: str = "/run/berth-runtime"
    cgroup_parent: str = "berth"
    networking: bool = True
    bridge: str = "berth0"  # the default bridge network's Linux bridge
    nft_table: str = "berth"  # berth's own nftables table (never touches others)
    default_subnet: str = ""  # "" = 172.17.0.0/16 unless routed, else the next free pool subnet
    log_level: str = "info"
    hosts: list[str] = field(default_factory=list)
    tls: bool = False
    tlsverify: bool = False
    tlscacert: str = ""
    tlscert: str = ""
    tlskey: str = ""
    limits: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | None = None, env: dict[str, str] | None = None, **overrides) -> Config:
        """Defaults < daemon.json < BERTH_* environment < explicit overrides."""
        env = os.environ if env is None else env
        cfg = cls()
        path = path or env.get("BERTH_CONFIG") or DEFAULT_CONFIG_FILE
        if os.path.exists(path):
            with open(path) as f:
                data = json.load(f)
            for k, v in data.items():
                name = k.replace("-", "_")
                if name == "data_root" or name in {f.name for f in fields(cls)}:
                    setattr(cfg, name, v)
        for f in fields(cls):
            key = "BERTH_" + f.name.upper()
            if key in env and isinstance(getattr(cfg, f.name), str):
                setattr(cfg, f.name, env[key])
        for k, v in overrides.items():
            if v is not None:
                setattr(cfg, k, v)
        return cfg
