"""The default OCI runtime spec (Docker's defaults), --cap-add/--cap-drop and --privileged."""

from __future__ import annotations

import copy
import json
import resource

import pytest

from berth.errors import InvalidArgument
from berth.oci import spec
from berth.runtime import caps, seccomp


@pytest.fixture
def s() -> dict:
    return spec.default_spec(["echo", "hi"], hostname="box", host_nofile_hard=1 << 20)


def mount(sp: dict, dest: str) -> dict:
    return next(m for m in sp["mounts"] if m["destination"] == dest)


def test_process_defaults(s):
    assert s["ociVersion"].startswith("1.")
    p = s["process"]
    assert p["user"] == {"uid": 0, "gid": 0}
    assert p["args"] == ["echo", "hi"] and p["cwd"] == "/"
    assert p["env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    assert p["terminal"] is False and p["noNewPrivileges"] is False
    assert s["hostname"] == "box"
    assert s["root"] == {"path": "rootfs", "readonly": False}
    assert spec.default_spec(terminal=True)["process"]["env"][-1] == "TERM=xterm"
    assert spec.default_spec()["process"]["args"] == ["sh"]


def test_fourteen_capabilities(s):
    c = s["process"]["capabilities"]
    assert len(spec.DEFAULT_CAPS) == 14
    for key in ("bounding", "effective", "permitted"):
        assert caps.mask(c[key]) == 0xA80425FB
    assert c["inheritable"] == [] and c["ambient"] == []  # CVE-2022-24769


def test_rlimits_clamped_to_host_hard_limit():
    assert spec.default_spec(host_nofile_hard=1 << 20)["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    assert spec.default_spec(host_nofile_hard=512)["process"]["rlimits"][0]["hard"] == 512
    assert spec.default_spec(host_nofile_hard=512)["process"]["rlimits"][0]["soft"] == 512
    assert spec.default_spec(host_nofile_hard=resource.RLIM_INFINITY)["process"]["rlimits"][0]["hard"] == 1024
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    expected = 1024 if hard == resource.RLIM_INFINITY else min(1024, hard)
    assert spec.default_spec()["process"]["rlimits"][0]["hard"] == expected


def test_mounts(s):
    assert [m["destination"] for m in s["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"]
    assert mount(s, "/proc") == {"destination": "/proc", "type": "proc", "source": "proc",
                                 "options": ["nosuid", "noexec", "nodev"]}
    assert mount(s, "/dev")["options"] == ["nosuid", "strictatime", "mode=755", "size=65536k"]
    assert mount(s, "/dev/pts")["options"] == ["nosuid", "noexec", "newinstance", "ptmxmode=0666",
                                               "mode=0620", "gid=5"]
    assert mount(s, "/sys")["type"] == "sysfs" and "ro" in mount(s, "/sys")["options"]
    assert mount(s, "/sys/fs/cgroup")["type"] == "cgroup" and "ro" in mount(s, "/sys/fs/cgroup")["options"]
    assert mount(s, "/dev/mqueue")["type"] == "mqueue"
    shm = mount(s, "/dev/shm")
    assert shm["type"] == "tmpfs"
    assert shm["options"] == ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]  # 64 MiB


def test_namespaces():
    assert {n["type"] for n in spec.default_spec()["linux"]["namespaces"]} == {
        "pid", "network", "ipc", "uts", "mount"}
    v2 = spec.default_spec(cgroupns=True)
    assert {"type": "cgroup"} in v2["linux"]["namespaces"]


def test_masked_and_readonly_paths(s):
    assert s["linux"]["maskedPaths"] == [
        "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
        "/proc/sched_debug", "/proc/scsi", "/proc/timer_list", "/proc/timer_stats",
        "/sys/devices/virtual/powercap", "/sys/firmware"]
    assert s["linux"]["readonlyPaths"] == [
        "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
    extra = "/sys/devices/system/cpu/cpu0/thermal_throttle"
    assert spec.default_spec(masked_extra=[extra])["linux"]["maskedPaths"][-1] == extra


def test_device_cgroup(s):
    def rule(allow, major, minor):
        return {"allow": allow, "type": "c", "major": major, "minor": minor, "access": "rwm"}

    assert s["linux"]["resources"]["devices"] == [
        {"allow": False, "access": "rwm"},
        rule(True, 1, 5), rule(True, 1, 3), rule(True, 1, 9), rule(True, 1, 8),
        rule(True, 5, 0), rule(True, 5, 1), rule(False, 10, 229)]


def test_seccomp_is_the_default_profile(s):
    assert s["linux"]["seccomp"] == spec.default_seccomp_profile(spec.DEFAULT_CAPS)
    seccomp.validate(s["linux"]["seccomp"])
    assert "seccomp" not in spec.default_spec(seccomp=False)["linux"]


def test_json_serialisable_and_independent(s):
    assert json.loads(json.dumps(s)) == s
    s["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    s["linux"]["maskedPaths"].clear()
    s["mounts"][0]["options"].append("ro")
    fresh = spec.default_spec()
    assert "CAP_SYS_ADMIN" not in fresh["process"]["capabilities"]["bounding"]
    assert len(spec.DEFAULT_CAPS) == 14 and fresh["linux"]["maskedPaths"] == spec.MASKED_PATHS
    assert "ro" not in fresh["mounts"][0]["options"]


# --- docker --cap-add / --cap-drop ---------------------------------------------------------------

def bounding(sp: dict) -> list[str]:
    return sp["process"]["capabilities"]["bounding"]


def test_cap_add_and_drop(s):
    before = copy.deepcopy(s)
    out = spec.with_capabilities(s, add=["net_admin"], drop=["CAP_MKNOD", "kill"])
    assert s == before  # input untouched
    b = bounding(out)
    assert "CAP_NET_ADMIN" in b and "CAP_MKNOD" not in b and "CAP_KILL" not in b and len(b) == 13
    c = out["process"]["capabilities"]
    assert c["effective"] == c["permitted"] == b and c["inheritable"] == []
    assert out["linux"]["seccomp"] == s["linux"]["seccomp"]  # no rule depends on these caps


def test_cap_add_wins_over_drop(s):
    assert "CAP_CHOWN" in bounding(spec.with_capabilities(s, add=["CHOWN"], drop=["CHOWN"]))


def test_cap_drop_all(s):
    assert bounding(spec.with_capabilities(s, add=["CAP_CHOWN"], drop=["ALL"])) == ["CAP_CHOWN"]
    assert bounding(spec.with_capabilities(s, drop=["all"])) == []


def test_cap_add_all(s):
    out = spec.with_capabilities(s, add=["ALL"], drop=["CAP_MKNOD"])
    assert len(bounding(out)) == 40 and "CAP_MKNOD" not in bounding(out)
    assert "mount" in {n for r in out["linux"]["seccomp"]["syscalls"] for n in r["names"]}


def test_cap_add_sys_admin_recomputes_seccomp(s):
    out = spec.with_capabilities(s, add=["SYS_ADMIN"])
    assert out["linux"]["seccomp"] == spec.default_seccomp_profile(spec.DEFAULT_CAPS + ["CAP_SYS_ADMIN"])
    back = spec.with_capabilities(out, drop=["CAP_SYS_ADMIN"])
    assert back["linux"]["seccomp"] == s["linux"]["seccomp"]


def test_custom_seccomp_profile_is_left_alone(s):
    custom = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "syscalls": []}
    s["linux"]["seccomp"] = custom
    assert spec.with_capabilities(s, add=["SYS_ADMIN"])["linux"]["seccomp"] == custom


@pytest.mark.parametrize("bad", ["CAP_BOGUS", "FLY", 3])
def test_unknown_capability(s, bad):
    with pytest.raises(InvalidArgument):
        spec.with_capabilities(s, add=[bad])
    with pytest.raises(InvalidArgument):
        spec.with_capabilities(s, drop=[bad])


# --- docker --privileged -----------------------------------------------------------------------

def test_privileged(s):
    before = copy.deepcopy(s)
    p = spec.privileged(s)
    assert s == before
    for key in ("bounding", "effective", "permitted"):
        assert p["process"]["capabilities"][key] == list(caps.CAPS)
    assert "seccomp" not in p["linux"]
    assert p["linux"]["maskedPaths"] == [] and p["linux"]["readonlyPaths"] == []
    assert "ro" not in mount(p, "/sys")["options"] and "ro" not in mount(p, "/sys/fs/cgroup")["options"]
    assert p["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert mount(p, "/proc") == mount(s, "/proc")
    json.dumps(p)
