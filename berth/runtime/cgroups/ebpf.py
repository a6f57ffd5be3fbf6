"""cgroup v2 device control: an eBPF BPF_PROG_TYPE_CGROUP_DEVICE program built from device rules.

The program has the same meaning as the v1 lists `devices_v1` writes: start from deny-all, then
the rules in order, the last matching rule wins. It is compiled here (a dozen instruction kinds,
no dependency), loaded with bpf(BPF_PROG_LOAD) and attached with BPF_F_ALLOW_MULTI to the
cgroup directory; programs attached earlier by us are detached afterwards, as runc does.
Matching: an allow rule matches when the requested access is a subset of its access; a deny
rule matches when the requested access intersects its access.
"""

from __future__ import annotations

import ctypes
import os
import struct

from berth.runtime.cgroups.devices import Rule

# bpf(2) commands, types, flags (include/uapi/linux/bpf.h)
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2
SYS_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351, "riscv64": 280}

# struct bpf_cgroup_dev_ctx: access_type = (access << 16) | type
DEV_BLOCK, DEV_CHAR = 1, 2
ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4
_ACCESS_BITS = {"m": ACC_MKNOD, "r": ACC_READ, "w": ACC_WRITE}

# opcodes
_LDXW = 0x61        # BPF_LDX | BPF_MEM | BPF_W
_AND32_K = 0x54     # BPF_ALU | BPF_AND | BPF_K
_RSH32_K = 0x74
_MOV32_K = 0xB4
_MOV32_X = 0xBC
_JNE_K = 0x55       # BPF_JMP | BPF_JNE | BPF_K
_JNE_X = 0x5D
_JEQ_K = 0x15
_EXIT = 0x95


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    if imm > 0x7FFFFFFF:
        imm -= 1 << 32
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _access_bits(access: str) -> int:
    bits = 0
    for c in access:
        bits |= _ACCESS_BITS[c]
    return bits


def compile_filter(rules: list[Rule]) -> bytes:
    """Build the program: prologue loads type/access/major/minor into r2..r5, one block per rule
    (last rule first, first match returns), then deny."""
    prog: list[tuple[int, int, int, int, int | str]] = [
        (_LDXW, 2, 1, 0, 0), (_AND32_K, 2, 0, 0, 0xFFFF),
        (_LDXW, 3, 1, 0, 0), (_RSH32_K, 3, 0, 0, 16),
        (_LDXW, 4, 1, 4, 0), (_LDXW, 5, 1, 8, 0),
    ]
    out = [_insn(c, d, s, o, int(i)) for c, d, s, o, i in prog]
    for rule in reversed(rules):
        block: list[tuple[int, int, int, str | int, int]] = []   # (code, dst, src, off|"next", imm)
        if rule.type != "a":
            block.append((_JNE_K, 2, 0, "next", DEV_BLOCK if rule.type == "b" else DEV_CHAR))
        bits = _access_bits(rule.access)
        if bits != ACC_MKNOD | ACC_READ | ACC_WRITE:
            block.append((_MOV32_X, 1, 3, 0, 0))
            block.append((_AND32_K, 1, 0, 0, bits))
            if rule.allow:
                block.append((_JNE_X, 1, 3, "next", 0))   # requested ⊄ allowed
            else:
                block.append((_JEQ_K, 1, 0, "next", 0))   # requested ∩ denied = ∅
        if rule.major >= 0:
            block.append((_JNE_K, 4, 0, "next", rule.major))
        if rule.minor >= 0:
            block.append((_JNE_K, 5, 0, "next", rule.minor))
        block.append((_MOV32_K, 0, 0, 0, 1 if rule.allow else 0))
        block.append((_EXIT, 0, 0, 0, 0))
        n = len(block)
        for j, (code, dst, src, off, imm) in enumerate(block):
            out.append(_insn(code, dst, src, n - (j + 1) if off == "next" else off, imm))
        if rule.matches_everything:
            return b"".join(out)    # unconditional: earlier rules are unreachable
    out.append(_insn(_MOV32_K, 0, 0, 0, 0))
    out.append(_insn(_EXIT))
    return b"".join(out)


def allows_everything(rules: list[Rule]) -> bool:
    """True when the rules, read like v1 lists after deny-all, leave every device allowed."""
    state = False
    for r in rules:
        if r.matches_everything:
            state = r.allow
        elif not r.allow:
            state = False
    return state


_libc: ctypes.CDLL | None = None


def _bpf(cmd: int, attr: ctypes.Array) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    nr = SYS_BPF.get(os.uname().machine)
    if nr is None:
        raise OSError(38, "bpf syscall number unknown for this architecture")
    ret = _libc.syscall(ctypes.c_long(nr), ctypes.c_long(cmd), attr, ctypes.c_long(len(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({cmd}): {os.strerror(err)}")
    return ret


def load_program(insns: bytes, *, log: bool = False) -> int:
    """BPF_PROG_LOAD a cgroup device program; returns its fd (caller closes)."""
    code = ctypes.create_string_buffer(insns, len(insns))
    license_ = ctypes.create_string_buffer(b"Apache")
    log_buf = ctypes.create_string_buffer(65536 if log else 1)
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("<IIQQIIQII16sII", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, len(insns) // 8,
                     ctypes.addressof(code), ctypes.addressof(license_), 1 if log else 0,
                     len(log_buf) if log else 0, ctypes.addressof(log_buf) if log else 0, 0, 0,
                     b"berth_dev", 0, BPF_CGROUP_DEVICE)
    try:
        return _bpf(BPF_PROG_LOAD, attr)
    except OSError as e:
        if log or e.errno not in (13, 22):   # EACCES/EINVAL: retry once for the verifier log
            raise
        try:
            return load_program(insns, log=True)
        except OSError as e2:
            verifier = log_buf.value.decode(errors="replace")[-500:]
            raise OSError(e2.errno, f"{e2.strerror}: {verifier}") from None


def query_programs(cgroup_fd: int) -> list[int]:
    """IDs of device programs attached to the cgroup itself."""
    ids = (ctypes.c_uint32 * 64)()
    attr = ctypes.create_string_buffer(64)
    struct.pack_into("<IIIIQI", attr, 0, cgroup_fd, BPF_CGROUP_DEVICE, 0, 0, ctypes.addressof(ids), 64)
    _bpf(BPF_PROG_QUERY, attr)
    count = struct.unpack_from("<I", attr, 24)[0]
    return list(ids[: min(count, 64)])


def _attach(cmd: int, cgroup_fd: int, prog_fd: int, flags: int) -> None:
    attr = ctypes.create_string_buffer(32)
    struct.pack_into("<IIIII", attr, 0, cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, flags, 0)
    _bpf(cmd, attr)


def _prog_fd_by_id(prog_id: int) -> int:
    attr = ctypes.create_string_buffer(16)
    struct.pack_into("<III", attr, 0, prog_id, 0, 0)
    return _bpf(BPF_PROG_GET_FD_BY_ID, attr)


class EbpfDeviceFilter:
    """Attach a device filter to a v2 cgroup directory, replacing the previous one."""

    def attach(self, cgroup_dir: str, rules: list[Rule]) -> None:
        prog_fd = load_program(compile_filter(rules))
        cg = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            old = query_programs(cg)
            _attach(BPF_PROG_ATTACH, cg, prog_fd, BPF_F_ALLOW_MULTI)
            for prog_id in old:
                try:
                    fd = _prog_fd_by_id(prog_id)
                except OSError:
                    continue
                try:
                    _attach(BPF_PROG_DETACH, cg, fd, 0)
                except OSError:
                    pass
                finally:
                    os.close(fd)
        finally:
            os.close(cg)
            os.close(prog_fd)

    def attached(self, cgroup_dir: str) -> list[int]:
        cg = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return query_programs(cg)
        finally:
            os.close(cg)
