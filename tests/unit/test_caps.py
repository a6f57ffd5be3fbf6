"""Capability names, masks and the order of syscalls apply()/drop_bounding() make (recorded, not made)."""

from __future__ import annotations

import os

import pytest

from berth.errors import InvalidArgument
from berth.oci import spec
from berth.runtime import caps


def test_capability_table_is_complete_and_numbered():
    assert list(caps.CAPS.values()) == list(range(41))
    assert caps.CAPS["CAP_CHECKPOINT_RESTORE"] == 40
    assert caps.CAPS["CAP_SYS_ADMIN"] == 21
    assert list(caps.CAPS) == spec.ALL_CAPS


def test_mask_of_docker_defaults():
    assert caps.mask(spec.DEFAULT_CAPS) == 0xA80425FB
    assert caps.mask([]) == 0
    assert caps.names(0xA80425FB) == sorted(spec.DEFAULT_CAPS, key=caps.CAPS.get)


def test_mask_accepts_docker_spellings():
    assert caps.mask(["chown", "Cap_Kill", " CAP_SETUID "]) == 1 << 0 | 1 << 5 | 1 << 7


@pytest.mark.parametrize("bad", ["CAP_BOGUS", "CAP_", "ALL", ""])
def test_mask_names_unknown_capability(bad):
    with pytest.raises(InvalidArgument, match="unknown capability") as e:
        caps.mask(["CAP_CHOWN", bad])
    assert repr(bad) in str(e.value)


def test_mask_rejects_non_strings():
    with pytest.raises(InvalidArgument):
        caps.mask([21])


def test_masks_names_the_set():
    with pytest.raises(InvalidArgument, match=r"process.capabilities.effective: unknown capability 'CAP_X'"):
        caps.masks({"bounding": ["CAP_CHOWN"], "effective": ["CAP_X"]})
    with pytest.raises(InvalidArgument, match="process.capabilities.sideways"):
        caps.masks({"sideways": []})
    with pytest.raises(InvalidArgument, match="process.capabilities.permitted: must be a list"):
        caps.masks({"permitted": "CAP_CHOWN"})
    assert caps.masks({"ambient": None}) == {"ambient": 0}


def test_last_cap_matches_proc():
    with open("/proc/sys/kernel/cap_last_cap") as f:
        assert caps.last_cap() == int(f.read())


def test_last_cap_probes_without_proc(monkeypatch):
    expected = caps.last_cap()
    monkeypatch.setattr(caps, "_last_cap", None)

    def no_proc(*a, **k):
        raise FileNotFoundError("no /proc")

    monkeypatch.setattr(caps, "open", no_proc, raising=False)
    assert caps.last_cap() == expected


def test_current_reads_proc_status():
    cur = caps.current()
    assert set(cur) == {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}
    assert cur == caps.current(os.getpid())
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("CapBnd:"))
    assert cur["CapBnd"] == int(line.split()[1], 16)


class Recorder:
    """Stands in for capset/prctl so the logic can be checked without touching this process."""

    def __init__(self, bounding: int):
        self.calls: list[tuple] = []
        self.bounding = bounding

    def capset(self, eff, prm, inh):
        self.calls.append(("capset", eff, prm, inh))

    def prctl(self, option, arg2=0, arg3=0):
        if option == caps._PR_CAPBSET_READ:
            return self.bounding >> arg2 & 1
        self.calls.append(("prctl", option, arg2, arg3))
        return 0


@pytest.fixture
def rec(monkeypatch):
    r = Recorder(bounding=(1 << 41) - 1 & ~(1 << 24))  # like this host: no CAP_SYS_RESOURCE
    monkeypatch.setattr(caps, "_capset", r.capset)
    monkeypatch.setattr(caps, "_prctl", r.prctl)
    monkeypatch.setattr(caps, "_last_cap", 40)
    return r


def test_drop_bounding_drops_everything_else(rec):
    caps.drop_bounding(spec.DEFAULT_CAPS)
    dropped = [c[2] for c in rec.calls if c[1] == caps._PR_CAPBSET_DROP]
    keep = {caps.CAPS[c] for c in spec.DEFAULT_CAPS}
    assert dropped == [n for n in range(41) if n not in keep and n != 24]  # 24 already gone


def test_drop_bounding_checks_names_first(rec):
    with pytest.raises(InvalidArgument):
        caps.drop_bounding(["CAP_CHOWN", "CAP_NOPE"])
    assert rec.calls == []


def test_apply_sets_then_ambient(rec):
    caps.apply({"bounding": spec.DEFAULT_CAPS, "effective": ["CAP_KILL"],
                "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"], "inheritable": ["CAP_NET_BIND_SERVICE"],
                "ambient": ["CAP_NET_BIND_SERVICE"]})
    assert rec.calls == [
        ("capset", 1 << 5, 1 << 5 | 1 << 10, 1 << 10),
        ("prctl", caps._PR_CAP_AMBIENT, caps._PR_CAP_AMBIENT_CLEAR_ALL, 0),
        ("prctl", caps._PR_CAP_AMBIENT, caps._PR_CAP_AMBIENT_RAISE, 10),
    ]


def test_apply_ignores_caps_the_kernel_lacks(rec, monkeypatch):
    monkeypatch.setattr(caps, "_last_cap", 37)
    caps.apply({"effective": ["CAP_BPF", "CAP_CHOWN"], "permitted": ["CAP_BPF", "CAP_CHOWN"]})
    assert rec.calls[0] == ("capset", 1, 1, 0)


def test_apply_refuses_ambient_outside_permitted_and_inheritable(rec):
    with pytest.raises(InvalidArgument, match="CAP_NET_RAW must also be permitted and inheritable"):
        caps.apply({"permitted": ["CAP_NET_RAW"], "ambient": ["CAP_NET_RAW"]})
    with pytest.raises(InvalidArgument, match="unknown capability"):
        caps.apply({"effective": ["CAP_CHOWN"], "ambient": ["CAP_WHATEVER"]})
    assert rec.calls == []
