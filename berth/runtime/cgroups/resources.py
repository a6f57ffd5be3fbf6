"""OCI `linux.resources`: validation and the `Write` record that translations produce.

Every translation (v1 and v2, one function per controller) is pure: OCI values in, an ordered
list of `Write(controller, file, value, field)` out. `field` names the OCI field the write comes
from, so a failing write can be reported as "linux.resources.memory.limit: ...".
"""

from __future__ import annotations

from berth.errors import InvalidArgument

TYPE_CHECKING = False  # no typing (nor NamedTuple) at run time: it costs ~8 ms of start-up
if TYPE_CHECKING:
    from typing import Any

PREFIX = "linux.resources"


class Write(tuple):
    """One write into a cgroup interface file; controller "" is the v2 unified directory.

    A 4-tuple (controller, file, value, field) with named fields, as a NamedTuple would be."""

    __slots__ = ()

    def __new__(cls, controller: str, file: str, value: str, field: str) -> Write:
        return tuple.__new__(cls, (controller, file, value, field))

    controller = property(lambda self: self[0])
    file = property(lambda self: self[1])
    value = property(lambda self: self[2])
    field = property(lambda self: self[3])

    def __repr__(self) -> str:
        return f"Write(controller={self[0]!r}, file={self[1]!r}, value={self[2]!r}, field={self[3]!r})"


_INT = "int"
_BOOL = "bool"
_STR = "str"
_LIST = "list"
_DICT = "dict"

SCHEMA: dict[str, Any] = {
    "devices": _LIST,
    "memory": {"limit": _INT, "reservation": _INT, "swap": _INT, "kernel": _INT, "kernelTCP": _INT,
               "swappiness": _INT, "disableOOMKiller": _BOOL, "useHierarchy": _BOOL,
               "checkBeforeUpdate": _BOOL},
    "cpu": {"shares": _INT, "quota": _INT, "burst": _INT, "period": _INT, "realtimeRuntime": _INT,
            "realtimePeriod": _INT, "cpus": _STR, "mems": _STR, "idle": _INT},
    "pids": {"limit": _INT},
    "blockIO": {"weight": _INT, "leafWeight": _INT, "weightDevice": _LIST,
                "throttleReadBpsDevice": _LIST, "throttleWriteBpsDevice": _LIST,
                "throttleReadIOPSDevice": _LIST, "throttleWriteIOPSDevice": _LIST},
    "hugepageLimits": _LIST,
    "network": {"classID": _INT, "priorities": _LIST},
    "rdma": _DICT,
    "unified": _DICT,
}


def _check_type(value: Any, kind: str, field: str) -> None:
    ok = {
        _INT: isinstance(value, int) and not isinstance(value, bool),
        _BOOL: isinstance(value, bool),
        _STR: isinstance(value, str),
        _LIST: isinstance(value, list),
        _DICT: isinstance(value, dict),
    }[kind]
    if not ok:
        raise InvalidArgument(f"{field} must be of type {kind}, got {type(value).__name__}")


def validate(resources: Any) -> dict[str, Any]:
    """Check names and types of every field; unknown fields raise InvalidArgument naming them."""
    if resources is None:
        return {}
    _check_type(resources, _DICT, PREFIX)
    for key, value in resources.items():
        field = f"{PREFIX}.{key}"
        if key not in SCHEMA:
            raise InvalidArgument(f"{field} is not supported")
        if value is None:
            continue
        kind = SCHEMA[key]
        if isinstance(kind, dict):
            _check_type(value, _DICT, field)
            for sub, subvalue in value.items():
                if sub not in kind:
                    raise InvalidArgument(f"{field}.{sub} is not supported")
                if subvalue is not None:
                    _check_type(subvalue, kind[sub], f"{field}.{sub}")
        else:
            _check_type(value, kind, field)
    return resources


def section(resources: dict[str, Any], key: str) -> dict[str, Any]:
    """resources[key] as a dict without None values ({} when absent)."""
    value = resources.get(key) or {}
    return {k: v for k, v in value.items() if v is not None}


def entries(items: list[Any], field: str, required: dict[str, str]) -> list[dict[str, Any]]:
    """Validate a list of objects (weightDevice, throttle*, hugepageLimits, priorities)."""
    out = []
    for i, item in enumerate(items):
        where = f"{field}[{i}]"
        _check_type(item, _DICT, where)
        for name, kind in required.items():
            if item.get(name) is None:
                raise InvalidArgument(f"{where}.{name} is required")
            _check_type(item[name], kind, f"{where}.{name}")
        out.append(item)
    return out


def device_number(item: dict[str, Any], where: str) -> str:
    """"major:minor" of a blockIO device entry, both required non-negative."""
    for k in ("major", "minor"):
        v = item.get(k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise InvalidArgument(f"{where}.{k} must be a non-negative integer")
    return f"{item['major']}:{item['minor']}"


def throttles(blkio: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(OCI key, field, entry) for every throttle entry in blockIO, in a fixed order."""
    out = []
    for key in ("throttleReadBpsDevice", "throttleWriteBpsDevice", "throttleReadIOPSDevice",
                "throttleWriteIOPSDevice"):
        field = f"{PREFIX}.blockIO.{key}"
        for i, item in enumerate(entries(blkio.get(key) or [], field, {"rate": _INT})):
            if item["rate"] < 0:
                raise InvalidArgument(f"{field}[{i}].rate must not be negative")
            out.append((key, f"{field}[{i}]", item))
    return out
