"""cgroup v1: OCI resources → ordered interface-file writes, one function per controller."""

from __future__ import annotations

from berth.errors import InvalidArgument
from berth.runtime.cgroups.devices import devices_v1
from berth.runtime.cgroups.resources import PREFIX, Write, device_number, entries, section, throttles

TYPE_CHECKING = False  # no typing at run time: it costs start-up
if TYPE_CHECKING:
    from typing import Any


def memory_v1(mem: dict[str, Any], *, current_limit: int | None = None,
              has_memsw: bool = True) -> list[Write]:
    """memory.limit_in_bytes, memsw (OCI swap is memory+swap already), soft limit, swappiness, OOM.

    When limit and swap are both set, memsw is written first if it grows (the kernel demands
    limit <= memsw at every step); current_limit is the present memory.limit_in_bytes.
    kernel and kernelTCP are ignored: kmem limits are deprecated and rejected by new kernels.
    """
    f = f"{PREFIX}.memory"
    w: list[Write] = []
    limit = mem.get("limit", 0)
    swap = mem.get("swap", 0)
    for k in ("limit", "swap", "reservation"):
        if mem.get(k, 0) < -1:
            raise InvalidArgument(f"{f}.{k} must be -1 (unlimited) or a positive number of bytes")
    if swap and not has_memsw:
        raise InvalidArgument(f"{f}.swap: swap accounting is not enabled on this host")
    if limit == -1 and swap == 0 and has_memsw:
        swap = -1
    if limit > 0 and swap > 0 and swap < limit:
        raise InvalidArgument(f"{f}.swap ({swap}) must be >= {f}.limit ({limit}): it is memory+swap")
    lim_w = Write("memory", "memory.limit_in_bytes", str(limit), f"{f}.limit")
    swap_w = Write("memory", "memory.memsw.limit_in_bytes", str(swap), f"{f}.swap")
    if limit and swap:
        if swap == -1 or current_limit is None or current_limit < swap:
            w += [swap_w, lim_w]
        else:
            w += [lim_w, swap_w]
    elif limit:
        w.append(lim_w)
    elif swap:
        w.append(swap_w)
    if mem.get("reservation"):
        w.append(Write("memory", "memory.soft_limit_in_bytes", str(mem["reservation"]), f"{f}.reservation"))
    if "swappiness" in mem:
        s = mem["swappiness"]
        if not 0 <= s <= 100:
            raise InvalidArgument(f"{f}.swappiness must be between 0 and 100 (got {s})")
        w.append(Write("memory", "memory.swappiness", str(s), f"{f}.swappiness"))
    if mem.get("disableOOMKiller"):
        w.append(Write("memory", "memory.oom_control", "1", f"{f}.disableOOMKiller"))
    return w


def cpu_v1(cpu: dict[str, Any]) -> list[Write]:
    """cpu.shares, CFS period then quota then burst, RT period then runtime, cpu.idle."""
    f = f"{PREFIX}.cpu"
    w: list[Write] = []
    if cpu.get("shares"):
        if cpu["shares"] < 2:
            raise InvalidArgument(f"{f}.shares must be at least 2 (got {cpu['shares']})")
        w.append(Write("cpu", "cpu.shares", str(cpu["shares"]), f"{f}.shares"))
    if cpu.get("period"):
        w.append(Write("cpu", "cpu.cfs_period_us", str(cpu["period"]), f"{f}.period"))
    if cpu.get("quota"):
        q = cpu["quota"]
        w.append(Write("cpu", "cpu.cfs_quota_us", str(q if q > 0 else -1), f"{f}.quota"))
    if "burst" in cpu:
        w.append(Write("cpu", "cpu.cfs_burst_us", str(cpu["burst"]), f"{f}.burst"))
    if cpu.get("realtimePeriod"):
        w.append(Write("cpu", "cpu.rt_period_us", str(cpu["realtimePeriod"]), f"{f}.realtimePeriod"))
    if cpu.get("realtimeRuntime"):
        w.append(Write("cpu", "cpu.rt_runtime_us", str(cpu["realtimeRuntime"]), f"{f}.realtimeRuntime"))
    if "idle" in cpu:
        w.append(Write("cpu", "cpu.idle", str(cpu["idle"]), f"{f}.idle"))
    return w


def cpuset(cpu: dict[str, Any], controller: str = "cpuset") -> list[Write]:
    """cpuset.cpus / cpuset.mems (same files on v1 and v2)."""
    f = f"{PREFIX}.cpu"
    w = []
    for k in ("cpus", "mems"):
        if cpu.get(k):
            w.append(Write(controller, f"cpuset.{k}", cpu[k], f"{f}.{k}"))
    return w


def pids_v1(pids: dict[str, Any], controller: str = "pids") -> list[Write]:
    """pids.max; a limit of 0 or -1 means unlimited ("max")."""
    if "limit" not in pids:
        return []
    limit = pids["limit"]
    return [Write(controller, "pids.max", "max" if limit <= 0 else str(limit), f"{PREFIX}.pids.limit")]


def blkio_v1(blkio: dict[str, Any], *, bfq: bool = False) -> list[Write]:
    """blkio.weight (blkio.bfq.weight when only BFQ is there), per-device weights, throttles."""
    f = f"{PREFIX}.blockIO"
    prefix = "blkio.bfq." if bfq else "blkio."
    w: list[Write] = []
    for k in ("weight", "leafWeight"):
        if blkio.get(k) and not 10 <= blkio[k] <= 1000:
            raise InvalidArgument(f"{f}.{k} must be between 10 and 1000 (got {blkio[k]})")
    if blkio.get("weight"):
        w.append(Write("blkio", prefix + "weight", str(blkio["weight"]), f"{f}.weight"))
    if blkio.get("leafWeight"):
        w.append(Write("blkio", "blkio.leaf_weight", str(blkio["leafWeight"]), f"{f}.leafWeight"))
    for i, d in enumerate(entries(blkio.get("weightDevice") or [], f"{f}.weightDevice", {})):
        where = f"{f}.weightDevice[{i}]"
        dev = device_number(d, where)
        if d.get("weight"):
            w.append(Write("blkio", prefix + "weight_device", f"{dev} {d['weight']}", f"{where}.weight"))
        if d.get("leafWeight"):
            w.append(Write("blkio", "blkio.leaf_weight_device", f"{dev} {d['leafWeight']}",
                           f"{where}.leafWeight"))
    files = {"throttleReadBpsDevice": "read_bps_device", "throttleWriteBpsDevice": "write_bps_device",
             "throttleReadIOPSDevice": "read_iops_device", "throttleWriteIOPSDevice": "write_iops_device"}
    for key, where, d in throttles(blkio):
        value = f"{device_number(d, where)} {d['rate']}"
        w.append(Write("blkio", "blkio.throttle." + files[key], value, where))
    return w


def hugetlb(limits: list[Any], *, v2: bool = False) -> list[Write]:
    """hugetlb.<size>.limit_in_bytes (v1) / hugetlb.<size>.max (v2)."""
    f = f"{PREFIX}.hugepageLimits"
    w = []
    for i, h in enumerate(entries(limits, f, {"pageSize": "str", "limit": "int"})):
        size = h["pageSize"]
        if not size or "/" in size or "." in size:
            raise InvalidArgument(f"{f}[{i}].pageSize is not a page size: {size!r}")
        if v2:
            value = str(h["limit"]) if h["limit"] >= 0 else "max"
            w.append(Write("", f"hugetlb.{size}.max", value, f"{f}[{i}]"))
        else:
            w.append(Write("hugetlb", f"hugetlb.{size}.limit_in_bytes", str(h["limit"]), f"{f}[{i}]"))
    return w


def network_v1(net: dict[str, Any]) -> list[Write]:
    """net_cls.classid and net_prio.ifpriomap (v1 only)."""
    f = f"{PREFIX}.network"
    w = []
    if net.get("classID"):
        w.append(Write("net_cls", "net_cls.classid", str(net["classID"]), f"{f}.classID"))
    for i, p in enumerate(entries(net.get("priorities") or [], f"{f}.priorities",
                                  {"name": "str", "priority": "int"})):
        value = f"{p['name']} {p['priority']}"
        w.append(Write("net_prio", "net_prio.ifpriomap", value, f"{f}.priorities[{i}]"))
    return w


def rdma(limits: dict[str, Any], controller: str = "rdma") -> list[Write]:
    """rdma.max lines "<hca> hca_handle=N hca_object=M"."""
    f = f"{PREFIX}.rdma"
    w = []
    for dev, lim in limits.items():
        if not isinstance(lim, dict):
            raise InvalidArgument(f"{f}.{dev} must be an object")
        parts = [dev]
        for key, name in (("hcaHandles", "hca_handle"), ("hcaObjects", "hca_object")):
            if lim.get(key) is not None:
                parts.append(f"{name}={lim[key]}")
        if len(parts) > 1:
            w.append(Write(controller, "rdma.max", " ".join(parts), f"{f}.{dev}"))
    return w


def translate_v1(resources: dict[str, Any], *, current_limit: int | None = None, has_memsw: bool = True,
                 bfq: bool = False) -> list[Write]:
    """All writes for validated OCI resources on cgroup v1, devices first."""
    if resources.get("unified"):
        raise InvalidArgument(f"{PREFIX}.unified is not supported on cgroup v1")
    w: list[Write] = []
    if resources.get("devices") is not None:
        w += devices_v1(resources["devices"])
    w += memory_v1(section(resources, "memory"), current_limit=current_limit, has_memsw=has_memsw)
    cpu = section(resources, "cpu")
    w += cpu_v1(cpu)
    w += cpuset(cpu)
    w += pids_v1(section(resources, "pids"))
    w += blkio_v1(section(resources, "blockIO"), bfq=bfq)
    w += hugetlb(resources.get("hugepageLimits") or [])
    w += network_v1(section(resources, "network"))
    w += rdma(resources.get("rdma") or {})
    return w
