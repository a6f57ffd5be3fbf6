"""Pure helpers of the API layer: booleans, filters, registry auth, router, stdcopy, detach keys."""

from __future__ import annotations

import base64
import json

import pytest

from berth.api.http import Request, bool_value, decode_registry_auth, parse_filters
from berth.api.router import Router, split_version
from berth.api.streams import DetachScanner, StdcopyDecoder, frame, parse_detach_keys
from berth.errors import InvalidArgument, NotFound


@pytest.mark.parametrize("v,want", [
    ("", False), ("0", False), ("no", False), ("False", False), ("NONE", False), ("false", False),
    ("1", True), ("True", True), ("yes", True), ("anything", True),
])
def test_bool_value(v, want):
    assert bool_value(v) is want
    assert bool_value(None, default=True) is True


def test_filters_map_and_list_forms():
    assert parse_filters('{"label":{"a=b":true,"c":false},"status":{"exited":true}}') == {
        "label": ["a=b"], "status": ["exited"]}
    assert parse_filters('{"label":["com.x=1","y"]}') == {"label": ["com.x=1", "y"]}
    assert parse_filters("") == {} and parse_filters("null") == {}
    for bad in ("{nope", "[1]", '{"a":1}'):
        with pytest.raises(InvalidArgument):
            parse_filters(bad)


def test_registry_auth_is_lenient():
    creds = {"username": "u", "password": "p?>", "serveraddress": "localhost:5000"}
    raw = json.dumps(creds).encode()
    assert decode_registry_auth(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == creds
    assert decode_registry_auth(base64.b64encode(raw).decode()) == creds
    assert decode_registry_auth("e30=") == {} and decode_registry_auth("e30") == {}
    assert decode_registry_auth("!!!not base64") == {} and decode_registry_auth(None) == {}


def test_router_patterns_and_versions():
    r = Router()

    async def h(req, engine):
        return None

    r.add("GET", "/images/json", h)
    r.add("GET", "/images/{name:*}/json", h)
    r.add("DELETE", "/images/{name:*}", h)
    r.add("GET", "/containers/{id}/json", h)
    req = Request("GET", "/v1.44/images/localhost:5000/a/b@sha256:abc/json", [])
    r.resolve(req)
    assert req.vars == {"name": "localhost:5000/a/b@sha256:abc"} and req.api_version == "1.44"
    req = Request("DELETE", "/images/my%2Frepo%3Av1", [])
    r.resolve(req)
    assert req.vars == {"name": "my/repo:v1"} and req.api_version == "1.44"
    req = Request("HEAD", "/containers/abc/json", [])
    r.resolve(req)
    assert req.vars == {"id": "abc"}
    with pytest.raises(NotFound, match="page not found"):
        r.resolve(Request("POST", "/containers/abc/json", []))
    with pytest.raises(NotFound):
        r.resolve(Request("GET", "/containers/a/b/json", []))
    with pytest.raises(InvalidArgument, match="too old"):
        r.resolve(Request("GET", "/v1.23/images/json", []))
    assert split_version("/v1.40/x") == ("1.40", "/x") and split_version("/version") == (None, "/version")


def test_request_query_helpers():
    q = "all=1&limit=-1&filters=%7B%22a%22%3A%5B%22b%22%5D%7D&v=False&names=a&names=b"
    req = Request("GET", "/x?" + q, [])
    assert req.qbool("all") and not req.qbool("v") and req.qint("limit") == -1
    assert req.filters() == {"a": ["b"]} and req.qlist("names") == ["a", "b"]
    with pytest.raises(InvalidArgument):
        Request("GET", "/x?t=abc", []).qint("t")


def test_stdcopy_roundtrip_and_errors():
    data = frame(1, b"out") + frame(2, b"err") + frame(1, b"") + frame(1, b"x" * 70000)
    dec = StdcopyDecoder()
    got = []
    for i in range(0, len(data), 7):
        got += dec.feed(data[i:i + 7])
    assert got == [(1, b"out"), (2, b"err"), (1, b"x" * 70000)] and dec.pending == 0
    with pytest.raises(InvalidArgument, match="Unrecognized input header"):
        StdcopyDecoder().feed(b"\x09\x00\x00\x00\x00\x00\x00\x01x")
    from berth.client.streams import demux
    assert list(demux([data])) == got
    from berth.errors import BerthError
    with pytest.raises(BerthError, match="boom"):
        list(demux([frame(3, b"boom")]))


def test_detach_keys():
    assert parse_detach_keys(None) == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x,ctrl-@,ctrl-_") == b"\x01x\x00\x1f"
    with pytest.raises(InvalidArgument):
        parse_detach_keys("ctrl-1")
    s = DetachScanner(b"\x10\x11")
    assert s.feed(b"ab\x10") == b"ab" and not s.detached
    assert s.feed(b"c") == b"\x10c"  # a broken sequence is passed through
    assert s.feed(b"\x10\x10") == b"\x10" and not s.detached
    assert s.feed(b"\x11tail") == b"" and s.detached
