"""Seccomp: validation, Docker profile resolution per capability set/arch, and compiled BPF."""

from __future__ import annotations

import copy
import hashlib
import json
import struct
import subprocess
import sys

import pytest

from berth.errors import InvalidArgument
from berth.oci import spec
from berth.runtime import seccomp

CLONE_NS_MASK = 0x7E020000


def rules_for(profile: dict, name: str) -> list[dict]:
    return [r for r in profile["syscalls"] if name in r["names"]]


def unconditional(profile: dict) -> set[str]:
    return {n for r in profile["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
            for n in r["names"]}


# --- the packaged data -------------------------------------------------------------------------

def test_packaged_profile_is_moby_profiles_v0_2_3():
    with open(spec._PROFILE_FILE, "rb") as f:
        data = f.read()
    # byte-identical to moby/profiles seccomp/v0.2.3 default.json (vendored by moby docker-v29.x)
    assert hashlib.sha256(data).hexdigest() == \
        "536529b665dd0972c37bfb569f5d4ac8a53592e7b00752bc39ff063ca9864c74"
    raw = json.loads(data)
    assert raw["defaultAction"] == "SCMP_ACT_ERRNO" and raw["defaultErrnoRet"] == 1
    assert len(raw["syscalls"]) == 33
    assert len(raw["syscalls"][0]["names"]) == 361
    assert len({n for r in raw["syscalls"] for n in r["names"]}) == 426


def test_docker_default_profile_returns_a_copy():
    a = spec.docker_default_profile()
    a["syscalls"].clear()
    assert len(spec.docker_default_profile()["syscalls"]) == 33


# --- resolution (moby setupSeccomp) --------------------------------------------------------------

def test_default_caps_profile():
    p = spec.default_seccomp_profile()
    assert p["defaultAction"] == "SCMP_ACT_ERRNO" and p["defaultErrnoRet"] == 1
    assert p["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    names = unconditional(p)
    for denied in ("mount", "umount2", "unshare", "setns", "bpf", "perf_event_open", "clone3", "reboot",
                   "init_module", "open_by_handle_at", "keyctl", "add_key", "swapon", "kexec_load"):
        assert denied not in names, denied
    for allowed in ("read", "execve", "fork", "chown32", "ptrace", "chroot", "arch_prctl", "modify_ldt"):
        assert allowed in names, allowed
    assert rules_for(p, "clone") == [{"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                                      "args": [{"index": 0, "value": CLONE_NS_MASK,
                                                "op": "SCMP_CMP_MASKED_EQ"}]}]
    assert rules_for(p, "clone3") == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    socket_args = [r["args"][0] for r in rules_for(p, "socket")]
    assert [(a["op"], a["value"]) for a in socket_args] == [
        ("SCMP_CMP_LT", 38), ("SCMP_CMP_EQ", 39), ("SCMP_CMP_GT", 40)]  # AF_ALG and AF_VSOCK refused
    assert sorted(r["args"][0]["value"] for r in rules_for(p, "personality")) == \
        [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]
    for r in p["syscalls"]:
        assert set(r) <= {"names", "action", "errnoRet", "args"}  # Docker-only fields resolved away
    seccomp.validate(p)


def test_sys_admin_profile():
    p = spec.default_seccomp_profile(spec.DEFAULT_CAPS + ["CAP_SYS_ADMIN"])
    names = unconditional(p)
    for allowed in ("mount", "umount2", "unshare", "setns", "clone", "clone3", "fsopen", "bpf"):
        assert allowed in names, allowed
    assert not [r for r in p["syscalls"] if r["action"] != "SCMP_ACT_ALLOW"]  # no clone3 ENOSYS rule
    assert not [r for r in rules_for(p, "clone") if r.get("args")]


@pytest.mark.parametrize("cap,calls", [
    ("CAP_SYS_PTRACE", ["kcmp", "pidfd_getfd", "process_madvise"]),
    ("CAP_DAC_READ_SEARCH", ["open_by_handle_at"]),
    ("CAP_SYS_TIME", ["settimeofday", "clock_settime"]),
    ("CAP_SYS_NICE", ["mbind", "set_mempolicy"]),
    ("CAP_BPF", ["bpf"]),
    ("CAP_PERFMON", ["perf_event_open"]),
    ("CAP_SYSLOG", ["syslog"]),
])
def test_capability_gated_calls(cap, calls):
    without = unconditional(spec.default_seccomp_profile())
    with_cap = unconditional(spec.default_seccomp_profile(spec.DEFAULT_CAPS + [cap]))
    for call in calls:
        assert call not in without and call in with_cap


def test_chroot_needs_sys_chroot():
    caps = [c for c in spec.DEFAULT_CAPS if c != "CAP_SYS_CHROOT"]
    assert "chroot" not in unconditional(spec.default_seccomp_profile(caps))


def test_min_kernel_gate():
    assert "ptrace" in unconditional(spec.default_seccomp_profile(kernel=(6, 1)))
    assert "ptrace" not in unconditional(spec.default_seccomp_profile(kernel=(4, 4)))


def test_other_architectures():
    arm = spec.default_seccomp_profile(arch="arm64")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "cacheflush" in unconditional(arm) and "arch_prctl" not in unconditional(arm)
    s390 = spec.default_seccomp_profile(arch="s390x")
    assert [r["args"][0]["index"] for r in rules_for(s390, "clone")] == [1]  # s390 puts flags in arg1
    riscv = spec.default_seccomp_profile(arch="riscv64")
    assert riscv["architectures"] == ["SCMP_ARCH_RISCV64"]


def test_resolution_refuses_ambiguous_profiles():
    p = spec.docker_default_profile()
    p["architectures"] = ["SCMP_ARCH_X86_64"]
    with pytest.raises(InvalidArgument, match="both 'architectures' and 'archMap'"):
        spec.resolve_seccomp_profile(p, spec.DEFAULT_CAPS)
    p = spec.docker_default_profile()
    p["syscalls"][0]["name"] = "read"
    with pytest.raises(InvalidArgument, match=r"syscalls\[0\]: both 'name' and 'names'"):
        spec.resolve_seccomp_profile(p, spec.DEFAULT_CAPS)


# --- validation -------------------------------------------------------------------------------

def mutate(fn):
    p = copy.deepcopy(spec.default_seccomp_profile())
    fn(p)
    return p


@pytest.mark.parametrize("change,message", [
    (lambda p: p["syscalls"][3].update(action="SCMP_ACT_BOGUS"),
     "linux.seccomp.syscalls[3].action: unknown action 'SCMP_ACT_BOGUS'"),
    (lambda p: p.pop("defaultAction"), "linux.seccomp.defaultAction: required"),
    (lambda p: p.update(defaultAction="SCMP_ACT_NOTIFY"),
     "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY is not"),
    (lambda p: p["syscalls"][1].update(action="SCMP_ACT_NOTIFY"), "syscalls[1].action: SCMP_ACT_NOTIFY"),
    (lambda p: p["architectures"].append("SCMP_ARCH_Z80"), "linux.seccomp.architectures[3]: unknown"),
    (lambda p: p.update(flags=["SECCOMP_FILTER_FLAG_FAST"]), "linux.seccomp.flags[0]: unknown flag"),
    (lambda p: p.update(flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]),
     "flags[0]: SECCOMP_FILTER_FLAG_WAIT"),
    (lambda p: p.update(listenerPath="/run/x.sock"), "linux.seccomp.listenerPath"),
    (lambda p: p["syscalls"][0].update(errnoRet=5), "linux.seccomp.syscalls[0].errnoRet: only valid"),
    (lambda p: p.update(defaultErrnoRet=-1), "linux.seccomp.defaultErrnoRet: must be an integer"),
    (lambda p: p["syscalls"][2]["args"][0].update(index=6), "linux.seccomp.syscalls[2].args[0].index"),
    (lambda p: p["syscalls"][2]["args"][0].update(op="SCMP_CMP_ABOUT"), "syscalls[2].args[0].op: unknown"),
    (lambda p: p["syscalls"][2]["args"][0].update(value=-3), "syscalls[2].args[0].value: must be"),
    (lambda p: p["syscalls"][2]["args"][0].update(valueTwo=1 << 64), "syscalls[2].args[0].valueTwo"),
    (lambda p: p["syscalls"][2]["args"][0].update(extra=1), "syscalls[2].args[0].extra: unknown field"),
    (lambda p: p["syscalls"][4].update(names=[]), "linux.seccomp.syscalls[4].names: must be a non-empty"),
    (lambda p: p["syscalls"][4].update(names=["ok", 7]), "linux.seccomp.syscalls[4].names[1]"),
    (lambda p: p["syscalls"][4].pop("action"), "linux.seccomp.syscalls[4].action: required"),
    (lambda p: p["syscalls"][4].update(includes={"caps": []}), "syscalls[4].includes: Docker profile field"),
    (lambda p: p.update(archMap=[]), "linux.seccomp.archMap: Docker profile field"),
    (lambda p: p.update(defaultActoin="x"), "linux.seccomp.defaultActoin: unknown field"),
    (lambda p: p.update(syscalls={}), "linux.seccomp.syscalls: must be a list"),
    (lambda p: p["syscalls"].append("read"), "linux.seccomp.syscalls[15]: must be an object"),
])
def test_validate_names_the_field(change, message):
    with pytest.raises(InvalidArgument) as e:
        seccomp.validate(mutate(change))
    assert message in str(e.value)


def test_validate_rejects_non_object():
    with pytest.raises(InvalidArgument, match="linux.seccomp: must be an object"):
        seccomp.validate([])


# --- translation to libseccomp ------------------------------------------------------------------

def test_action_values():
    assert seccomp.action_value("SCMP_ACT_ERRNO", None) == 0x50001  # EPERM by default, as runc
    assert seccomp.action_value("SCMP_ACT_ERRNO", 38) == 0x50026
    assert seccomp.action_value("SCMP_ACT_TRACE", 2) == 0x7FF00002
    assert seccomp.action_value("SCMP_ACT_KILL", None) == 0
    assert seccomp.action_value("SCMP_ACT_KILL_THREAD", None) == 0
    assert seccomp.action_value("SCMP_ACT_KILL_PROCESS", None) == 0x80000000
    assert seccomp.action_value("SCMP_ACT_ALLOW", None) == 0x7FFF0000


def test_argument_conditions():
    args = [{"index": 0, "value": CLONE_NS_MASK, "op": "SCMP_CMP_MASKED_EQ"},
            {"index": 2, "value": 5, "valueTwo": 0, "op": "SCMP_CMP_LE"}]
    assert seccomp._conditions(args) == [[(0, 7, CLONE_NS_MASK, 0), (2, 3, 5, 0)]]
    # two conditions on one argument: one rule each (runc's behaviour; libseccomp refuses them together)
    dup = [{"index": 0, "value": 1, "op": "SCMP_CMP_GE"}, {"index": 0, "value": 9, "op": "SCMP_CMP_NE"}]
    assert seccomp._conditions(dup) == [[(0, 5, 1, 0)], [(0, 1, 9, 0)]]
    assert seccomp._conditions([]) == [[]]


def instructions(bpf: bytes) -> list[tuple[int, int, int, int]]:
    assert len(bpf) % 8 == 0
    return [struct.unpack_from("<HBBI", bpf, i) for i in range(0, len(bpf), 8)]


def test_export_bpf_compiles_the_default_profile():
    bpf = seccomp.export_bpf(spec.default_seccomp_profile())
    ins = instructions(bpf)
    assert 100 < len(ins) <= 4096
    ks = {k for _, _, _, k in ins}
    assert 0xC000003E in ks and 0x40000003 in ks  # x86_64 and i386 arch checks
    assert CLONE_NS_MASK in ks  # the clone flag mask
    assert 0x50026 in ks  # clone3 → ERRNO(ENOSYS)
    assert 0x50001 in ks  # default → ERRNO(EPERM)
    # the SYS_ADMIN variant has no ENOSYS return and no clone mask
    ks_admin = {k for *_, k in instructions(seccomp.export_bpf(
        spec.default_seccomp_profile(spec.DEFAULT_CAPS + ["CAP_SYS_ADMIN"])))}
    assert 0x50026 not in ks_admin and CLONE_NS_MASK not in ks_admin


def test_export_bpf_skips_unknown_names_and_default_action_rules():
    base = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]}
    same = copy.deepcopy(base)
    same["syscalls"][0]["names"].append("no_such_syscall_ever")
    same["syscalls"].append({"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1})
    assert seccomp.export_bpf(same) == seccomp.export_bpf(base)
    other = copy.deepcopy(base)
    other["syscalls"].append({"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"})
    assert seccomp.export_bpf(other) != seccomp.export_bpf(base)


def test_export_bpf_with_flags_and_conditions():
    p = {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"],
         "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                       "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
                                {"index": 1, "value": 15, "op": "SCMP_CMP_EQ"}]}]}
    ks = {k for *_, k in instructions(seccomp.export_bpf(p))}
    assert {9, 15, 0x5000D} <= ks


def test_export_bpf_validates_first():
    with pytest.raises(InvalidArgument, match="syscalls\\[0\\].action"):
        seccomp.export_bpf({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "?"}]})


def test_runtime_modules_import_light():
    code = ("import sys, berth.runtime.seccomp, berth.runtime.caps\n"
            "maps = open('/proc/self/maps').read()\n"
            "print('libseccomp' in maps, 'json' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
