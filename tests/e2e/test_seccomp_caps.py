"""Real kernel checks: a child process loads Docker's default seccomp profile and/or applies
capabilities the way the runtime does, then tries privileged and ordinary calls.

Each probe runs in its own Python child, which first moves into a private mount namespace, so a
call that wrongly succeeds cannot touch the host and the test process keeps its privileges.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from berth.oci import spec
from berth.runtime import caps

pytestmark = pytest.mark.root

PROBE = r"""
import ctypes, errno, json, os, socket, subprocess, sys
from berth.runtime import caps, seccomp

cfg = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def sc(*args):
    ctypes.set_errno(0)
    r = libc.syscall(*[ctypes.c_long(a) for a in args])
    return 0 if r >= 0 else ctypes.get_errno()

def name(e):
    return errno.errorcode.get(e, str(e)) if e else "ok"

CLONE_NEWNS, CLONE_NEWUTS, CLONE_THREAD = 0x20000, 0x4000000, 0x10000
# a private mount namespace first (still fully privileged): nothing below can reach the host's mounts
assert sc(272, CLONE_NEWNS) == 0
assert libc.mount(b"none", b"/", None, ctypes.c_ulong(0x4000 | 0x40000), None) == 0

out = {}
if cfg.get("seccomp_first"):
    seccomp.load(cfg["profile"])
if cfg.get("caps"):
    caps.drop_bounding(cfg["caps"]["bounding"])
    if cfg.get("uid") is not None:
        libc.prctl(8, ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
        os.setresgid(cfg["uid"], cfg["uid"], cfg["uid"])
        os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
    caps.apply(cfg["caps"])
if cfg.get("nnp"):
    assert libc.prctl(38, ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)) == 0
if cfg.get("profile") and not cfg.get("seccomp_first"):
    try:
        seccomp.load(cfg["profile"])
    except PermissionError as e:
        out["load_error"] = str(e)

out["unshare_newns"] = name(sc(272, CLONE_NEWNS))
target = cfg["mount_target"].encode()
r = libc.mount(b"none", target, b"tmpfs", ctypes.c_ulong(0), None)
out["mount"] = name(0 if r == 0 else ctypes.get_errno())
out["clone3"] = name(sc(435, 0, 0))  # bad arguments: EINVAL if it reaches the kernel
out["clone_newuts"] = name(sc(56, CLONE_NEWUTS | CLONE_THREAD, 0, 0, 0, 0))  # EINVAL if let through
out["clone_plain"] = name(sc(56, CLONE_THREAD, 0, 0, 0, 0))
for fam, label in ((40, "socket_vsock"), (38, "socket_alg"), (socket.AF_UNIX, "socket_unix"),
                   (socket.AF_INET, "socket_inet")):
    try:
        socket.socket(fam, socket.SOCK_STREAM if fam != 38 else socket.SOCK_SEQPACKET, 0).close()
        out[label] = "ok"
    except OSError as e:
        out[label] = name(e.errno)
out["personality_query"] = name(sc(135, 0xFFFFFFFF))
out["personality_addr_no_randomize"] = name(sc(135, 0x0040000))
out["keyctl"] = name(sc(250, 0, -3 & 0xFFFFFFFF, 0))
pid = os.fork()
if pid == 0:
    os._exit(7)
out["fork_status"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
out["spawn_status"] = subprocess.run(["/bin/true"]).returncode
out["child_status"] = subprocess.run(["/bin/cat", "/proc/self/status"], capture_output=True,
                                     text=True).stdout
with open("/proc/self/status") as f:
    out["status"] = f.read()
out["uid"] = os.getuid()
print(json.dumps(out))
"""


def _status(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def run_probe(tmp_path, **cfg) -> dict:
    target = tmp_path / "mnt"
    target.mkdir(exist_ok=True)
    cfg["mount_target"] = str(target)
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(cfg)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    out["status"] = _status(out["status"])
    out["child_status"] = _status(out["child_status"])
    assert not os.path.ismount(target)
    return out


def default_caps() -> dict:
    return {"bounding": list(spec.DEFAULT_CAPS), "effective": list(spec.DEFAULT_CAPS),
            "permitted": list(spec.DEFAULT_CAPS), "inheritable": [], "ambient": []}


def test_default_profile_refuses_privileged_calls_even_for_full_root(tmp_path):
    # full capabilities, no NNP: only the seccomp filter stands in the way
    out = run_probe(tmp_path, profile=spec.default_seccomp_profile(), seccomp_first=True)
    assert out["status"]["Seccomp"] == "2"
    assert out["status"]["NoNewPrivs"] == "0"
    assert out["unshare_newns"] == "EPERM"
    assert out["mount"] == "EPERM"
    assert out["clone3"] == "ENOSYS"
    assert out["clone_newuts"] == "EPERM"
    assert out["clone_plain"] == "EINVAL"
    assert out["socket_vsock"] == "EPERM"
    assert out["socket_alg"] == "EPERM"
    assert out["socket_unix"] == "ok"
    assert out["socket_inet"] == "ok"
    assert out["personality_query"] == "ok"
    assert out["personality_addr_no_randomize"] == "EPERM"
    assert out["keyctl"] == "EPERM"  # not in the profile: the default action, errno 1
    assert out["fork_status"] == 7
    assert out["spawn_status"] == 0  # posix_spawn: clone3 → ENOSYS → glibc falls back to clone
    assert out["child_status"]["Seccomp"] == "2"  # the filter is inherited


def test_no_filter_lets_the_same_calls_reach_the_kernel(tmp_path):
    # control for the test above: without the filter the kernel's own answers come back
    out = run_probe(tmp_path)
    assert out["status"]["Seccomp"] == "0"
    assert out["unshare_newns"] == "ok"
    assert out["mount"] == "ok"  # inside the probe's private mount namespace only
    assert out["clone3"] == "EINVAL"
    assert out["clone_newuts"] == "EINVAL"
    assert out["personality_addr_no_randomize"] == "ok"


def test_docker_default_capabilities(tmp_path):
    out = run_probe(tmp_path, caps=default_caps())
    st = out["status"]
    for key in ("CapBnd", "CapPrm", "CapEff"):
        assert int(st[key], 16) == 0xA80425FB, key
    assert int(st["CapInh"], 16) == 0 and int(st["CapAmb"], 16) == 0
    assert st["Seccomp"] == "0"
    assert out["mount"] == "EPERM"  # no CAP_SYS_ADMIN
    assert out["unshare_newns"] == "EPERM"
    assert out["spawn_status"] == 0
    child = out["child_status"]
    assert int(child["CapEff"], 16) == 0xA80425FB  # root keeps its permitted set across execve


def test_runtime_order_seccomp_caps_setuid_ambient_nnp(tmp_path):
    # the runtime's order: seccomp while privileged, bounding, keepcaps + setuid, capset + ambient, NNP
    c = default_caps()
    c["effective"] = c["permitted"] = ["CAP_NET_BIND_SERVICE", "CAP_KILL"]
    c["inheritable"] = c["ambient"] = ["CAP_NET_BIND_SERVICE"]
    out = run_probe(tmp_path, profile=spec.default_seccomp_profile(), seccomp_first=True, caps=c,
                    uid=4242, nnp=True)
    st = out["status"]
    assert out["uid"] == 4242
    assert st["Seccomp"] == "2" and st["NoNewPrivs"] == "1"
    assert int(st["CapBnd"], 16) == 0xA80425FB
    assert int(st["CapEff"], 16) == int(st["CapPrm"], 16) == caps.mask(["CAP_NET_BIND_SERVICE", "CAP_KILL"])
    assert int(st["CapInh"], 16) == int(st["CapAmb"], 16) == 1 << 10
    assert out["unshare_newns"] == "EPERM" and out["clone3"] == "ENOSYS"
    child = out["child_status"]  # ambient capabilities survive execve for a non-root user
    assert int(child["CapEff"], 16) == 1 << 10
    assert child["NoNewPrivs"] == "1" and child["Seccomp"] == "2"


def test_load_without_privilege_or_nnp_is_refused(tmp_path):
    out = run_probe(tmp_path, caps=default_caps(), profile=spec.default_seccomp_profile())
    assert "no_new_privs or CAP_SYS_ADMIN" in out["load_error"]
    assert out["status"]["Seccomp"] == "0"


def test_load_after_nnp_without_privilege(tmp_path):
    out = run_probe(tmp_path, caps=default_caps(), nnp=True, profile=spec.default_seccomp_profile())
    assert "load_error" not in out
    assert out["status"]["Seccomp"] == "2" and out["clone3"] == "ENOSYS"


def test_profile_for_sys_admin_allows_namespaces(tmp_path):
    profile = spec.default_seccomp_profile(spec.DEFAULT_CAPS + ["CAP_SYS_ADMIN"])
    out = run_probe(tmp_path, profile=profile, seccomp_first=True)
    assert out["status"]["Seccomp"] == "2"
    assert out["unshare_newns"] == "ok"
    assert out["clone3"] == "EINVAL"
    assert out["clone_newuts"] == "EINVAL"
    assert out["socket_vsock"] == "EPERM"


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc not installed")
def test_runc_runs_our_default_spec(tmp_path, busybox_rootfs_template):
    """Cross-check the spec against a reference runtime: runc gives the container Docker's defaults."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copytree(busybox_rootfs_template, bundle / "rootfs", symlinks=True)
    config = spec.default_spec(["/bin/sh", "-c", "cat /proc/self/status; unshare -m true; echo rc=$?"],
                               hostname="berth-test")
    (bundle / "config.json").write_text(json.dumps(config))
    root = tmp_path / "runc-root"
    cid = "berth-h3-" + uuid.uuid4().hex[:8]
    try:
        proc = subprocess.run(["runc", "--root", str(root), "run", "-b", str(bundle), cid],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        subprocess.run(["runc", "--root", str(root), "delete", "-f", cid], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    st = _status(proc.stdout)
    assert int(st["CapEff"], 16) == 0xA80425FB and int(st["CapBnd"], 16) == 0xA80425FB
    assert int(st["CapInh"], 16) == 0
    assert st["Seccomp"] == "2" and st["NoNewPrivs"] == "0"
    assert "rc=1" in proc.stdout  # unshare refused inside
