"""runc and berth-runtime on the same bundle give the same observable results."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from test_runtime_support import make_bundle, new_id, runtime_fixture, write_spec  # noqa: F401

pytestmark = [pytest.mark.root, pytest.mark.skipif(shutil.which("runc") is None, reason="no runc")]

PROBE = r"""
echo "pid=$$"; hostname; id
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\t'
ls /proc/self/fd | tr '\n' ' '; echo
ls -la /dev | awk '{print $1, $3, $4, $5, $6, $NF}' | sort
ls /proc/acpi /sys/firmware | wc -l; wc -c < /proc/timer_list
awk '{print $5, $6}' /proc/self/mountinfo | grep -v '^/sys/fs/cgroup ' | sort
ulimit -a
cut -d: -f2 /proc/self/cgroup | sort
echo $PATH; echo $HOME; umask; pwd
if unshare -U true 2>/dev/null; then echo unshare=ok; else echo unshare=denied; fi
exit 3
"""


def _runc(root: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runc", "--root", root, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("tweak", ["default", "user+ro"])
def test_same_observations_as_runc(tmp_path, busybox_rootfs_template, runtime, tweak):
    bundle, spec = make_bundle(tmp_path, busybox_rootfs_template, ["sh", "-c", PROBE])
    if tweak == "user+ro":
        spec["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5]}
        spec["process"]["noNewPrivileges"] = True
        spec["root"]["readonly"] = True
        spec["process"]["cwd"] = "/tmp"
    write_spec(bundle, spec)
    ours = runtime("run", "-b", bundle, runtime.track(new_id()))
    runc_root = str(tmp_path / "runc")
    cid = new_id("runc")
    try:
        theirs = _runc(runc_root, "run", "-b", bundle, cid)
    finally:
        _runc(runc_root, "delete", "--force", cid)
    assert theirs.returncode == 3, theirs.stderr
    assert ours.returncode == theirs.returncode
    assert ours.stdout.splitlines() == theirs.stdout.splitlines()
