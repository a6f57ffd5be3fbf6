"""The runtime's start-up path stays cheap: no heavy stdlib module is imported by its modules.

`berth-runtime` starts on every container start and is measured against runc (bench/runtime);
`typing` alone (with re, enum, collections) costs about 8 ms, a quarter of `runc run`.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEAVY = ("typing", "re", "enum", "json", "dataclasses", "collections", "argparse", "signal", "socket",
         "subprocess", "functools", "contextlib", "inspect", "threading", "logging")
HOT = ("cli", "container", "config", "state", "fastjson", "init", "process", "rootfs", "devices",
       "mountopts", "sync", "hooks", "tty", "caps", "exec_process", "cgwarm", "cgroups", "cgroups.manager_v1",
       "cgroups.manager_v2", "cgroups.resources", "cgroups.translate_v1", "cgroups.translate_v2",
       "cgroups.stats", "cgroups.devices", "cgroups.paths", "cgroups.fs")


def test_hot_modules_import_no_heavy_stdlib():
    code = (f"import sys\nsys.path[:0] = [{REPO!r}]\nbefore = set(sys.modules)\n"
            f"for m in {HOT!r}:\n    __import__('berth.runtime.' + m)\n"
            "import berth.sys.linux\nprint(' '.join(sorted(set(sys.modules) - before)))\n")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert "berth.runtime.cgroups.manager_v1" in loaded
    assert loaded & set(HEAVY) == set()


def test_cgroup_records_behave_as_named_tuples():
    from berth.runtime.cgroups import CgroupManager
    from berth.runtime.cgroups.devices import Rule
    from berth.runtime.cgroups.resources import Write

    w = Write("memory", "memory.limit_in_bytes", "1", "linux.resources.memory.limit")
    assert w == ("memory", "memory.limit_in_bytes", "1", "linux.resources.memory.limit")
    assert (w.controller, w.file, w.value, w.field) == tuple(w)
    c, f, v, fld = w
    assert c == "memory" and fld.endswith(".limit")
    r = Rule(True, "c", 1, 3, "rwm")
    assert r.v1_string() == "c 1:3 rwm" and r.allow and r.major == 1 and not r.matches_everything
    assert "Rule(" in repr(r) and "Write(" in repr(w)
    assert hasattr(CgroupManager, "apply")


def test_cgwarm_targets_our_own_cgroup_only():
    from berth.runtime.cgwarm import procs_file

    assert procs_file("9:name=systemd:/\n") == "/sys/fs/cgroup/systemd/cgroup.procs"
    assert procs_file("4:cpu,cpuacct:/a/b\n") == "/sys/fs/cgroup/cpu,cpuacct/a/b/cgroup.procs"
    assert procs_file("0::/user.slice/x.scope\n") == "/sys/fs/cgroup/user.slice/x.scope/cgroup.procs"
    assert procs_file("0::/x\n", True) == "/sys/fs/cgroup/unified/x/cgroup.procs"
    assert procs_file("0::/../../other\n") is None  # outside our cgroup namespace
    assert procs_file("garbage") is None


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_cgwarm_moves_nothing_and_closes_its_file():
    code = (f"import sys\nsys.path[:0] = [{REPO!r}]\nfrom berth.runtime import cgwarm\n"
            "before = open('/proc/self/cgroup').read()\ncgwarm.start()\nfd = cgwarm._fd\nassert fd >= 200\n"
            "cgwarm.wait()\nimport os\nassert not os.path.exists(f'/proc/self/fd/{fd}')\n"
            "assert open('/proc/self/cgroup').read() == before\n"
            "print(len(os.listdir('/proc/self/task')))\n")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"  # single-threaded again
