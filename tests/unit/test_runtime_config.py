"""Pure logic of berth.runtime: config validation, mount options, JSON, CLI flags, state ids."""

from __future__ import annotations

import json
import os

import pytest

from berth.errors import InvalidArgument
from berth.runtime import config, fastjson, mountopts
from berth.runtime.cli import GLOBAL, VERBS, UsageError, parse
from berth.runtime.state import check_id, rfc3339


def _spec(tmp_path) -> dict:
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    return {
        "ociVersion": "1.1.0",
        "root": {"path": "rootfs"},
        "process": {"args": ["sh"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}},
        "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]},
    }


def test_valid_spec_resolves_root(tmp_path):
    spec = _spec(tmp_path)
    config.validate(spec, str(tmp_path))
    assert spec["root"]["path"] == str(tmp_path / "rootfs")


@pytest.mark.parametrize("mutate,field", [
    (lambda s: s.pop("ociVersion"), "ociVersion"),
    (lambda s: s["root"].update(path="missing"), "root.path"),
    (lambda s: s["process"].update(args="sh"), "process.args"),
    (lambda s: s["process"].update(env=["NOEQUALS"]), "process.env"),
    (lambda s: s["process"]["user"].update(uid=-1), "process.user.uid"),
    (lambda s: s["process"].update(rlimits=[{"type": "RLIMIT_NOFILE", "soft": 5, "hard": 1}]),
     "process.rlimits[0]"),
    (lambda s: s["process"].update(capabilities={"effective": ["CAP_FOO"]}),
     "process.capabilities.effective"),
    (lambda s: s["process"].update(capabilities={"magic": []}), "process.capabilities.magic"),
    (lambda s: s["process"].update(oomScoreAdj=5000), "process.oomScoreAdj"),
    (lambda s: s["process"].update(ioPriority={"class": "IOPRIO_CLASS_RT"}), "process.ioPriority"),
    (lambda s: s.update(mounts=[{"destination": "/x", "type": "bind"}]), "mounts[0].source"),
    (lambda s: s.update(mounts=[{"destination": "/a/../b", "type": "tmpfs"}]), "mounts[0].destination"),
    (lambda s: s.update(mounts=[{"destination": "/x", "type": "tmpfs", "options": ["idmap"]}]),
     "mounts[0].options"),
    (lambda s: s.update(hooks={"prestart": [{"path": "relative"}]}), "hooks.prestart[0].path"),
    (lambda s: s.update(hooks={"bogus": []}), "hooks.bogus"),
    (lambda s: s["linux"]["namespaces"].append({"type": "pid"}), "linux.namespaces[2].type"),
    (lambda s: s["linux"]["namespaces"].append({"type": "user"}), "linux.uidMappings"),
    (lambda s: s["linux"].update(namespaces=[{"type": "pid"}]), "linux.namespaces"),
    (lambda s: s["linux"]["namespaces"].append({"type": "net", "path": "/nonexistent"}),
     "linux.namespaces[2].type"),
    (lambda s: s["linux"]["namespaces"].append({"type": "network", "path": "/nonexistent"}),
     "linux.namespaces[2].path"),
    (lambda s: s.update(hostname="h"), "hostname"),
    (lambda s: s["linux"].update(devices=[{"type": "x", "path": "/dev/x"}]), "linux.devices[0].type"),
    (lambda s: s["linux"].update(devices=[{"type": "c", "path": "/etc/x", "major": 1, "minor": 1}]),
     "linux.devices[0].path"),
    (lambda s: s["linux"].update(sysctl={"net.ipv4.ip_forward": "1"}), "linux.sysctl.net.ipv4.ip_forward"),
    (lambda s: s["linux"].update(rootfsPropagation="sideways"), "linux.rootfsPropagation"),
    (lambda s: s["linux"].update(maskedPaths=["relative"]), "linux.maskedPaths"),
    (lambda s: s["linux"].update(cgroupsPath="/a/../../b"), "linux.cgroupsPath"),
])
def test_invalid_field_is_named(tmp_path, mutate, field):
    spec = _spec(tmp_path)
    mutate(spec)
    with pytest.raises(InvalidArgument) as ei:
        config.validate(spec, str(tmp_path))
    assert field in str(ei.value)


def test_load_reports_malformed_json(tmp_path):
    (tmp_path / "config.json").write_text('{"ociVersion": ')
    with pytest.raises(InvalidArgument, match="malformed JSON"):
        config.load(str(tmp_path))
    with pytest.raises(InvalidArgument, match="no config.json"):
        config.load(str(tmp_path / "nowhere"))


def test_load_round_trip(tmp_path):
    spec = _spec(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(spec))
    assert config.load(str(tmp_path))["process"]["args"] == ["sh"]


def test_mount_options():
    mo = mountopts.parse_options(["rbind", "ro", "nosuid", "rslave", "mode=755", "size=1k", "rro"])
    assert mo.bind and mo.flags & mountopts.MS_REC and mo.flags & mountopts.MS_RDONLY
    assert mo.flags & mountopts.MS_NOSUID
    assert mo.propagation == [mountopts.MS_SLAVE | mountopts.MS_REC]
    assert mo.data == ["mode=755", "size=1k"]
    assert mo.attr_set == mountopts.MOUNT_ATTR_RDONLY
    mo = mountopts.parse_options(["ro", "rw", "nodev", "dev"])
    assert mo.flags == 0 and mo.clear & mountopts.MS_RDONLY and mo.clear & mountopts.MS_NODEV
    with pytest.raises(ValueError, match="idmap"):
        mountopts.parse_options(["idmap"])


@pytest.mark.parametrize("doc", [{"a": [1, 2.5, None, True, False, "x\u00e9\n"]}, [], "s", 0,
                                 {"n": {"m": {}}}])
def test_fastjson_round_trip(doc):
    text = fastjson.dumps(doc)
    assert json.loads(text) == doc
    assert fastjson.loads(text) == doc
    assert fastjson.loads("  " + json.dumps(doc, indent=2) + "\n") == doc


@pytest.mark.parametrize("bad", ['{"a": 1} x', '{"a":', "", "[1,]", "nul"])
def test_fastjson_rejects(bad):
    with pytest.raises(ValueError):
        fastjson.loads(bad)


def test_cli_flag_parsing():
    g, rest = parse(["--root", "/r", "--log=/l", "-log-format", "json", "--systemd-cgroup", "create",
                     "--bundle", "b", "id"], GLOBAL)
    assert g == {"root": "/r", "log": "/l", "log-format": "json", "systemd-cgroup": True}
    assert rest == ["create", "--bundle", "b", "id"]
    f, pos = parse(rest[1:], VERBS["create"])
    assert f == {"bundle": "b"} and pos == ["id"]
    f, pos = parse(["-d", "-b", "x", "--preserve-fds", "2", "c1"], VERBS["run"])
    assert f == {"detach": True, "bundle": "x", "preserve-fds": "2"} and pos == ["c1"]
    f, pos = parse(["-e", "A=1", "--env", "B=2", "-t", "c1", "sh", "-c", "ls -l"], VERBS["exec"],
                   stop_at_arg=True)
    assert f == {"env": ["A=1", "B=2"], "tty": True} and pos == ["c1", "sh", "-c", "ls -l"]
    f, pos = parse(["--all", "c1", "KILL"], VERBS["kill"])
    assert f == {"all": True} and pos == ["c1", "KILL"]
    with pytest.raises(UsageError):
        parse(["--bogus", "c1"], VERBS["start"])
    with pytest.raises(UsageError):
        parse(["--bundle"], VERBS["create"])


@pytest.mark.parametrize("cid", ["abc", "a.b_c+d-1", "x" * 64])
def test_good_ids(cid):
    assert check_id(cid) == cid


@pytest.mark.parametrize("cid", ["", ".", "..", "a/b", "a b", "../x", "a\n"])
def test_bad_ids(cid):
    with pytest.raises(InvalidArgument):
        check_id(cid)


def test_rfc3339():
    s = rfc3339(0.5)
    assert s == "1970-01-01T00:00:00.500000000Z"


def test_signals():
    from berth.runtime.container import parse_signal

    assert parse_signal("KILL") == parse_signal("SIGKILL") == parse_signal("9") == 9
    assert parse_signal("term") == 15
    for bad in ("SIGNOPE", "0", "99"):
        with pytest.raises(InvalidArgument):
            parse_signal(bad)


def test_features_and_version(capsys):
    from berth.runtime import cli

    assert cli.main(["--version"]) == 0
    assert "spec: 1.1.0" in capsys.readouterr().out
    assert cli.main(["features"]) == 0
    feats = json.loads(capsys.readouterr().out)
    assert "rbind" in feats["mountOptions"] and "CAP_SYS_ADMIN" in feats["linux"]["capabilities"]
    assert cli.main(["frobnicate"]) == 2


def test_spec_verb_writes_default_config(tmp_path, capsys):
    from berth.runtime import cli

    assert cli.main(["spec", "--bundle", str(tmp_path)]) == 0
    spec = json.loads((tmp_path / "config.json").read_text())
    assert spec["process"]["args"] == ["sh"] and spec["root"]["path"] == "rootfs"
    assert cli.main(["spec", "--bundle", str(tmp_path)]) == 1   # refuses to overwrite
    assert "exists" in capsys.readouterr().err
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_log_json_on_error(tmp_path, capsys):
    from berth.runtime import cli

    log = tmp_path / "log.json"
    assert cli.main(["--root", str(tmp_path / "r"), "--log", str(log), "--log-format", "json",
                     "state", "nosuch"]) == 1
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "nosuch" in entry["msg"] and entry["time"].endswith("Z")


def test_exec_process_overrides():
    from berth.runtime.exec_process import build_process
    from berth.runtime.state import Container

    c = Container("/r", "c", {"config": {"process": {"args": ["init"], "env": ["PATH=/bin"], "cwd": "/",
                                                      "user": {"uid": 0, "gid": 0},
                                                      "capabilities": {"bounding": ["CAP_KILL"]}}}})
    p = build_process(c, ["ls"], cwd="/tmp", env=["A=1"], user="5:6", caps=["CAP_NET_ADMIN"],
                      no_new_privs=True, additional_gids=[7])
    assert p["args"] == ["ls"] and p["cwd"] == "/tmp" and p["env"] == ["PATH=/bin", "A=1"]
    assert p["user"] == {"uid": 5, "gid": 6, "additionalGids": [7]}
    assert p["capabilities"]["bounding"] == ["CAP_KILL", "CAP_NET_ADMIN"]
    assert p["noNewPrivileges"] is True
    assert c.spec["process"]["args"] == ["init"]   # the record is not modified
    with pytest.raises(InvalidArgument):
        build_process(c, ["ls"], user="bob")


def test_short_flags_per_verb():
    from berth.runtime.cli import VERB_ALIASES

    f, _ = parse(["-f", "json"], VERBS["list"], aliases=VERB_ALIASES["list"])
    assert f == {"format": "json"}
    f, _ = parse(["-f", "c1"], VERBS["delete"])
    assert f == {"force": True}


@pytest.mark.parametrize("text,value", [("512m", 512 << 20), ("1g", 1 << 30), ("1024", 1024), ("-1", -1),
                                        ("100MB", 100 << 20), ("1GiB", 1 << 30)])
def test_parse_size(text, value):
    from berth.runtime.cli import parse_size

    assert parse_size(text) == value


def test_parse_size_rejects():
    from berth.runtime.cli import parse_size

    with pytest.raises(UsageError):
        parse_size("lots")


@pytest.mark.parametrize("doc", [{"a": [1, {"b": None}], "c": {}, "d": []}, [], {}, "x", [[1], [2, 3]]])
def test_fastjson_indent_matches_json(doc):
    assert fastjson.dumps_indent(doc) == json.dumps(doc, indent=2)
