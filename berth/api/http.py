"""Request/response helpers for the engine API: JSON bodies, moby booleans, filters, registry auth."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from berth.errors import InvalidArgument, LimitExceeded

if TYPE_CHECKING:
    from berth.api.streams import ChunkedWriter, Hijacked

API_VERSION = "1.44"
MIN_API_VERSION = "1.24"
MAX_JSON_BODY = 4 * 1024 * 1024  # bytes accepted for a JSON request body

JSON = "application/json"


class PayloadTooLarge(LimitExceeded):
    """A request body is larger than the cap for its endpoint."""

    http_status = 413


def bool_value(value: str | None, default: bool = False) -> bool:
    """moby's BoolValue: "", 0, no, false, none (any case) are false; anything else is true."""
    if value is None:
        return default
    return value.strip().lower() not in ("", "0", "no", "false", "none")


def int_value(value: str | None, default: int | None = None, name: str = "value") -> int | None:
    """An integer query value, or default when absent/empty; InvalidArgument when malformed."""
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument(f"invalid {name} {value!r}: must be an integer") from None


def parse_filters(raw: str | None) -> dict[str, list[str]]:
    """Filters in moby's map form ``{"k":{"v":true}}`` or list form ``{"k":["v"]}`` → ``{k: [v, ...]}``."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise InvalidArgument(f"invalid filter: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidArgument("invalid filter: expected a JSON object")
    out: dict[str, list[str]] = {}
    for key, val in data.items():
        if isinstance(val, dict):
            out[key] = [str(k) for k, on in val.items() if on]
        elif isinstance(val, list):
            out[key] = [str(v) for v in val]
        elif isinstance(val, str):
            out[key] = [val]
        else:
            raise InvalidArgument(f"invalid filter: bad value for {key!r}")
    return out


def decode_registry_auth(header: str | None) -> dict:
    """X-Registry-Auth / X-Registry-Config: URL-safe (or standard) base64 JSON, padding optional.

    An empty or undecodable header yields ``{}``, as moby does for lenient clients.
    """
    if not header:
        return {}
    text = header.strip()
    text += "=" * (-len(text) % 4)
    for decode in (base64.urlsafe_b64decode, base64.b64decode):
        try:
            data = json.loads(decode(text.encode("ascii")))
        except (ValueError, binascii.Error, UnicodeError):
            continue
        return data if isinstance(data, dict) else {}
    return {}


def version_tuple(v: str) -> tuple[int, ...]:
    """"1.44" → (1, 44); InvalidArgument when not dotted integers."""
    try:
        return tuple(int(p) for p in v.split("."))
    except ValueError:
        raise InvalidArgument(f"invalid API version {v!r}") from None


@dataclass
class Response:
    """A complete (non-streaming) reply."""

    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str | None = None


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(obj).encode(), content_type=JSON)


def error_response(status: int, message: str) -> Response:
    if status in (204, 304):
        return Response(status)
    return Response(status, json.dumps({"message": message}).encode(), content_type=JSON)


def no_content(status: int = 204) -> Response:
    return Response(status)


class Request:
    """One parsed request. The body is read on demand (``body()``, ``json()`` or ``stream()``)."""

    def __init__(self, method: str, target: str, headers: Iterable[tuple[str, str]],
                 body_source: Callable[[], AsyncIterator[bytes]] | None = None) -> None:
        self.method = method
        path, _, query = target.partition("?")
        self.raw_path = path
        self.path = path  # set to the decoded, unversioned path by the router
        self.query: dict[str, list[str]] = parse_qs(query, keep_blank_values=True)
        self.headers: dict[str, str] = {}
        for k, v in headers:
            self.headers[k.lower()] = v
        self.api_version = API_VERSION
        self.vars: dict[str, str] = {}
        self._body_source = body_source
        self._body_used = False
        # set by the server
        self.responder: Any = None

    # -- query helpers -------------------------------------------------------------------------
    def q(self, key: str, default: str | None = None) -> str | None:
        vals = self.query.get(key)
        return vals[-1] if vals else default

    def qlist(self, key: str) -> list[str]:
        return list(self.query.get(key, []))

    def qbool(self, key: str, default: bool = False) -> bool:
        return bool_value(self.q(key), default)

    def qint(self, key: str, default: int | None = None) -> int | None:
        return int_value(self.q(key), default, key)

    def filters(self) -> dict[str, list[str]]:
        return parse_filters(self.q("filters"))

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def registry_auth(self) -> dict:
        return decode_registry_auth(self.header("x-registry-auth"))

    def version_at_least(self, v: str) -> bool:
        return version_tuple(self.api_version) >= version_tuple(v)

    # -- body ----------------------------------------------------------------------------------
    async def stream(self) -> AsyncIterator[bytes]:
        """The body as chunks, without buffering it (load, import, archive PUT)."""
        if self._body_used:
            raise RuntimeError("request body already consumed")
        self._body_used = True
        if self._body_source is None:
            return
        async for chunk in self._body_source():
            yield chunk

    async def body(self, limit: int = MAX_JSON_BODY) -> bytes:
        """The whole body; PayloadTooLarge (413) past limit bytes."""
        declared = self.header("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"request body too large: more than {limit} bytes")
        parts: list[bytes] = []
        size = 0
        async for chunk in self.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body too large: more than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def json(self, limit: int = MAX_JSON_BODY, default: Any = None, expect: type | None = dict) -> Any:
        """The body decoded as JSON; empty body → default; 400 on malformed JSON or wrong type."""
        raw = await self.body(limit)
        if not raw.strip():
            return default
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise InvalidArgument(f"invalid JSON: {e}") from None
        if expect is not None and data is not None and not isinstance(data, expect):
            what = "an object" if expect is dict else expect.__name__
            raise InvalidArgument(f"invalid JSON: expected {what}")
        return data

    # -- reply modes (implemented by the server's responder) -------------------------------------
    async def start_stream(self, status: int = 200, content_type: str = JSON,
                           headers: list[tuple[str, str]] | None = None) -> ChunkedWriter:
        """Send the status line and headers now (chunked); write the body later."""
        return await self.responder.start_stream(status, content_type, headers or [])

    async def hijack(self, content_type: str) -> Hijacked:
        """Read the rest of the body, answer 101 UPGRADED (or legacy 200), and return the raw socket."""
        return await self.responder.hijack(content_type)

    @property
    def wants_upgrade(self) -> bool:
        conn = self.header("connection", "") or ""
        return "upgrade" in conn.lower() and bool(self.header("upgrade"))
