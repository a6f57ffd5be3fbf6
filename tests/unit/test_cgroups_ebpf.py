"""The eBPF device filter compiler, run on a small interpreter of the instructions it emits."""

from __future__ import annotations

import random
import struct

from berth.runtime.cgroups import DEFAULT_ALLOWED_DEVICES
from berth.runtime.cgroups.devices import Rule, parse_rules
from berth.runtime.cgroups.ebpf import ACC_MKNOD, ACC_READ, ACC_WRITE, allows_everything, compile_filter

U32 = 0xFFFFFFFF
U64 = 0xFFFFFFFFFFFFFFFF
_TYPES = {"b": 1, "c": 2}
_ACC = {"m": ACC_MKNOD, "r": ACC_READ, "w": ACC_WRITE}


def run(prog: bytes, type_: str, major: int, minor: int, access: str) -> int:
    """Interpret the cgroup device program for one request; returns r0."""
    acc = sum(_ACC[c] for c in access)
    ctx = struct.pack("<III", (acc << 16) | _TYPES[type_], major, minor)
    insns = [struct.unpack_from("<BBhi", prog, i) for i in range(0, len(prog), 8)]
    regs = [0] * 11
    pc = 0
    for _ in range(10000):
        code, regbyte, off, imm = insns[pc]
        dst, src = regbyte & 0xF, regbyte >> 4
        pc += 1
        if code == 0x61:
            assert src == 1
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif code == 0x54:
            regs[dst] = regs[dst] & imm & U32
        elif code == 0x74:
            regs[dst] = (regs[dst] & U32) >> imm
        elif code == 0xB4:
            regs[dst] = imm & U32
        elif code == 0xBC:
            regs[dst] = regs[src] & U32
        elif code in (0x55, 0x5D, 0x15):
            other = regs[src] if code == 0x5D else imm & U64
            equal = regs[dst] == other
            if equal == (code == 0x15):
                pc += off
        elif code == 0x95:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
        assert 0 <= pc < len(insns), "jump out of the program"
    raise AssertionError("program does not terminate")


def reference(rules: list[Rule], type_: str, major: int, minor: int, access: str) -> int:
    """v1 semantics after deny-all: the last matching rule decides."""
    allowed = False
    for r in rules:
        if (r.type not in ("a", type_) or (r.major >= 0 and r.major != major)
                or (r.minor >= 0 and r.minor != minor)):
            continue
        if r.allow and set(access) <= set(r.access):
            allowed = True
        elif not r.allow and set(access) & set(r.access):
            allowed = False
    return int(allowed)


def test_default_list():
    rules = parse_rules([{"allow": False, "access": "rwm"}, *DEFAULT_ALLOWED_DEVICES,
                         {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"}])
    prog = compile_filter(rules)
    assert run(prog, "c", 1, 3, "rw") == 1          # /dev/null
    assert run(prog, "c", 136, 7, "rw") == 1        # /dev/pts/7
    assert run(prog, "c", 1, 11, "r") == 0          # /dev/kmsg
    assert run(prog, "b", 8, 0, "m") == 1           # mknod of any block device...
    assert run(prog, "b", 8, 0, "r") == 0           # ...but no reading it
    assert run(prog, "c", 10, 229, "rw") == 0       # fuse denied
    assert not allows_everything(rules)


def test_wildcards_and_partial_access():
    rules = parse_rules([{"allow": True, "access": "rwm"},
                         {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}])
    prog = compile_filter(rules)
    assert run(prog, "c", 1, 3, "r") == 1
    assert run(prog, "c", 1, 3, "w") == 0
    assert run(prog, "c", 1, 3, "rw") == 0
    assert run(prog, "b", 7, 1, "rwm") == 1
    assert not allows_everything(rules)
    assert allows_everything(parse_rules([{"allow": False}, {"allow": True}]))
    # an unconditional rule makes earlier ones unreachable: the program stops there
    short = compile_filter(parse_rules([{"allow": True, "type": "c", "major": 1}, {"allow": True}]))
    long = compile_filter(parse_rules([{"allow": True}, {"allow": True, "type": "c", "major": 1}]))
    assert len(short) < len(long)


def test_random_rule_sets_match_the_reference():
    rnd = random.Random(1234)
    accesses = ["r", "w", "m", "rw", "rm", "wm", "rwm"]
    for _ in range(300):
        rules = []
        for _ in range(rnd.randint(0, 6)):
            rules.append(Rule(rnd.random() < 0.6, rnd.choice("abc"), rnd.choice([-1, 1, 5, 136]),
                              rnd.choice([-1, 0, 3, 9]), rnd.choice(accesses)))
        prog = compile_filter(rules)
        for _ in range(20):
            req = (rnd.choice("bc"), rnd.choice([1, 5, 136, 8]), rnd.choice([0, 3, 9, 2]),
                   rnd.choice(accesses))
            assert run(prog, *req) == reference(rules, *req), (rules, req)
