"""Device rules: OCI `linux.resources.devices` entries, runc's default allow list, v1 strings."""

from __future__ import annotations

from berth.errors import InvalidArgument
from berth.runtime.cgroups.resources import PREFIX, Write

TYPE_CHECKING = False  # no typing (nor NamedTuple) at run time: it costs start-up
if TYPE_CHECKING:
    from typing import Any

FIELD = f"{PREFIX}.devices"


def _rule(type_: str, major: int | None, minor: int | None, access: str = "rwm") -> dict[str, Any]:
    d: dict[str, Any] = {"allow": True, "type": type_}
    if major is not None:
        d["major"] = major
    if minor is not None:
        d["minor"] = minor
    d["access"] = access
    return d


# runc's AllowedDevices (libcontainer/specconv), which it appends after the spec's own rules.
DEFAULT_ALLOWED_DEVICES: list[dict[str, Any]] = [
    _rule("c", None, None, "m"),   # mknod of any char device
    _rule("b", None, None, "m"),   # mknod of any block device
    _rule("c", 1, 3),              # /dev/null
    _rule("c", 1, 8),              # /dev/random
    _rule("c", 1, 7),              # /dev/full
    _rule("c", 5, 0),              # /dev/tty
    _rule("c", 1, 5),              # /dev/zero
    _rule("c", 1, 9),              # /dev/urandom
    _rule("c", 136, None),         # /dev/pts/*
    _rule("c", 5, 2),              # /dev/ptmx
]


class Rule(tuple):
    """A normalised device rule; major/minor -1 mean any. A 5-tuple with named fields."""

    __slots__ = ()

    def __new__(cls, allow: bool, type: str, major: int, minor: int, access: str) -> Rule:  # noqa: A002
        return tuple.__new__(cls, (allow, type, major, minor, access))

    allow = property(lambda self: self[0])
    type = property(lambda self: self[1])
    major = property(lambda self: self[2])
    minor = property(lambda self: self[3])
    access = property(lambda self: self[4])

    def __repr__(self) -> str:
        return (f"Rule(allow={self[0]!r}, type={self[1]!r}, major={self[2]!r}, minor={self[3]!r}, "
                f"access={self[4]!r})")

    def v1_string(self) -> str:
        major = "*" if self.major < 0 else str(self.major)
        minor = "*" if self.minor < 0 else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"

    @property
    def matches_everything(self) -> bool:
        return self.type == "a" and self.major < 0 and self.minor < 0 and set(self.access) == set("rwm")


def parse_rules(rules: list[Any]) -> list[Rule]:
    """Validate OCI device rules; errors name the offending entry."""
    out = []
    for i, r in enumerate(rules):
        where = f"{FIELD}[{i}]"
        if not isinstance(r, dict):
            raise InvalidArgument(f"{where} must be an object")
        unknown = set(r) - {"allow", "type", "major", "minor", "access"}
        if unknown:
            raise InvalidArgument(f"{where}.{sorted(unknown)[0]} is not supported")
        allow = r.get("allow")
        if not isinstance(allow, bool):
            raise InvalidArgument(f"{where}.allow is required and must be a boolean")
        type_ = r.get("type") or "a"
        if type_ not in ("a", "b", "c"):
            raise InvalidArgument(f"{where}.type must be one of a, b, c (got {type_!r})")
        nums = []
        for k in ("major", "minor"):
            v = r.get(k)
            if v is None:
                v = -1
            if not isinstance(v, int) or isinstance(v, bool) or v < -1 or v > 0xFFFFFFFF:
                raise InvalidArgument(f"{where}.{k} must be a device number")
            nums.append(v)
        access = r.get("access") or "rwm"
        if not isinstance(access, str) or not set(access) <= set("rwm"):
            raise InvalidArgument(f"{where}.access must be made of r, w and m (got {access!r})")
        access = "".join(c for c in "rwm" if c in access)
        out.append(Rule(allow, type_, nums[0], nums[1], access))
    return out


def devices_v1(rules: list[Any]) -> list[Write]:
    """devices.deny "a" first, then every rule in order to devices.allow / devices.deny."""
    parsed = parse_rules(rules)
    writes = [Write("devices", "devices.deny", "a", FIELD)]
    for i, r in enumerate(parsed):
        writes.append(Write("devices", "devices.allow" if r.allow else "devices.deny", r.v1_string(),
                            f"{FIELD}[{i}]"))
    return writes
