"""berth update: change the resource limits (and restart policy) of containers."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [
    Flag(("--blkio-weight",), "blkio_weight", int, help="Block IO (relative weight), between 10 and 1000"),
    Flag(("--cpu-period",), "cpu_period", int, help="Limit CPU CFS (Completely Fair Scheduler) period"),
    Flag(("--cpu-quota",), "cpu_quota", int, help="Limit CPU CFS (Completely Fair Scheduler) quota"),
    Flag(("-c", "--cpu-shares"), "cpu_shares", int, help="CPU shares (relative weight)"),
    Flag(("--cpus",), "cpus", str, help="Number of CPUs"),
    Flag(("--cpuset-cpus",), "cpuset_cpus", str, help="CPUs in which to allow execution (0-3, 0,1)"),
    Flag(("--cpuset-mems",), "cpuset_mems", str, help="MEMs in which to allow execution (0-3, 0,1)"),
    Flag(("-m", "--memory"), "memory", str, help="Memory limit"),
    Flag(("--memory-reservation",), "memory_reservation", str, help="Memory soft limit"),
    Flag(("--memory-swap",), "memory_swap", str,
         help="Swap limit equal to memory plus swap: -1 to enable unlimited swap"),
    Flag(("--pids-limit",), "pids_limit", int, help="Tune container pids limit (set -1 for unlimited)"),
    Flag(("--restart",), "restart", str, help="Restart policy to apply when a container exits"),
]
USAGE = "[OPTIONS] CONTAINER [CONTAINER...]"
SUMMARY = "Update configuration of one or more containers"
MIN_ARGS = 1


def body(opts: dict) -> dict:
    """Only the given flags go in the UpdateConfig (the engine keeps the rest)."""
    from berth.cli.containerspec import mem_swap, nano_cpus, parse_restart, ram_bytes
    out: dict = {}
    for dest, field in (("blkio_weight", "BlkioWeight"), ("cpu_period", "CpuPeriod"),
                        ("cpu_quota", "CpuQuota"), ("cpu_shares", "CpuShares"), ("pids_limit", "PidsLimit"),
                        ("cpuset_cpus", "CpusetCpus"), ("cpuset_mems", "CpusetMems")):
        if opts.get(dest) is not None:
            out[field] = opts[dest]
    if opts.get("cpus"):
        out["NanoCpus"] = nano_cpus(opts["cpus"])
    if opts.get("memory"):
        out["Memory"] = ram_bytes(opts["memory"])
    if opts.get("memory_reservation"):
        out["MemoryReservation"] = ram_bytes(opts["memory_reservation"])
    if opts.get("memory_swap"):
        out["MemorySwap"] = mem_swap(opts["memory_swap"])
    if opts.get("restart"):
        out["RestartPolicy"] = parse_restart(opts["restart"])
    return out


def run(cli, opts, args) -> int:
    from berth.cli.commands._multi import for_each
    from berth.cli.containerspec import SpecError
    from berth.cli.context import CliError
    try:
        update = body(opts)
    except SpecError as e:
        raise CliError(f"{e}\nSee 'berth update --help'.", 125) from None
    if not update:
        raise CliError("you must provide one or more flags when using this command", 1)
    c = cli.client.containers

    def one(name: str) -> None:
        reply = c.update(name, update)
        for w in reply.get("Warnings") or []:
            cli.error(w)
    return for_each(cli, args, one)
