"""Routing: method + path patterns, the ``/v1.N`` prefix, URL-decoding and greedy name variables.

Patterns use ``{name}`` for one path segment and ``{name:*}`` for a greedy match that may hold
``/``, ``:`` and ``@`` (image references). Patterns are tried in registration order.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from berth.api.http import API_VERSION, MIN_API_VERSION, Request, version_tuple
from berth.errors import InvalidArgument, NotFound

Handler = Callable[..., Awaitable[Any]]

_VERSION_RE = re.compile(r"^/v([0-9][0-9.]*)(/.*)$")
_VAR_RE = re.compile(r"\{(\w+)(:\*)?\}")


@dataclass
class Route:
    method: str
    pattern: str
    regex: re.Pattern[str]
    handler: Handler


def compile_pattern(pattern: str) -> re.Pattern[str]:
    out, pos = [], 0
    for m in _VAR_RE.finditer(pattern):
        out.append(re.escape(pattern[pos:m.start()]))
        out.append(f"(?P<{m.group(1)}>.+)" if m.group(2) else f"(?P<{m.group(1)}>[^/]+)")
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("^" + "".join(out) + "$")


def split_version(raw_path: str) -> tuple[str | None, str]:
    """("/v1.44/containers/json") → ("1.44", "/containers/json"); unversioned → (None, path)."""
    m = _VERSION_RE.match(raw_path)
    if m:
        return m.group(1), m.group(2)
    return None, raw_path


def check_version(version: str) -> None:
    """400 with moby's wording when the client's version is outside [MIN, MAX]."""
    v = version_tuple(version)
    if v < version_tuple(MIN_API_VERSION):
        raise InvalidArgument(
            f"client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, "
            "please upgrade your client to a newer version")
    if v > version_tuple(API_VERSION):
        raise InvalidArgument(
            f"client version {version} is too new. Maximum supported API version is {API_VERSION}")


class Router:
    """Maps (method, path) to a handler ``async def handler(req, engine) -> Response | None``."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append(Route(method.upper(), pattern, compile_pattern(pattern), handler))

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        """Decorator form of add()."""
        def deco(fn: Handler) -> Handler:
            self.add(method, pattern, fn)
            return fn
        return deco

    def include(self, other: Router) -> None:
        self.routes.extend(other.routes)

    def resolve(self, req: Request) -> Handler:
        """Set req.api_version, req.path and req.vars; return the handler or raise 400/404.

        A wrong method is a 404 ``page not found`` too, as in moby. HEAD falls back to GET.
        """
        version, path = split_version(req.raw_path)
        if version is not None:
            check_version(version)
            req.api_version = version
        path = unquote(path)
        req.path = path
        methods = (req.method, "GET") if req.method == "HEAD" else (req.method,)
        for method in methods:
            for r in self.routes:
                if r.method != method:
                    continue
                m = r.regex.match(path)
                if m:
                    req.vars = m.groupdict()
                    return r.handler
        raise NotFound("page not found")
