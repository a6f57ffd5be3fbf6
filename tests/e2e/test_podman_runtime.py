"""Interop: Podman (through conmon) drives berth-runtime as its OCI runtime."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile

import pytest
from test_runtime_support import cgroup_dirs, procs_rooted_under, runtime_path

from tests.helpers import mounts_under

pytestmark = [pytest.mark.root, pytest.mark.skipif(shutil.which("podman") is None, reason="no podman")]

# the host's hard limits are below Podman's defaults (1048576) and root lacks CAP_SYS_RESOURCE
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


@pytest.fixture
def podman(tmp_path, busybox_rootfs_template):
    import tempfile

    rt = runtime_path(str(tmp_path))
    short = tempfile.mkdtemp(prefix="bp", dir="/tmp")  # podman wants a runroot under 50 characters
    base = ["podman", "--root", str(tmp_path / "root"), "--runroot", f"{short}/run",
            "--tmpdir", f"{short}/libpod", "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
            "--events-backend", "none", "--runtime", rt]

    def run(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        # conmon writes an "oom" marker into its working directory: keep it out of the checkout
        p = subprocess.run([*base, *args], capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL, cwd=short)
        if check and p.returncode != 0:
            raise AssertionError(f"podman {args}: {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    parents = [f"/sys/fs/cgroup/{c}/libpod_parent" for c in os.listdir("/sys/fs/cgroup")]
    new_parents = [d for d in parents if not os.path.exists(d)]
    tar = tmp_path / "busybox.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(busybox_rootfs_template, arcname=".")
    run("import", str(tar), "localhost/berth-busybox:test")
    yield run
    ids = run("ps", "-a", "-q", "--no-trunc", check=False).stdout.split()
    for cid in ids:
        run("rm", "-f", "-t", "0", cid, check=False)
    run("system", "reset", "-f", check=False)
    for top in new_parents:  # podman's parent cgroup (and its conmon child), made for this test
        for d in sorted((dp for dp, _, _ in os.walk(top)), key=len, reverse=True):
            try:
                os.rmdir(d)
            except OSError:
                pass
    left = mounts_under(str(tmp_path)) + mounts_under(short)
    procs = procs_rooted_under(str(tmp_path)) + _conmons(short)
    shutil.rmtree(short, ignore_errors=True)
    for cid in ids:
        assert not cgroup_dirs("libpod-" + cid), cid
        assert not os.path.exists(f"/run/berth-runtime/{cid}")
    assert not left, left
    assert not procs, procs


def _conmons(runroot: str) -> list[str]:
    """Processes (conmon, container init) whose command line names this test's run root."""
    out = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if runroot in cmd:
            out.append(f"{name} {cmd[:120]}")
    return out


def test_podman_run_rm(podman):
    p = podman("run", "--rm", "--network", "none", *ULIMITS, "localhost/berth-busybox:test",
               "sh", "-c", "echo hi; grep -E '^(CapEff|Seccomp):' /proc/self/status | tr -d '\\t'")
    assert p.stdout.splitlines() == ["hi", "CapEff:00000000800405fb", "Seccomp:2"]
    p = podman("run", "--rm", "--network", "none", *ULIMITS, "localhost/berth-busybox:test",
               "sh", "-c", "exit 3", check=False)
    assert p.returncode == 3


def test_podman_detach_exec_stop(podman):
    cid = podman("run", "-d", "--network", "none", *ULIMITS, "localhost/berth-busybox:test",
                 "sleep", "300").stdout.strip()
    p = podman("exec", cid, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; hostname")
    assert p.stdout.splitlines() == ["sleep 300 ", cid[:12]]
    assert podman("exec", cid, "sh", "-c", "exit 4", check=False).returncode == 4
    assert "Up" in podman("ps", "--format", "{{.Status}}").stdout
    podman("stop", "-t", "1", cid, timeout=30)
    assert "Exited" in podman("ps", "-a", "--format", "{{.Status}}").stdout
    podman("rm", cid)


def test_podman_memory_limit_oom_exits_137(podman):
    # the shell itself grows past the limit (command substitution keeps the output in its memory), so
    # the OOM killer picks the container's init; swap pinned to the limit so a host with swap cannot
    # page instead of killing
    hog = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived ${#x}"
    p = podman("run", "--rm", "--network", "none", *ULIMITS, "-m", "32m", "--memory-swap", "32m",
               "localhost/berth-busybox:test", "sh", "-c", hog, check=False, timeout=120)
    assert p.returncode == 137, (p.returncode, p.stdout, p.stderr)
    assert "survived" not in p.stdout
    # a process below the limit is unaffected
    p = podman("run", "--rm", "--network", "none", *ULIMITS, "-m", "32m", "--memory-swap", "32m",
               "localhost/berth-busybox:test", "sh", "-c", "x=$(head -c 1000000 /dev/zero | tr '\\0' a); "
               "echo ${#x}; cat /sys/fs/cgroup/memory/memory.limit_in_bytes", timeout=120)
    assert p.stdout.split() == ["1000000", str(32 << 20)]
