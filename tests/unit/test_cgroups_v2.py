"""cgroup v2 manager against tmpdir trees that mimic /sys/fs/cgroup (no root needed)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from berth.errors import InvalidArgument, Unavailable
from berth.runtime.cgroups import detect, manager_for
from berth.runtime.cgroups.fake import FakeCgroup2FS, make_v2_root
from berth.runtime.cgroups.paths import clean_path, expand_slice, systemd_path
from berth.runtime.cgroups.translate_v2 import blkio_weight_to_io_weight, shares_to_weight, swap_to_v2

MiB = 1 << 20


class RecordingFilter:
    def __init__(self, error: OSError | None = None) -> None:
        self.calls: list = []
        self.error = error

    def attach(self, cgroup_dir, rules):
        self.calls.append((cgroup_dir, rules))
        if self.error:
            raise self.error


@pytest.fixture
def tree(tmp_path):
    root = make_v2_root(str(tmp_path / "cgroup"))
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text("0::/user.slice/session-1.scope\n")
    return root, str(proc)


def mgr_in(tree, path="/berth/c1", **kw):
    root, proc = tree
    fs = FakeCgroup2FS()
    flt = kw.pop("device_filter", RecordingFilter())
    m = manager_for(path, "c1", root=root, version="v2", fs=fs, device_filter=flt, proc_cgroup=proc, **kw)
    return m, fs, flt


def read(d, name):
    with open(os.path.join(d, name)) as f:
        return f.read()


# detection and paths ----------------------------------------------------------------------------

def test_detect(tmp_path):
    assert detect(make_v2_root(str(tmp_path / "a"))) == "v2"
    assert detect(make_v2_root(str(tmp_path / "b"), controllers="")) == "v1"
    os.makedirs(tmp_path / "c" / "memory")
    assert detect(str(tmp_path / "c")) == "v1"
    if os.path.isdir("/sys/fs/cgroup/memory"):      # this host: hybrid, a tmpfs with v1 mounts
        assert detect("/sys/fs/cgroup") == "v1"


def test_cgroups_path_semantics(tree):
    root, _ = tree
    assert mgr_in(tree, "/berth/c1")[0].paths() == {"": f"{root}/berth/c1"}
    # relative: below the caller's own cgroup
    assert mgr_in(tree, "berth/c1")[0].paths() == {"": f"{root}/user.slice/session-1.scope/berth/c1"}
    # empty: /<container id>
    assert mgr_in(tree, "")[0].paths() == {"": f"{root}/c1"}
    # ".." never climbs above the hierarchy root
    assert mgr_in(tree, "/../../etc/x")[0].paths() == {"": f"{root}/etc/x"}
    assert mgr_in(tree, "../../x")[0].paths() == {"": f"{root}/user.slice/session-1.scope/x"}
    assert clean_path("a/../../b") == "b"
    with pytest.raises(InvalidArgument):
        mgr_in(tree, "/")
    with pytest.raises(InvalidArgument):
        manager_for("", "../x", root=tree[0], version="v2")


def test_systemd_paths():
    assert expand_slice("system.slice") == "/system.slice"
    assert expand_slice("a-b-c.slice") == "/a.slice/a-b.slice/a-b-c.slice"
    assert expand_slice("-.slice") == "/"
    assert systemd_path("system.slice:docker:abc", "abc") == "/system.slice/docker-abc.scope"
    assert systemd_path("", "abc") == "/system.slice/berth-abc.scope"
    assert systemd_path("user.slice:berth:my.slice", "x") == "/user.slice/my.slice"
    for bad in ("system.slice:x", "a--b.slice:p:n", "nope:p:n", "system.slice:p:../x"):
        with pytest.raises(InvalidArgument):
            systemd_path(bad, "abc")


@pytest.mark.skipif(os.path.isdir("/run/systemd/system"), reason="systemd is running here")
def test_systemd_driver_without_systemd(tree):
    with pytest.raises(InvalidArgument, match="systemd cgroup driver requested, but systemd is not running"):
        manager_for("system.slice:berth:c1", "c1", systemd=True, root=tree[0], version="v2")


# create / apply ---------------------------------------------------------------------------------

def test_create_enables_controllers_above_the_leaf(tree):
    root, _ = tree
    m, fs, _ = mgr_in(tree, "/berth/sub/c1")
    m.create()
    m.create()
    assert m.exists()
    assert read(root, "cgroup.subtree_control").split() == "cpuset cpu io memory hugetlb pids rdma".split()
    all_ = read(root, "cgroup.controllers").split()
    assert read(f"{root}/berth/sub", "cgroup.subtree_control").split() == all_
    assert read(f"{root}/berth/sub/c1", "cgroup.subtree_control") == ""     # not in the leaf
    assert os.path.exists(f"{root}/berth/sub/c1/memory.max")
    # second create wrote nothing new
    assert len([w for w in fs.writes if w[1] == "cgroup.subtree_control"]) == 3


def test_apply_writes_every_controller(tree):
    m, fs, flt = mgr_in(tree)
    m.create()
    d = m.paths()[""]
    fs.writes.clear()
    m.apply({
        "memory": {"limit": 64 * MiB, "swap": 96 * MiB, "reservation": 32 * MiB, "kernel": 1, "kernelTCP": 1},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 1000, "cpus": "0-1", "mems": "0",
                "idle": 0},
        "pids": {"limit": 100},
        "blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 200}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}],
                    "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2000}],
                    "throttleReadIOPSDevice": [{"major": 8, "minor": 16, "rate": 30}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 0}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MiB}],
        "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
        "unified": {"memory.high": "50000000"},
        "devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3}],
    })
    assert read(d, "memory.max") == str(64 * MiB)
    assert read(d, "memory.swap.max") == str(32 * MiB)          # OCI swap is memory+swap
    assert read(d, "memory.low") == str(32 * MiB)
    assert read(d, "cpu.weight") == str(1 + (1024 - 2) * 9999 // 262142) == "39"
    assert read(d, "cpu.max") == "50000 100000"
    assert read(d, "cpu.max.burst") == "1000"
    assert read(d, "cpuset.cpus") == "0-1" and read(d, "cpuset.mems") == "0"
    assert read(d, "pids.max") == "100"
    assert read(d, "io.weight") == "8:0 " + str(blkio_weight_to_io_weight(200))   # last write
    assert read(d, "hugetlb.2MB.max") == str(4 * MiB)
    assert read(d, "rdma.max") == "mlx5_1 hca_handle=3 hca_object=10000"
    assert read(d, "memory.high") == "50000000"
    io_max = [v for _, f, v in fs.writes if f == "io.max"]
    assert io_max == ["8:0 rbps=1000", "8:0 wbps=2000", "8:16 riops=30", "8:16 wiops=max"]
    io_weight = [v for _, f, v in fs.writes if f == "io.weight"]
    assert io_weight == ["4950", "8:0 1920"]
    names = [f for _, f, _ in fs.writes]
    assert names.index("memory.swap.max") < names.index("memory.max")
    assert not any(f.startswith("memory.kmem") for f in names)
    # devices went to the eBPF filter, as parsed rules
    assert len(flt.calls) == 1 and flt.calls[0][0] == d
    assert [r.v1_string() for r in flt.calls[0][1]] == ["a *:* rwm", "c 1:3 rwm"]


def test_apply_conversions_and_special_values(tree):
    m, fs, _ = mgr_in(tree)
    m.create()
    d = m.paths()[""]
    m.apply({"memory": {"limit": -1}, "cpu": {"quota": -1}, "pids": {"limit": 0}})
    assert read(d, "memory.max") == "max" and read(d, "memory.swap.max") == "max"
    assert read(d, "cpu.max") == "max"
    assert read(d, "pids.max") == "max"
    m.apply({"memory": {"limit": 64 * MiB, "swap": 64 * MiB}, "cpu": {"period": 50000}})
    assert read(d, "memory.swap.max") == "0"                     # swap == limit: no swap
    assert read(d, "cpu.max") == "max 50000"
    assert shares_to_weight(2) == 1 and shares_to_weight(262144) == 10000 and shares_to_weight(0) == 0
    assert blkio_weight_to_io_weight(10) == 1 and blkio_weight_to_io_weight(1000) == 10000
    assert swap_to_v2(0, -1) == -1 and swap_to_v2(-1, 5) == -1 and swap_to_v2(0, 5) == 0
    assert swap_to_v2(300, 100) == 200


def test_bfq_weight_used_when_present(tree):
    m, fs, _ = mgr_in(tree)
    m.create()
    d = m.paths()[""]
    with open(os.path.join(d, "io.bfq.weight"), "w") as f:
        f.write("default 100")
    m.apply({"blockIO": {"weight": 300, "weightDevice": [{"major": 8, "minor": 0, "weight": 50}]}})
    assert [v for _, f, v in fs.writes if f == "io.bfq.weight"] == ["300", "8:0 50"]
    assert not [w for w in fs.writes if w[1] == "io.weight"]


@pytest.mark.parametrize("resources, field", [
    ({"memory": {"swappiness": 10}}, "linux.resources.memory.swappiness"),
    ({"memory": {"disableOOMKiller": True}}, "linux.resources.memory.disableOOMKiller"),
    ({"memory": {"limit": 100, "swap": 50}}, "linux.resources.memory.swap"),
    ({"memory": {"swap": 50}}, "linux.resources.memory.swap"),
    ({"memory": {"limit": "1g"}}, "linux.resources.memory.limit"),
    ({"cpu": {"realtimeRuntime": 1000}}, "linux.resources.cpu.realtimeRuntime"),
    ({"cpu": {"shares": 1}}, "linux.resources.cpu.shares"),
    ({"network": {"classID": 1}}, "linux.resources.network"),
    ({"blockIO": {"leafWeight": 100}}, "linux.resources.blockIO.leafWeight"),
    ({"blockIO": {"weight": 5000}}, "linux.resources.blockIO.weight"),
    ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "rate": 1}]}},
     r"linux.resources.blockIO.throttleReadBpsDevice\[0\].minor"),
    ({"unified": {"../x": "1"}}, "linux.resources.unified"),
    ({"unified": {"cgroup.procs": "1"}}, "linux.resources.unified.cgroup.procs"),
    ({"hugepageLimits": [{"pageSize": "2MB"}]}, r"linux.resources.hugepageLimits\[0\].limit"),
    ({"devices": [{"allow": True, "type": "x"}]}, r"linux.resources.devices\[0\].type"),
    ({"devices": [{"type": "c"}]}, r"linux.resources.devices\[0\].allow"),
    ({"intelRdt": {}}, "linux.resources.intelRdt"),
    ({"cpu": {"quota": 1, "burstiness": 2}}, "linux.resources.cpu.burstiness"),
])
def test_bad_fields_are_named_and_nothing_is_written(tree, resources, field):
    m, fs, flt = mgr_in(tree)
    m.create()
    fs.writes.clear()
    with pytest.raises(InvalidArgument, match=field.replace(".", r"\.") if "\\" not in field else field):
        m.apply({"pids": {"limit": 5}, **resources})
    assert fs.writes == [] and flt.calls == []


def test_missing_controller_file_is_named(tree):
    root, proc = tree
    make_v2_root(root, controllers="cpu pids")
    m, fs, _ = mgr_in(tree)
    m.create()
    with pytest.raises(InvalidArgument, match=r"linux\.resources\.memory\.limit.*memory\.max"):
        m.apply({"memory": {"limit": MiB}})


def test_devices_without_ebpf(tree):
    err = OSError(1, "Operation not permitted")
    m, _, flt = mgr_in(tree, device_filter=RecordingFilter(err))
    m.create()
    with pytest.raises(InvalidArgument,
                       match=r"linux\.resources\.devices is not supported on cgroup v2 without eBPF"):
        m.apply({"devices": [{"allow": False, "access": "rwm"}]})
    # a list that allows everything needs no enforcement
    m.apply({"devices": [{"allow": True, "access": "rwm"}]})


# freezer, stats, pids, destroy -----------------------------------------------------------------

def _set_events(d, frozen, delay):
    def run():
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if read(d, "cgroup.freeze").strip() == str(frozen):
                time.sleep(delay)
                with open(os.path.join(d, "cgroup.events"), "w") as f:
                    f.write(f"populated 1\nfrozen {frozen}\n")
                return
            time.sleep(0.005)
    t = threading.Thread(target=run)
    t.start()
    return t


def test_freeze_waits_for_cgroup_events(tree):
    m, _, _ = mgr_in(tree)
    m.create()
    d = m.paths()[""]
    t = _set_events(d, 1, 0.15)
    t0 = time.monotonic()
    m.freeze(True)
    assert time.monotonic() - t0 >= 0.15
    t.join()
    assert m.frozen() and read(d, "cgroup.freeze") == "1"
    t = _set_events(d, 0, 0.05)
    m.freeze(False)
    t.join()
    assert not m.frozen() and read(d, "cgroup.freeze") == "0"


def test_freeze_timeout_thaws_back(tree):
    m, _, _ = mgr_in(tree)
    m.create()
    with pytest.raises(Unavailable, match="did not freeze"):
        m.freeze(True, timeout=0.1)
    assert read(m.paths()[""], "cgroup.freeze") == "0"
    assert not m.frozen()


SAMPLES = {
    "cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 10\nnr_throttled 3\n"
                "throttled_usec 700\nnr_bursts 0\nburst_usec 0\n",
    "memory.current": "1048576\n",
    "memory.max": "4194304\n",
    "memory.peak": "2097152\n",
    "memory.swap.current": "4096\n",
    "memory.swap.max": "max\n",
    "memory.stat": "anon 524288\nfile 262144\nkernel 8192\nshmem 0\n",
    "memory.events": "low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\noom_group_kill 0\n",
    "pids.current": "3\n",
    "pids.max": "50\n",
    "io.stat": "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
}


def test_stats_and_oom_count_from_sample_files(tree):
    m, _, _ = mgr_in(tree)
    m.create()
    d = m.paths()[""]
    for name, text in SAMPLES.items():
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    s = m.stats()
    assert s["cpu"]["usage"] == {"total": 1_500_000, "percpu": [], "percpu_kernel": [], "percpu_user": [],
                                 "kernel": 500_000, "user": 1_000_000}
    assert s["cpu"]["throttling"] == {"periods": 10, "throttledPeriods": 3, "throttledTime": 700_000}
    assert s["memory"]["usage"] == {"limit": 4194304, "usage": 1048576, "max": 2097152, "failcnt": 7}
    assert s["memory"]["swap"] == {"limit": 2**64 - 1, "usage": 1048576 + 4096, "max": 0, "failcnt": 0}
    assert s["memory"]["cache"] == 262144 and s["memory"]["raw"]["anon"] == 524288
    assert s["pids"] == {"current": 3, "limit": 50}
    assert s["blkio"]["ioServiceBytesRecursive"] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 4096},
        {"major": 8, "minor": 0, "op": "Write", "value": 8192},
        {"major": 8, "minor": 0, "op": "Discard", "value": 0}]
    assert s["blkio"]["ioServicedRecursive"][:2] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 1},
        {"major": 8, "minor": 0, "op": "Write", "value": 2}]
    assert m.oom_kill_count() == 2


def test_pids_destroy(tree):
    m, fs, _ = mgr_in(tree)
    m.create()
    d = m.paths()[""]
    fs.mkdir(os.path.join(d, "sub"))
    with open(os.path.join(d, "cgroup.procs"), "w") as f:
        f.write("10\n11\n")
    with open(os.path.join(d, "sub", "cgroup.procs"), "w") as f:
        f.write("12\n")
    assert sorted(m.pids()) == [10, 11, 12]
    m.add(13)
    assert ("cgroup.procs", "13") in [(f, v) for _, f, v in fs.writes]
    m.destroy()
    assert not m.exists() and not os.path.exists(d)
    m.destroy()
    assert os.path.isdir(os.path.dirname(d))   # parents are left alone


def test_check_before_update(tree):
    m, fs, _ = mgr_in(tree)
    m.create()
    with open(os.path.join(m.paths()[""], "memory.current"), "w") as f:
        f.write(str(10 * MiB))
    with pytest.raises(InvalidArgument, match=r"linux\.resources\.memory\.limit .*below the current usage"):
        m.apply({"memory": {"limit": 5 * MiB, "checkBeforeUpdate": True}})
    m.apply({"memory": {"limit": 5 * MiB}})
    m.apply({"memory": {"limit": 20 * MiB, "checkBeforeUpdate": True}})
    assert read(m.paths()[""], "memory.max") == str(20 * MiB)
