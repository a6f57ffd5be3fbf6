"""cgroup v2: OCI resources → ordered writes in the unified directory, one function per controller.

Conversions follow runc: cpu.weight from shares, io.weight from blkio weight, memory.swap.max
from the v1-style memory+swap value. Fields v2 cannot express raise InvalidArgument naming them.
Device rules are not file writes on v2; see `berth.runtime.cgroups.ebpf`.
"""

from __future__ import annotations

from berth.errors import InvalidArgument
from berth.runtime.cgroups.resources import PREFIX, Write, device_number, entries, section, throttles
from berth.runtime.cgroups.translate_v1 import cpuset, hugetlb, pids_v1, rdma

TYPE_CHECKING = False  # no typing at run time: it costs start-up
if TYPE_CHECKING:
    from typing import Any


def shares_to_weight(shares: int) -> int:
    """runc's ConvertCPUSharesToCgroupV2Value: [2, 262144] → [1, 10000]; 0 stays 0."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io_weight(weight: int) -> int:
    """runc's ConvertBlkIOToIOWeightValue: [10, 1000] → [1, 10000]; 0 stays 0."""
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def swap_to_v2(swap: int, limit: int) -> int:
    """runc's ConvertMemorySwapToCgroupV2Value: OCI memory+swap → memory.swap.max (-1 = max, 0 = unset)."""
    f = f"{PREFIX}.memory.swap"
    if limit == -1 and swap == 0:
        return -1
    if swap in (-1, 0):
        return swap
    if limit in (0, -1):
        raise InvalidArgument(f"{f}: cannot set a swap limit without a memory limit")
    if swap < limit:
        raise InvalidArgument(f"{f} ({swap}) must be >= {PREFIX}.memory.limit ({limit}): it is memory+swap")
    return swap - limit


def _num(v: int) -> str:
    return "max" if v == -1 else str(v)


def memory_v2(mem: dict[str, Any]) -> list[Write]:
    """memory.swap.max (first), memory.max, memory.low; kernel/kernelTCP are ignored."""
    f = f"{PREFIX}.memory"
    for k in ("limit", "swap", "reservation"):
        if mem.get(k, 0) < -1:
            raise InvalidArgument(f"{f}.{k} must be -1 (unlimited) or a positive number of bytes")
    if "swappiness" in mem:
        raise InvalidArgument(f"{f}.swappiness is not supported on cgroup v2")
    if mem.get("disableOOMKiller"):
        raise InvalidArgument(f"{f}.disableOOMKiller is not supported on cgroup v2")
    limit, swap = mem.get("limit", 0), mem.get("swap", 0)
    w = []
    if limit or swap:
        v2swap = swap_to_v2(swap, limit)
        if v2swap != 0 or swap > 0:   # swap == limit: disable swap, write "0"
            w.append(Write("", "memory.swap.max", _num(v2swap), f"{f}.swap"))
    if limit:
        w.append(Write("", "memory.max", _num(limit), f"{f}.limit"))
    if mem.get("reservation"):
        w.append(Write("", "memory.low", _num(mem["reservation"]), f"{f}.reservation"))
    return w


def cpu_v2(cpu: dict[str, Any]) -> list[Write]:
    """cpu.weight from shares, cpu.max "quota period", cpu.max.burst, cpu.idle."""
    f = f"{PREFIX}.cpu"
    for k in ("realtimeRuntime", "realtimePeriod"):
        if cpu.get(k):
            raise InvalidArgument(f"{f}.{k} is not supported on cgroup v2")
    w = []
    if cpu.get("shares"):
        if not 2 <= cpu["shares"] <= 262144:
            raise InvalidArgument(f"{f}.shares must be between 2 and 262144 (got {cpu['shares']})")
        w.append(Write("", "cpu.weight", str(shares_to_weight(cpu["shares"])), f"{f}.shares"))
    quota, period = cpu.get("quota", 0), cpu.get("period", 0)
    if quota or period:
        value = str(quota) if quota > 0 else "max"
        if period:
            value += f" {period}"
        w.append(Write("", "cpu.max", value, f"{f}.quota" if quota else f"{f}.period"))
    if "burst" in cpu:
        w.append(Write("", "cpu.max.burst", str(cpu["burst"]), f"{f}.burst"))
    if "idle" in cpu:
        w.append(Write("", "cpu.idle", str(cpu["idle"]), f"{f}.idle"))
    return w


def io_v2(blkio: dict[str, Any], *, bfq: bool = False) -> list[Write]:
    """io.bfq.weight (when BFQ is there) or io.weight (converted), per-device weights, io.max."""
    f = f"{PREFIX}.blockIO"
    if blkio.get("leafWeight"):
        raise InvalidArgument(f"{f}.leafWeight is not supported on cgroup v2")
    w = []
    weight = blkio.get("weight")
    if weight:
        if not 10 <= weight <= 1000:
            raise InvalidArgument(f"{f}.weight must be between 10 and 1000 (got {weight})")
        if bfq:
            w.append(Write("", "io.bfq.weight", str(weight), f"{f}.weight"))
        else:
            w.append(Write("", "io.weight", str(blkio_weight_to_io_weight(weight)), f"{f}.weight"))
    for i, d in enumerate(entries(blkio.get("weightDevice") or [], f"{f}.weightDevice", {})):
        where = f"{f}.weightDevice[{i}]"
        if d.get("leafWeight"):
            raise InvalidArgument(f"{where}.leafWeight is not supported on cgroup v2")
        if d.get("weight"):
            dev = device_number(d, where)
            if bfq:
                w.append(Write("", "io.bfq.weight", f"{dev} {d['weight']}", f"{where}.weight"))
            else:
                w.append(Write("", "io.weight", f"{dev} {blkio_weight_to_io_weight(d['weight'])}",
                               f"{where}.weight"))
    keys = {"throttleReadBpsDevice": "rbps", "throttleWriteBpsDevice": "wbps",
            "throttleReadIOPSDevice": "riops", "throttleWriteIOPSDevice": "wiops"}
    for key, where, d in throttles(blkio):
        rate = d["rate"] or "max"   # 0 removes the limit, as in v1
        w.append(Write("", "io.max", f"{device_number(d, where)} {keys[key]}={rate}", where))
    return w


def unified(values: dict[str, Any]) -> list[Write]:
    """linux.resources.unified: file name → value, written verbatim."""
    f = f"{PREFIX}.unified"
    w = []
    for name, value in values.items():
        bad = not isinstance(name, str) or "/" in name or "\0" in name
        if bad or name.startswith(".") or "." not in name:
            raise InvalidArgument(f"{f}: {name!r} is not a cgroup interface file name")
        if name.startswith("cgroup.") and name not in ("cgroup.max.depth", "cgroup.max.descendants"):
            raise InvalidArgument(f"{f}.{name} may not be set")
        if not isinstance(value, str):
            raise InvalidArgument(f"{f}.{name} must be a string")
        w.append(Write("", name, value, f"{f}.{name}"))
    return w


def translate_v2(resources: dict[str, Any], *, bfq: bool = False) -> list[Write]:
    """All file writes for validated OCI resources on cgroup v2 (devices are handled by eBPF)."""
    net = section(resources, "network")
    if net.get("classID") or net.get("priorities"):
        raise InvalidArgument(f"{PREFIX}.network is not supported on cgroup v2")
    w: list[Write] = []
    w += memory_v2(section(resources, "memory"))
    cpu = section(resources, "cpu")
    w += cpu_v2(cpu)
    w += cpuset(cpu, controller="")
    w += pids_v1(section(resources, "pids"), controller="")
    w += io_v2(section(resources, "blockIO"), bfq=bfq)
    w += hugetlb(resources.get("hugepageLimits") or [], v2=True)
    w += rdma(resources.get("rdma") or {}, controller="")
    w += unified(resources.get("unified") or {})
    return w
