"""cgroup v2 manager against the real cgroup2 mount of this hybrid host (/sys/fs/cgroup/unified).

That hierarchy has no resource controllers enabled, but the core interface is all there:
cgroup.procs, cgroup.freeze/cgroup.events, cpu.stat, and eBPF device programs.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
import uuid

import pytest

from berth.errors import InvalidArgument
from berth.runtime.cgroups import DEFAULT_ALLOWED_DEVICES, manager_for
from berth.runtime.cgroups.ebpf import EbpfDeviceFilter

UNIFIED = "/sys/fs/cgroup/unified"


def _is_cgroup2(path: str) -> bool:
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path and " - cgroup2 " in line for line in f)
    except OSError:
        return False


pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not _is_cgroup2(UNIFIED), reason="needs a cgroup2 mount at " + UNIFIED)]


@pytest.fixture
def cg():
    """V2 manager for <unified>/berth-test-<random>/ctr, the test dir acting as the root."""
    root = f"{UNIFIED}/berth-test-{uuid.uuid4().hex[:10]}"
    os.mkdir(root)
    mgr = manager_for("/ctr", "ctr", root=root, version="v2")
    procs: list[subprocess.Popen] = []
    mgr.procs = procs
    yield mgr
    if mgr.exists() and mgr.frozen():
        mgr.freeze(False)
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    mgr.destroy()
    os.rmdir(root)
    assert not os.path.exists(root)


def start(mgr, code: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-I", "-S", "-c", f"import sys\nsys.stdin.readline()\n{code}"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mgr.procs.append(p)
    return p


def test_create_add_freeze_stats_destroy(cg):
    cg.create()
    cg.create()
    d = cg.paths()[""]
    assert cg.exists() and os.path.isdir(d)
    p = start(cg, "import time\nwhile True:\n"
                  "    print(time.monotonic(), flush=True)\n    x = sum(range(20000))")
    cg.add(p.pid)
    assert cg.pids() == [p.pid]
    assert f"0::/{os.path.basename(os.path.dirname(d))}/ctr" in open(f"/proc/{p.pid}/cgroup").read()
    p.stdin.write("go\n")
    p.stdin.flush()
    p.stdout.readline()
    time.sleep(0.2)
    cg.freeze(True)
    assert cg.frozen()
    assert "frozen 1" in open(f"{d}/cgroup.events").read()
    os.set_blocking(p.stdout.fileno(), False)
    time.sleep(0.1)
    while p.stdout.readline():
        pass
    time.sleep(0.3)
    assert p.stdout.readline() == ""
    cg.freeze(False)
    assert not cg.frozen()
    time.sleep(0.3)
    assert p.stdout.readline() != ""
    usage = cg.stats()["cpu"]["usage"]
    assert usage["total"] > 10_000_000 and usage["user"] > 0
    p.kill()
    p.wait()
    cg.destroy()
    assert not cg.exists()


def test_device_filter_is_enforced_and_replaced(cg):
    cg.create()
    rules = [{"allow": False, "access": "rwm"}, *DEFAULT_ALLOWED_DEVICES]
    cg.apply({"devices": rules})
    assert len(EbpfDeviceFilter().attached(cg.paths()[""])) == 1
    probe = ("import os\nfor path in ('/dev/null', '/dev/kmsg'):\n    try:\n"
             "        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))\n        print(path, 'ok')\n"
             "    except OSError as e:\n        print(path, e.errno)")
    p = start(cg, probe)
    cg.add(p.pid)
    out, _ = p.communicate("go\n", timeout=10)
    assert out.splitlines() == ["/dev/null ok", f"/dev/kmsg {errno.EPERM}"]

    # update: allow /dev/kmsg read-only; the old program is replaced, not stacked
    cg.update({"devices": [*rules, {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"}]})
    assert len(EbpfDeviceFilter().attached(cg.paths()[""])) == 1
    p = start(cg, probe)
    cg.add(p.pid)
    out, _ = p.communicate("go\n", timeout=10)
    assert out.splitlines() == ["/dev/null ok", "/dev/kmsg ok"]


def test_missing_controller_is_named(cg):
    cg.create()
    with pytest.raises(InvalidArgument, match=r"linux\.resources\.memory\.limit.*memory\.max"):
        cg.apply({"memory": {"limit": 64 << 20}})
    with pytest.raises(InvalidArgument, match=r"linux\.resources\.network"):
        cg.apply({"network": {"classID": 1}})
