"""berth port: list a container's port mappings (or the mapping of one private port)."""

from __future__ import annotations

FLAGS: list = []
USAGE = "CONTAINER [PRIVATE_PORT[/PROTO]]"
SUMMARY = "List port mappings or a specific mapping for the container"
MIN_ARGS, MAX_ARGS = 1, 2


def _addr(b: dict) -> str:
    ip = b.get("HostIp") or "0.0.0.0"
    return f"[{ip}]:{b.get('HostPort', '')}" if ":" in ip else f"{ip}:{b.get('HostPort', '')}"


def _key(port: str) -> tuple[int, str]:
    num, _, proto = port.partition("/")
    return (int(num) if num.isdigit() else 0, proto)


def run(cli, opts, args) -> int:
    from berth.cli.context import CliError
    info = cli.client.containers.inspect(args[0])
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    if len(args) == 2:
        want = args[1] if "/" in args[1] else f"{args[1]}/tcp"
        num = want.partition("/")[0]
        if not num.isdigit():
            raise CliError(f"Error: invalid port ({args[1]}): must be a number", 1)
        binds = ports.get(want) or []
        if not binds:
            raise CliError(f"Error: No public port '{want}' published for {args[0]}", 1)
        for b in binds:
            cli.print(_addr(b))
        return 0
    for port in sorted(ports, key=_key):
        for b in ports[port] or []:
            cli.print(f"{port} -> {_addr(b)}")
    return 0
