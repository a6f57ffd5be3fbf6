"""JSON through the C accelerator only: `json` pulls in `re` (~6 ms), too slow for runtime start-up."""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class _Ctx:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


_scan = None
_WS = " \t\n\r"


def loads(text: str | bytes) -> Any:
    """Decode one JSON document; ValueError on malformed input."""
    global _scan
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if _scan is None:
        _scan = _json.make_scanner(_Ctx())
    i = 0
    n = len(text)
    while i < n and text[i] in _WS:
        i += 1
    try:
        obj, end = _scan(text, i)
    except StopIteration as e:
        raise ValueError(f"malformed JSON at offset {e.value}") from None
    except (ValueError, SystemError):
        # the C scanner's own error path imports json.decoder; use the full module for the message
        import json

        json.loads(text)
        raise
    while end < n and text[end] in _WS:
        end += 1
    if end != n:
        raise ValueError(f"malformed JSON: extra data at offset {end}")
    return obj


_enc = None


def _default(o: Any) -> Any:
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def dumps(obj: Any) -> str:
    """Encode compactly (separators ',' and ':'), ASCII-escaped, like json.dumps(separators=...)."""
    global _enc
    if _enc is None:
        _enc = _json.make_encoder(None, _default, _json.encode_basestring_ascii, None, ":", ",",
                                  False, False, True)
    return "".join(_enc(obj, 0))


def dumps_indent(obj: Any, indent: str = "  ", _level: int = 0) -> str:
    """Pretty JSON like json.dumps(obj, indent=2), without importing json."""
    pad = indent * (_level + 1)
    if isinstance(obj, dict) and obj:
        items = [f"{pad}{dumps(str(k))}: {dumps_indent(v, indent, _level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent * _level + "}"
    if isinstance(obj, list) and obj:
        items = [pad + dumps_indent(v, indent, _level + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + indent * _level + "]"
    return dumps(obj)
