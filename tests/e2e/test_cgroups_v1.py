"""cgroup v1 manager against the real hierarchies of this host (hybrid mode)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
import uuid

import pytest

from berth.errors import InvalidArgument
from berth.runtime.cgroups import DEFAULT_ALLOWED_DEVICES, detect, manager_for

ROOT = "/sys/fs/cgroup"

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not os.path.isdir(f"{ROOT}/memory") or detect(ROOT) != "v1",
                       reason="needs cgroup v1 hierarchies"),
]

MiB = 1024 * 1024


@pytest.fixture
def cg():
    """A manager for /berth-test-<random>/ctr; removes the cgroups and kills started processes."""
    parent = f"berth-test-{uuid.uuid4().hex[:10]}"
    mgr = manager_for(f"/{parent}/ctr", "ctr", version="v1")
    procs: list[subprocess.Popen] = []
    mgr.procs = procs
    yield mgr
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    if mgr.frozen():
        mgr.freeze(False)
    mgr.destroy()
    left = []
    for d in set(mgr.paths().values()):
        top = os.path.dirname(d)
        if os.path.isdir(top):
            os.rmdir(top)
        if os.path.exists(d) or os.path.exists(top):
            left.append(d)
    assert not left, f"leftover cgroups: {left}"


def start(mgr, code: str) -> subprocess.Popen:
    """A python child that waits for a line on stdin before running code (so it is added first)."""
    p = subprocess.Popen([sys.executable, "-I", "-S", "-c", f"import sys\nsys.stdin.readline()\n{code}"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mgr.procs.append(p)
    return p


def go(p: subprocess.Popen, timeout: float = 20) -> tuple[str, str]:
    return p.communicate("go\n", timeout=timeout)


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def test_create_add_pids_destroy(cg):
    assert not cg.exists()
    cg.create()
    cg.create()   # idempotent
    assert cg.exists()
    paths = cg.paths()
    assert {"memory", "cpu", "cpuacct", "pids", "devices", "freezer", "cpuset", "blkio"} <= set(paths)
    for d in paths.values():
        assert os.path.isdir(d)
    # cpuset inherited cpus/mems, otherwise adding a task would fail
    assert read(f"{paths['cpuset']}/cpuset.cpus") == read(f"{ROOT}/cpuset/cpuset.cpus")
    p = subprocess.Popen(["sleep", "30"])
    cg.procs.append(p)
    cg.add(p.pid)
    assert cg.pids() == [p.pid]
    own = read(f"/proc/{p.pid}/cgroup")
    rel = paths["memory"][len(f"{ROOT}/memory"):]
    assert f"memory:{rel}" in own and f"pids:{rel}" in own and f"freezer:{rel}" in own
    p.kill()
    p.wait()
    cg.destroy()
    cg.destroy()  # idempotent
    assert not cg.exists()
    assert not any(os.path.exists(d) for d in paths.values())


def test_apply_writes_every_controller(cg):
    cg.create()
    dev = read("/sys/block/vda/dev") if os.path.exists("/sys/block/vda/dev") else read("/sys/block/loop0/dev")
    major, minor = (int(x) for x in dev.split(":"))
    cg.apply({
        "memory": {"limit": 64 * MiB, "swap": 96 * MiB, "reservation": 32 * MiB, "swappiness": 10,
                   "kernel": 1 * MiB, "kernelTCP": 1 * MiB},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 42},
        "blockIO": {"throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}],
                    "throttleWriteIOPSDevice": [{"major": major, "minor": minor, "rate": 100}]},
        "devices": [{"allow": False, "access": "rwm"}, *DEFAULT_ALLOWED_DEVICES],
    })
    p = cg.paths()
    assert int(read(f"{p['memory']}/memory.limit_in_bytes")) == 64 * MiB
    assert int(read(f"{p['memory']}/memory.memsw.limit_in_bytes")) == 96 * MiB
    assert int(read(f"{p['memory']}/memory.soft_limit_in_bytes")) == 32 * MiB
    assert read(f"{p['memory']}/memory.swappiness") == "10"
    assert read(f"{p['cpu']}/cpu.shares") == "512"
    assert read(f"{p['cpu']}/cpu.cfs_quota_us") == "50000"
    assert read(f"{p['cpu']}/cpu.cfs_period_us") == "100000"
    assert read(f"{p['cpuset']}/cpuset.cpus") == "0"
    assert read(f"{p['pids']}/pids.max") == "42"
    assert read(f"{p['blkio']}/blkio.throttle.read_bps_device") == f"{major}:{minor} 1048576"
    assert read(f"{p['blkio']}/blkio.throttle.write_iops_device") == f"{major}:{minor} 100"
    devices = read(f"{p['devices']}/devices.list").splitlines()
    assert "c 1:3 rwm" in devices and "c 136:* rwm" in devices and "c *:* m" in devices
    assert "a *:* rwm" not in devices

    # update: lower the limit (memsw written after), then raise it above the old memsw (memsw first)
    cg.update({"memory": {"limit": 48 * MiB, "swap": 48 * MiB}})
    assert int(read(f"{p['memory']}/memory.memsw.limit_in_bytes")) == 48 * MiB
    cg.update({"memory": {"limit": 128 * MiB, "swap": 256 * MiB}, "pids": {"limit": -1}})
    assert int(read(f"{p['memory']}/memory.limit_in_bytes")) == 128 * MiB
    assert int(read(f"{p['memory']}/memory.memsw.limit_in_bytes")) == 256 * MiB
    assert read(f"{p['pids']}/pids.max") == "max"


def test_bad_resources_raise_and_write_nothing(cg):
    cg.create()
    mem = cg.paths()["memory"]
    before = read(f"{mem}/memory.limit_in_bytes")
    with pytest.raises(InvalidArgument, match=r"linux\.resources\.unified"):
        cg.apply({"memory": {"limit": 64 * MiB}, "unified": {"memory.high": "1"}})
    with pytest.raises(InvalidArgument, match=r"linux\.resources\.memory\.swap"):
        cg.apply({"memory": {"limit": 64 * MiB, "swap": 32 * MiB}})
    with pytest.raises(InvalidArgument, match=r"linux\.resources\.cpu\.bogus"):
        cg.apply({"memory": {"limit": 64 * MiB}, "cpu": {"bogus": 1}})
    assert read(f"{mem}/memory.limit_in_bytes") == before
    # the kernel refuses a value: the error names the field
    with pytest.raises(InvalidArgument, match=r"linux\.resources\.cpu\.cpus"):
        cg.apply({"cpu": {"cpus": "999"}})
    # a controller this host does not mount
    with pytest.raises(InvalidArgument, match=r"linux\.resources\.network\.classID.*net_cls"):
        cg.apply({"network": {"classID": 0x100001}})


def test_freeze_and_thaw(cg):
    cg.create()
    p = start(cg, "import time\nwhile True:\n    print(time.monotonic(), flush=True)\n    time.sleep(0.01)")
    cg.add(p.pid)
    p.stdin.write("go\n")
    p.stdin.flush()
    p.stdout.readline()
    cg.freeze(True)
    assert cg.frozen()
    assert read(f"{cg.paths()['freezer']}/freezer.state") == "FROZEN"
    os.set_blocking(p.stdout.fileno(), False)
    time.sleep(0.2)
    while p.stdout.readline():    # drain what was printed before the freeze
        pass
    time.sleep(0.3)
    assert p.stdout.readline() == ""   # nothing printed while frozen
    cg.freeze(False)
    assert not cg.frozen()
    assert read(f"{cg.paths()['freezer']}/freezer.state") == "THAWED"
    time.sleep(0.3)
    assert p.stdout.readline() != ""


def test_oom_kill_is_counted(cg):
    cg.create()
    cg.apply({"memory": {"limit": 32 * MiB, "swap": 32 * MiB}})
    assert cg.oom_kill_count() == 0
    p = start(cg, "chunks = []\nwhile True:\n    chunks.append(bytearray(4 * 1024 * 1024))")
    cg.add(p.pid)
    go(p)
    assert p.returncode == -9
    assert cg.oom_kill_count() >= 1
    stats = cg.stats()
    assert stats["memory"]["usage"]["limit"] == 32 * MiB
    assert stats["memory"]["usage"]["max"] == 32 * MiB    # the peak reached the limit


def test_pids_limit_stops_forks(cg):
    cg.create()
    cg.apply({"pids": {"limit": 4}})
    p = start(cg, "import os, time\nok = fail = 0\nfor _ in range(10):\n"
                  "    try:\n        pid = os.fork()\n"
                  "    except BlockingIOError:\n        fail += 1\n        continue\n"
                  "    if pid == 0:\n        time.sleep(1)\n        os._exit(0)\n    ok += 1\n"
                  "print(ok, fail, flush=True)\nfor _ in range(ok):\n    os.wait()")
    cg.add(p.pid)
    out, err = go(p)
    ok, fail = (int(x) for x in out.split())
    assert (ok, fail) == (3, 7), err
    stats = cg.stats()
    assert stats["pids"]["limit"] == 4


def test_cpu_quota_limits_usage(cg):
    cg.create()
    cg.apply({"cpu": {"quota": 20000, "period": 100000}})
    p = start(cg, "import time\nend = time.monotonic() + 1.0\nwhile time.monotonic() < end:\n    pass")
    cg.add(p.pid)
    before = cg.stats()["cpu"]["usage"]["total"]
    t0 = time.monotonic()
    go(p)
    wall = time.monotonic() - t0
    used = (cg.stats()["cpu"]["usage"]["total"] - before) / 1e9
    assert used < 0.4 * wall, (used, wall)
    stats = cg.stats()
    assert stats["cpu"]["throttling"]["throttledPeriods"] > 0
    assert stats["cpu"]["usage"]["user"] + stats["cpu"]["usage"]["kernel"] > 0


def test_device_rules_are_enforced(cg):
    cg.create()
    cg.apply({"devices": [{"allow": False, "access": "rwm"}, *DEFAULT_ALLOWED_DEVICES]})
    p = start(cg, "import os\nfor path in ('/dev/null', '/dev/kmsg'):\n    try:\n"
                  "        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))\n        print(path, 'ok')\n"
                  "    except OSError as e:\n        print(path, e.errno)")
    cg.add(p.pid)
    out, _ = go(p)
    assert out.splitlines() == ["/dev/null ok", f"/dev/kmsg {errno.EPERM}"]
