"""cgroup v1: pure translations from OCI resources to file writes, stats parsing, tmpdir manager."""

from __future__ import annotations

import os

import pytest

from berth.errors import InvalidArgument
from berth.runtime.cgroups import DEFAULT_ALLOWED_DEVICES, manager_for
from berth.runtime.cgroups.devices import devices_v1, parse_rules
from berth.runtime.cgroups.fake import RecordingFS
from berth.runtime.cgroups.manager_v1 import hierarchies
from berth.runtime.cgroups.resources import Write, validate
from berth.runtime.cgroups.stats import stats_v1
from berth.runtime.cgroups.translate_v1 import (
    blkio_v1,
    cpu_v1,
    cpuset,
    hugetlb,
    memory_v1,
    network_v1,
    pids_v1,
    translate_v1,
)

MiB = 1 << 20


def files(writes: list[Write]) -> list[tuple[str, str]]:
    return [(w.file, w.value) for w in writes]


def test_memory_limit_swap_order():
    # growing: memsw first, or the kernel rejects limit > memsw
    w = memory_v1({"limit": 128 * MiB, "swap": 256 * MiB}, current_limit=64 * MiB)
    assert files(w) == [("memory.memsw.limit_in_bytes", str(256 * MiB)),
                        ("memory.limit_in_bytes", str(128 * MiB))]
    # shrinking below the current limit: limit first
    w = memory_v1({"limit": 32 * MiB, "swap": 48 * MiB}, current_limit=64 * MiB)
    assert files(w) == [("memory.limit_in_bytes", str(32 * MiB)),
                        ("memory.memsw.limit_in_bytes", str(48 * MiB))]
    # unlimited memory without explicit swap: swap unlimited too
    assert files(memory_v1({"limit": -1})) == [("memory.memsw.limit_in_bytes", "-1"),
                                               ("memory.limit_in_bytes", "-1")]
    assert files(memory_v1({"limit": -1}, has_memsw=False)) == [("memory.limit_in_bytes", "-1")]
    assert all(w.controller == "memory" for w in memory_v1({"limit": 1, "swap": 2}))


def test_memory_other_fields():
    w = memory_v1({"reservation": 10 * MiB, "swappiness": 0, "disableOOMKiller": True,
                   "kernel": 5, "kernelTCP": 5})
    assert files(w) == [("memory.soft_limit_in_bytes", str(10 * MiB)), ("memory.swappiness", "0"),
                        ("memory.oom_control", "1")]
    assert memory_v1({"disableOOMKiller": False}) == []
    assert w[0].field == "linux.resources.memory.reservation"


@pytest.mark.parametrize("mem, field", [
    ({"limit": 100, "swap": 50}, "swap"),
    ({"swappiness": 101}, "swappiness"),
    ({"limit": -2}, "limit"),
])
def test_memory_errors(mem, field):
    with pytest.raises(InvalidArgument, match=rf"linux\.resources\.memory\.{field}"):
        memory_v1(mem)
    with pytest.raises(InvalidArgument, match=r"swap accounting"):
        memory_v1({"limit": 100, "swap": 200}, has_memsw=False)


def test_cpu():
    w = cpu_v1({"shares": 512, "quota": 50000, "period": 100000, "burst": 10, "realtimePeriod": 1000000,
                "realtimeRuntime": 950000, "idle": 1})
    assert files(w) == [("cpu.shares", "512"), ("cpu.cfs_period_us", "100000"), ("cpu.cfs_quota_us", "50000"),
                        ("cpu.cfs_burst_us", "10"), ("cpu.rt_period_us", "1000000"),
                        ("cpu.rt_runtime_us", "950000"), ("cpu.idle", "1")]
    assert files(cpu_v1({"quota": -1})) == [("cpu.cfs_quota_us", "-1")]
    assert files(cpuset({"cpus": "0-1", "mems": "0"})) == [("cpuset.cpus", "0-1"), ("cpuset.mems", "0")]
    assert {w.controller for w in cpuset({"cpus": "0"})} == {"cpuset"}
    with pytest.raises(InvalidArgument, match=r"cpu\.shares"):
        cpu_v1({"shares": 1})


def test_pids():
    assert files(pids_v1({"limit": 10})) == [("pids.max", "10")]
    assert files(pids_v1({"limit": 0})) == [("pids.max", "max")]
    assert files(pids_v1({"limit": -1})) == [("pids.max", "max")]
    assert pids_v1({}) == []


def test_blkio():
    res = {"weight": 500, "leafWeight": 300,
           "weightDevice": [{"major": 8, "minor": 0, "weight": 100, "leafWeight": 50}],
           "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1024}],
           "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2048}],
           "throttleReadIOPSDevice": [{"major": 8, "minor": 16, "rate": 10}],
           "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 20}]}
    assert files(blkio_v1(res)) == [
        ("blkio.weight", "500"), ("blkio.leaf_weight", "300"), ("blkio.weight_device", "8:0 100"),
        ("blkio.leaf_weight_device", "8:0 50"), ("blkio.throttle.read_bps_device", "8:0 1024"),
        ("blkio.throttle.write_bps_device", "8:0 2048"), ("blkio.throttle.read_iops_device", "8:16 10"),
        ("blkio.throttle.write_iops_device", "8:16 20")]
    assert files(blkio_v1({"weight": 500}, bfq=True)) == [("blkio.bfq.weight", "500")]
    with pytest.raises(InvalidArgument, match=r"blockIO\.weight"):
        blkio_v1({"weight": 5})
    with pytest.raises(InvalidArgument, match=r"throttleReadBpsDevice\[0\]\.rate"):
        blkio_v1({"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": -1}]})


def test_hugetlb_network():
    w = hugetlb([{"pageSize": "2MB", "limit": 4 * MiB}])
    assert files(w) == [("hugetlb.2MB.limit_in_bytes", str(4 * MiB))]
    with pytest.raises(InvalidArgument, match=r"pageSize"):
        hugetlb([{"pageSize": "../x", "limit": 1}])
    w = network_v1({"classID": 0x100001, "priorities": [{"name": "eth0", "priority": 5}]})
    assert [(x.controller, x.file, x.value) for x in w] == [("net_cls", "net_cls.classid", "1048577"),
                                                            ("net_prio", "net_prio.ifpriomap", "eth0 5")]


def test_devices_start_from_deny_all_and_keep_order():
    rules = [{"allow": False, "access": "rwm"}, *DEFAULT_ALLOWED_DEVICES,
             {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"}]
    assert files(devices_v1(rules)) == [
        ("devices.deny", "a"), ("devices.deny", "a *:* rwm"), ("devices.allow", "c *:* m"),
        ("devices.allow", "b *:* m"), ("devices.allow", "c 1:3 rwm"), ("devices.allow", "c 1:8 rwm"),
        ("devices.allow", "c 1:7 rwm"), ("devices.allow", "c 5:0 rwm"), ("devices.allow", "c 1:5 rwm"),
        ("devices.allow", "c 1:9 rwm"), ("devices.allow", "c 136:* rwm"), ("devices.allow", "c 5:2 rwm"),
        ("devices.deny", "c 10:229 rwm")]
    # privileged: allow everything
    assert files(devices_v1([{"allow": True, "access": "rwm"}])) == [("devices.deny", "a"),
                                                                     ("devices.allow", "a *:* rwm")]
    rule = {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "wr"}
    assert parse_rules([rule])[0].access == "rw"


def test_default_allowed_devices_shape():
    assert len(DEFAULT_ALLOWED_DEVICES) == 10
    assert all(d["allow"] is True for d in DEFAULT_ALLOWED_DEVICES)
    assert [r.v1_string() for r in parse_rules(DEFAULT_ALLOWED_DEVICES)] == [
        "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:8 rwm", "c 1:7 rwm", "c 5:0 rwm", "c 1:5 rwm", "c 1:9 rwm",
        "c 136:* rwm", "c 5:2 rwm"]


def test_translate_v1_rejects_unified_and_unknown():
    with pytest.raises(InvalidArgument, match=r"linux\.resources\.unified is not supported on cgroup v1"):
        translate_v1(validate({"unified": {"memory.high": "1"}}))
    with pytest.raises(InvalidArgument, match=r"linux\.resources\.memory\.limt is not supported"):
        validate({"memory": {"limt": 1}})
    with pytest.raises(InvalidArgument, match=r"linux\.resources\.pids\.limit must be of type int"):
        validate({"pids": {"limit": True}})
    assert translate_v1(validate({"unified": {}, "memory": None})) == []


# hierarchies and the manager on a tmpdir tree --------------------------------------------------

def make_v1_tree(root):
    for name in ("cpu,cpuacct", "cpuset", "memory", "pids", "devices", "freezer", "systemd", "unified"):
        os.makedirs(os.path.join(root, name))
    os.symlink("cpu,cpuacct", os.path.join(root, "cpu"))
    os.symlink("cpu,cpuacct", os.path.join(root, "cpuacct"))
    for name, text in (("cpuset.cpus", "0-3"), ("cpuset.mems", "0")):
        with open(os.path.join(root, "cpuset", name), "w") as f:
            f.write(text)
    return root


class TreeFS(RecordingFS):
    """mkdir creates the files a v1 kernel shows for the hierarchy (here: cpuset's cpus/mems)."""

    def mkdir(self, directory):
        super().mkdir(directory)
        if "/cpuset/" in directory:
            for name in ("cpuset.cpus", "cpuset.mems", "cgroup.procs"):
                p = os.path.join(directory, name)
                if not os.path.exists(p):
                    open(p, "w").close()
        else:
            open(os.path.join(directory, "cgroup.procs"), "a").close()


def test_hierarchies_and_manager_paths(tmp_path):
    root = make_v1_tree(str(tmp_path / "cg"))
    h = hierarchies(root)
    assert h["cpu"] == h["cpuacct"] == os.path.join(root, "cpu,cpuacct")
    assert h["name=systemd"] == os.path.join(root, "systemd")
    assert "unified" not in h and "" not in h
    proc = tmp_path / "cgroup"
    proc.write_text("5:memory:/user.slice\n3:cpu,cpuacct:/cpuparent\n1:name=systemd:/s\n0::/\n")
    fs = TreeFS()
    m = manager_for("ctr", "ctr", root=root, version="v1", fs=fs, proc_cgroup=str(proc))
    p = m.paths()
    assert p["memory"] == f"{root}/memory/user.slice/ctr"
    assert p["cpu"] == p["cpuacct"] == f"{root}/cpu,cpuacct/cpuparent/ctr"
    assert p["pids"] == f"{root}/pids/ctr"
    assert p["name=systemd"] == f"{root}/systemd/s/ctr"


def test_manager_create_copies_cpuset_and_add_writes_every_hierarchy(tmp_path):
    root = make_v1_tree(str(tmp_path / "cg"))
    fs = TreeFS()
    m = manager_for("/berth/ctr", "ctr", root=root, version="v1", fs=fs)
    m.create()
    with open(f"{root}/cpuset/berth/ctr/cpuset.cpus") as f:
        assert f.read() == "0-3"
    with open(f"{root}/cpuset/berth/cpuset.mems") as f:
        assert f.read() == "0"
    fs.writes.clear()
    m.add(4242)
    # one write per hierarchy: cpu and cpuacct share one directory
    assert sorted(d for d, f, v in fs.writes if f == "cgroup.procs") == sorted(set(m.paths().values()))
    with pytest.raises(InvalidArgument, match=r"blockIO\.weight: the blkio cgroup controller"):
        m.apply({"blockIO": {"weight": 100}})
    m.destroy()
    assert not m.exists()
    m.destroy()


SAMPLES_V1 = {
    ("cpuacct", "cpuacct.usage"): "3000000000\n",
    ("cpuacct", "cpuacct.usage_percpu"): "1000000000 2000000000 \n",
    ("cpuacct", "cpuacct.usage_all"): "cpu user system\n0 600 400\n1 1500 500\n",
    ("cpuacct", "cpuacct.stat"): "user 200\nsystem 100\n",
    ("cpu", "cpu.stat"): "nr_periods 20\nnr_throttled 5\nthrottled_time 123456\n",
    ("memory", "memory.stat"): "cache 4096\nrss 8192\ntotal_cache 4096\n",
    ("memory", "memory.usage_in_bytes"): "12288\n",
    ("memory", "memory.max_usage_in_bytes"): "65536\n",
    ("memory", "memory.limit_in_bytes"): "33554432\n",
    ("memory", "memory.failcnt"): "3\n",
    ("memory", "memory.memsw.usage_in_bytes"): "12288\n",
    ("memory", "memory.memsw.limit_in_bytes"): "9223372036854771712\n",
    ("pids", "pids.current"): "2\n",
    ("pids", "pids.max"): "max\n",
    ("blkio", "blkio.throttle.io_service_bytes_recursive"): "8:0 Read 4096\n8:0 Write 0\nTotal 4096\n",
    ("blkio", "blkio.throttle.io_serviced_recursive"): "8:0 Read 1\n8:0 Write 0\nTotal 1\n",
}


def test_stats_v1_from_sample_files():
    s = stats_v1(lambda c, f: SAMPLES_V1.get((c, f)))
    tick_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    assert s["cpu"]["usage"] == {"total": 3_000_000_000, "percpu": [1_000_000_000, 2_000_000_000],
                                 "percpu_user": [600, 1500], "percpu_kernel": [400, 500],
                                 "user": 200 * tick_ns, "kernel": 100 * tick_ns}
    assert s["cpu"]["throttling"] == {"periods": 20, "throttledPeriods": 5, "throttledTime": 123456}
    assert s["memory"]["usage"] == {"limit": 33554432, "usage": 12288, "max": 65536, "failcnt": 3}
    assert s["memory"]["swap"]["limit"] == 9223372036854771712
    assert s["memory"]["cache"] == 4096 and s["memory"]["raw"]["rss"] == 8192
    assert s["memory"]["kernel"] == {"limit": 0, "usage": 0, "max": 0, "failcnt": 0}
    assert s["pids"] == {"current": 2, "limit": 0}
    assert s["blkio"]["ioServiceBytesRecursive"] == [{"major": 8, "minor": 0, "op": "Read", "value": 4096},
                                                     {"major": 8, "minor": 0, "op": "Write", "value": 0}]
    assert s["blkio"]["ioServicedRecursive"][0] == {"major": 8, "minor": 0, "op": "Read", "value": 1}
    assert set(s) == {"cpu", "memory", "pids", "blkio", "hugetlb"}
