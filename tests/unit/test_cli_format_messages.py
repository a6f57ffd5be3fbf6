"""Pure pieces of the image/network/volume/system verbs: message-stream display, progress, times,
IPAM consolidation, change checks, registry auth."""

from __future__ import annotations

import base64
import io
import json
import time

import pytest

from berth.cli.context import CliError
from berth.cli.format import ByteProgress, display_messages, progress_bar, rfc3339

PULL = [
    {"status": "Pulling from library/alpine", "id": "3.19"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "aaa"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "bbb"},
    {"status": "Downloading", "progressDetail": {"current": 1000000, "total": 2154400}, "progress": "[=>]",
     "id": "aaa"},
    {"status": "Pull complete", "progressDetail": {}, "id": "aaa"},
    {"status": "Digest: sha256:abc"},
    {"status": "Status: Downloaded newer image for alpine:3.19"},
]


def test_display_messages_plain_drops_progress():
    out = io.StringIO()
    display_messages(iter(PULL), out, tty=False)
    assert out.getvalue().splitlines() == [
        "3.19: Pulling from library/alpine", "aaa: Pulling fs layer", "bbb: Pulling fs layer",
        "aaa: Pull complete", "Digest: sha256:abc", "Status: Downloaded newer image for alpine:3.19"]


def test_display_messages_terminal_updates_lines_in_place():
    out = io.StringIO()
    display_messages(iter(PULL), out, tty=True)
    text = out.getvalue()
    # aaa is line 0 of 2 progress lines: going back to it moves the cursor up 2 and down 2 again
    assert "\x1b[2A\x1b[2K\raaa: Downloading [" + "=" * 23 + ">" in text and "1MB/2.154MB\r\x1b[2B" in text
    assert "\x1b[1A\x1b[2K\rbbb: Pulling fs layer \r\x1b[1B" in text
    assert text.endswith("Digest: sha256:abc\nStatus: Downloaded newer image for alpine:3.19\n")


def test_display_messages_errors_and_aux():
    seen = []
    with pytest.raises(CliError) as e:
        display_messages(iter([{"aux": {"ID": "x"}}, {"errorDetail": {"code": 3, "message": "boom"},
                                                      "error": "boom"}]), io.StringIO(), False, seen.append)
    assert (str(e.value), e.value.status) == ("boom", 3) and seen == [{"aux": {"ID": "x"}}]
    out = io.StringIO()
    display_messages(iter([{"stream": "Loaded image: a:1\n"}, {"status": "sha256:1"}]), out, False)
    assert out.getvalue() == "Loaded image: a:1\nsha256:1\n"


def test_progress_bar():
    assert progress_bar({"current": 1000000, "total": 2154400}, 80) == "     1MB/2.154MB"
    wide = progress_bar({"current": 1077200, "total": 2154400}, 200)
    assert wide.startswith("[" + "=" * 25 + ">" + " " * 25 + "] ")
    assert progress_bar({"current": 5, "total": 0}) == "      5B"
    assert progress_bar({"current": 3, "total": 10, "units": "items"}) == "3/10 items"
    assert progress_bar({}) == ""


def test_byte_progress_counts_and_clears():
    out = io.StringIO()
    p = ByteProgress("Loading", out, total=6)
    assert b"".join(p.wrap([b"abc", b"def"])) == b"abcdef"
    assert p.done == 6 and out.getvalue().startswith("\x1b[2K\rLoading ")
    assert out.getvalue().endswith("\x1b[2K\r")
    quiet = ByteProgress("x", None)
    assert list(quiet.wrap([b"a"])) == [b"a"]


def test_rfc3339(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert rfc3339(1700000000) == "2023-11-14T22:13:20Z"
        assert rfc3339(0, 1700000000_000000042, fixed=True) == "2023-11-14T22:13:20.000000042Z"
        monkeypatch.setenv("TZ", "EST+5")
        time.tzset()
        assert rfc3339(1700000000) == "2023-11-14T17:13:20-05:00"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_event_line_and_time_args(monkeypatch):
    from berth.cli.commands.events import EventRow, event_line, parse_duration, timestamp_arg
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        ev = {"Type": "container", "Action": "start", "Actor": {"ID": "abc", "Attributes": {"name": "x",
              "image": "busybox"}}, "time": 1704067200, "timeNano": 1704067200_000000000, "id": "abc",
              "status": "start"}
        assert event_line(ev) == "2024-01-01T00:00:00.000000000Z container start abc (image=busybox, name=x)"
        assert event_line({"Type": "image", "Action": "tag", "Actor": {"ID": "i"}}) == "image tag i"
        assert EventRow(ev).ID == "abc" and EventRow(ev).Status == "start" and EventRow(ev).From == ""
        assert parse_duration("1h30m") == 5400 and parse_duration("-1.5s") == -1.5
        assert parse_duration("10") is None
        assert timestamp_arg("10m", now=1000.0) == "400"
        assert timestamp_arg("1700000000.5") == "1700000000.5"
        assert timestamp_arg("2024-01-01T00:00:00Z") == "1704067200.000000000"
        assert timestamp_arg("2024-01-01") == "1704067200.000000000"
        assert timestamp_arg("2024-01-01T01:00:00+01:00") == "1704067200.000000000"
        with pytest.raises(CliError, match="failed to parse value as time or duration"):
            timestamp_arg("soon")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_ipam_config():
    from berth.cli.commands.network_create import body_for, ipam_config, kv_map, split_strings
    assert ipam_config(["10.1.0.0/16", "10.2.0.0/16"], ["10.2.1.0/24"], ["10.1.0.1", "10.2.0.1"]) == [
        {"Subnet": "10.1.0.0/16", "Gateway": "10.1.0.1"},
        {"Subnet": "10.2.0.0/16", "IPRange": "10.2.1.0/24", "Gateway": "10.2.0.1"}]
    with pytest.raises(CliError, match="no matching subnet for gateway 10.3.0.1"):
        ipam_config(["10.1.0.0/16"], [], ["10.3.0.1"])
    with pytest.raises(CliError, match="multiple overlapping subnet"):
        ipam_config(["10.1.0.0/16", "10.1.2.0/24"], [], [])
    with pytest.raises(CliError, match="cannot configure multiple gateways"):
        ipam_config(["10.1.0.0/16", "10.2.0.0/16"], [], ["10.1.0.1", "10.1.0.2"])
    assert ipam_config(["10.1.0.0/16"], [], [], {"host": "10.1.0.9"})[0]["AuxiliaryAddresses"] == {
        "host": "10.1.0.9"}
    assert kv_map(["a=b", "c", "d=e=f"]) == {"a": "b", "c": "", "d": "e=f"}
    assert split_strings(["a,b", "c"]) == ["a", "b", "c"]
    opts = {"subnet": [], "ip_range": [], "gateway": [], "aux_address": [], "driver": "bridge", "opt": [],
            "ipam_driver": "default", "ipam_opt": [], "ipv6": False, "internal": True, "attachable": True,
            "label": ["x=y"], "scope": None}
    body = body_for("n", opts)
    assert body["Internal"] is True and body["Labels"] == {"x": "y"} and body["IPAM"]["Config"] == []


def test_sorting_and_times():
    from berth.cli.commands.network_ls import go_time_string, natural_key
    assert sorted(["net10", "net9", "bridge"], key=natural_key) == ["bridge", "net9", "net10"]
    assert go_time_string("2024-01-02T03:04:05.500000000Z") == "2024-01-02 03:04:05.5 +0000 UTC"
    assert go_time_string("2024-01-02T03:04:05Z") == "2024-01-02 03:04:05 +0000 UTC"


def test_change_check_and_bootstrap_name():
    from berth.cli.commands.image_bootstrap import bootstrap_name
    from berth.cli.commands.import_ import check_changes, is_url
    assert check_changes(["  cmd [\"sh\"] ", "", "ENV A=1"]) == ['cmd ["sh"]', "ENV A=1"]
    with pytest.raises(CliError, match="ADD is not a valid change command"):
        check_changes(["ADD x /"])
    assert is_url("https://x/y.tar") and not is_url("-") and not is_url("./http.tar")
    assert bootstrap_name("busybox", None) == "busybox"
    assert bootstrap_name("debian", "trixie") == "debian:trixie"
    assert bootstrap_name("debian:bookworm", "bookworm") == "debian:bookworm"
    with pytest.raises(CliError):
        bootstrap_name("debian:bookworm", "trixie")


def test_registry_auth(tmp_path, monkeypatch):
    from berth.client.resources import registry_auth, registry_of
    monkeypatch.setenv("HOME", str(tmp_path / "nohome"))
    assert registry_of("busybox") == registry_of("docker.io/library/busybox") == "docker.io"
    assert registry_of("localhost:5000/a/b") == "localhost:5000" and registry_of("user/app") == "docker.io"
    assert registry_auth("localhost:5000/a", str(tmp_path), env={}) == "e30="
    cfg = {"auths": {"localhost:5000": {"auth": base64.b64encode(b"user:pa:ss").decode()},
                     "https://index.docker.io/v1/": {"identitytoken": "tok"}}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    got = json.loads(base64.urlsafe_b64decode(registry_auth("localhost:5000/a/b", str(tmp_path), {})))
    assert got == {"serveraddress": "localhost:5000", "username": "user", "password": "pa:ss"}
    hub = registry_auth("busybox", None, {"DOCKER_CONFIG": str(tmp_path)})
    got = json.loads(base64.urlsafe_b64decode(hub))
    assert got == {"serveraddress": "https://index.docker.io/v1/", "identitytoken": "tok"}
    assert registry_auth("other.example/x", str(tmp_path), {}) == "e30="
