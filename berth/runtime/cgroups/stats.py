"""Stats in the shape of runc's `events --stats` "data" (types.Stats, JSON names).

Every key is always present (zeros when a controller is missing) so consumers need no
guards. Parsers take a `read(controller, file) -> str | None` callable, so they run the same on
a live hierarchy and on sample files.
"""

from __future__ import annotations

import os

from berth.runtime.cgroups.fs import parse_flat_keyed, parse_uint

TYPE_CHECKING = False  # no typing at run time: it costs start-up
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Reader = Callable[[str, str], "str | None"]
UINT64_MAX = 2**64 - 1
_BLKIO_OPS = {"read": "Read", "write": "Write", "sync": "Sync", "async": "Async", "discard": "Discard",
              "total": "Total"}


def _entry(limit: int = 0, usage: int = 0, max_: int = 0, failcnt: int = 0) -> dict[str, int]:
    return {"limit": limit, "usage": usage, "max": max_, "failcnt": failcnt}


def empty_stats() -> dict[str, Any]:
    return {
        "cpu": {"usage": {"total": 0, "percpu": [], "percpu_kernel": [], "percpu_user": [],
                          "kernel": 0, "user": 0},
                "throttling": {"periods": 0, "throttledPeriods": 0, "throttledTime": 0}},
        "memory": {"cache": 0, "usage": _entry(), "swap": _entry(), "kernel": _entry(),
                   "kernelTCP": _entry(), "raw": {}},
        "pids": {"current": 0, "limit": 0},
        "blkio": {"ioServiceBytesRecursive": [], "ioServicedRecursive": [], "ioQueueRecursive": [],
                  "ioServiceTimeRecursive": [], "ioWaitTimeRecursive": [], "ioMergedRecursive": [],
                  "ioTimeRecursive": [], "sectorsRecursive": []},
        "hugetlb": {},
    }


def _ints(text: str | None) -> list[int]:
    return [int(x) for x in (text or "").split()]


def _clk_tck() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):
        return 100


def parse_blkio_v1(text: str | None) -> list[dict[str, Any]]:
    """Lines "8:0 Read 4096" (and "Total 123") → BlkioEntry dicts."""
    out = []
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) != 3 or ":" not in parts[0]:
            continue
        major, minor = parts[0].split(":", 1)
        out.append({"major": int(major), "minor": int(minor), "op": parts[1], "value": int(parts[2])})
    return out


def stats_v1(read: Reader) -> dict[str, Any]:
    """Collect stats from v1 hierarchies (controllers cpu, cpuacct, memory, pids, blkio, hugetlb)."""
    s = empty_stats()
    cpu = s["cpu"]
    cpu["usage"]["total"] = parse_uint(read("cpuacct", "cpuacct.usage"))
    cpu["usage"]["percpu"] = _ints(read("cpuacct", "cpuacct.usage_percpu"))
    all_ = read("cpuacct", "cpuacct.usage_all")
    if all_:
        rows = [line.split() for line in all_.splitlines()[1:] if len(line.split()) == 3]
        cpu["usage"]["percpu_user"] = [int(r[1]) for r in rows]
        cpu["usage"]["percpu_kernel"] = [int(r[2]) for r in rows]
    ticks = parse_flat_keyed(read("cpuacct", "cpuacct.stat") or "")
    ns_per_tick = 1_000_000_000 // _clk_tck()
    cpu["usage"]["user"] = ticks.get("user", 0) * ns_per_tick
    cpu["usage"]["kernel"] = ticks.get("system", 0) * ns_per_tick
    cs = parse_flat_keyed(read("cpu", "cpu.stat") or "")
    cpu["throttling"] = {"periods": cs.get("nr_periods", 0), "throttledPeriods": cs.get("nr_throttled", 0),
                         "throttledTime": cs.get("throttled_time", 0)}

    mem = s["memory"]
    raw = parse_flat_keyed(read("memory", "memory.stat") or "")
    mem["raw"] = raw
    mem["cache"] = raw.get("cache", 0)
    for key, prefix in (("usage", "memory"), ("swap", "memory.memsw"), ("kernel", "memory.kmem"),
                        ("kernelTCP", "memory.kmem.tcp")):
        mem[key] = _entry(limit=parse_uint(read("memory", f"{prefix}.limit_in_bytes")),
                          usage=parse_uint(read("memory", f"{prefix}.usage_in_bytes")),
                          max_=parse_uint(read("memory", f"{prefix}.max_usage_in_bytes")),
                          failcnt=parse_uint(read("memory", f"{prefix}.failcnt")))

    s["pids"] = {"current": parse_uint(read("pids", "pids.current")),
                 "limit": parse_uint(read("pids", "pids.max"))}

    b = s["blkio"]
    names = {"ioServiceBytesRecursive": "io_service_bytes_recursive",
             "ioServicedRecursive": "io_serviced_recursive",
             "ioQueueRecursive": "io_queued_recursive", "ioServiceTimeRecursive": "io_service_time_recursive",
             "ioWaitTimeRecursive": "io_wait_time_recursive", "ioMergedRecursive": "io_merged_recursive",
             "ioTimeRecursive": "time_recursive", "sectorsRecursive": "sectors_recursive"}
    for key, name in names.items():
        b[key] = parse_blkio_v1(read("blkio", f"blkio.{name}"))
    # Without CFQ, the throttle (or BFQ) files carry the byte and request counts.
    for prefix in ("blkio.throttle.", "blkio.bfq."):
        for key in ("ioServiceBytesRecursive", "ioServicedRecursive"):
            if not b[key]:
                b[key] = parse_blkio_v1(read("blkio", prefix + names[key]))
    return s


def parse_io_stat(text: str | None) -> dict[str, list[dict[str, Any]]]:
    """io.stat "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0" → v1-shaped entries."""
    by_bytes, by_ios = [], []
    for line in (text or "").splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        major, minor = (int(x) for x in parts[0].split(":", 1))
        for kv in parts[1:]:
            k, _, v = kv.partition("=")
            if not v.isdigit():
                continue
            op = {"r": "Read", "w": "Write", "d": "Discard"}.get(k[:1])
            if op and k.endswith("bytes"):
                by_bytes.append({"major": major, "minor": minor, "op": op, "value": int(v)})
            elif op and k.endswith("ios"):
                by_ios.append({"major": major, "minor": minor, "op": op, "value": int(v)})
    return {"ioServiceBytesRecursive": by_bytes, "ioServicedRecursive": by_ios}


def stats_v2(read: Reader) -> dict[str, Any]:
    """Collect stats from a v2 cgroup (controller argument is ignored: one directory)."""
    s = empty_stats()
    cs = parse_flat_keyed(read("", "cpu.stat") or "")
    s["cpu"]["usage"].update(total=cs.get("usage_usec", 0) * 1000, user=cs.get("user_usec", 0) * 1000,
                             kernel=cs.get("system_usec", 0) * 1000)
    s["cpu"]["throttling"] = {"periods": cs.get("nr_periods", 0),
                              "throttledPeriods": cs.get("nr_throttled", 0),
                              "throttledTime": cs.get("throttled_usec", 0) * 1000}

    mem = s["memory"]
    raw = parse_flat_keyed(read("", "memory.stat") or "")
    mem["raw"] = raw
    mem["cache"] = raw.get("file", 0)
    events = parse_flat_keyed(read("", "memory.events") or "")
    usage = parse_uint(read("", "memory.current"))
    limit = parse_uint(read("", "memory.max"), max_as=UINT64_MAX)
    mem["usage"] = _entry(limit=limit, usage=usage, max_=parse_uint(read("", "memory.peak")),
                          failcnt=events.get("max", 0))
    swap_cur = read("", "memory.swap.current")
    if swap_cur is not None:
        # as runc: report memory+swap, like v1's memsw
        swap_limit = parse_uint(read("", "memory.swap.max"), max_as=UINT64_MAX)
        if swap_limit != UINT64_MAX and limit != UINT64_MAX:
            swap_limit += limit
        else:
            swap_limit = UINT64_MAX
        mem["swap"] = _entry(limit=swap_limit, usage=parse_uint(swap_cur) + usage,
                             max_=parse_uint(read("", "memory.swap.peak")))

    s["pids"] = {"current": parse_uint(read("", "pids.current")), "limit": parse_uint(read("", "pids.max"))}
    s["blkio"].update(parse_io_stat(read("", "io.stat")))
    return s
