"""Mount-spec parsing: -v/Binds, Mounts, --mount, --tmpfs, --volumes-from, planning."""

from __future__ import annotations

import pytest

from berth.errors import InvalidArgument, NotFound
from berth.volumes.mountspec import (
    ResolvedMount,
    merge_tmpfs_options,
    parse_api_mount,
    parse_bind,
    parse_mount_flag,
    parse_tmpfs,
    parse_tmpfs_flag,
    parse_volumes_from,
    plan_mounts,
    ram_in_bytes,
    tmpfs_size_option,
    valid_mode,
    volumes_from,
)
from berth.volumes.names import ANONYMOUS_LABEL


def exists(_p: str) -> bool:
    return True


def missing(_p: str) -> bool:
    return False


# ---------------------------------------------------------------- -v / Binds

def test_named_volume():
    m = parse_bind("data:/var/lib/data")
    assert (m.type, m.volume_name, m.destination, m.anonymous, m.copy_up) == (
        "volume", "data", "/var/lib/data", False, True)
    assert m.options == ["rbind", "rw", "rprivate"]
    assert m.source == "" and m.driver == "local"


def test_named_volume_ro_nocopy():
    m = parse_bind("data:/d:ro,nocopy")
    assert m.read_only and not m.copy_up and m.mode == "ro,nocopy"
    assert m.options == ["rbind", "ro", "rprivate"]


def test_host_bind_ro_and_propagation():
    m = parse_bind("/srv/x/../y:/mnt/:ro,rshared")
    assert (m.type, m.source, m.destination) == ("bind", "/srv/y", "/mnt")
    assert m.options == ["rbind", "ro", "rshared"]
    assert m.create_source and m.propagation == "rshared"


def test_bind_defaults_rw_rprivate_and_z():
    m = parse_bind("/srv:/srv:z")
    assert m.options == ["rbind", "rw", "rprivate"] and m.mode == "z"


def test_anonymous_from_destination_only():
    m = parse_bind("/cache")
    assert m.type == "volume" and m.anonymous and m.volume_name == ""
    assert m.labels == {ANONYMOUS_LABEL: ""} and m.copy_up


def test_volume_driver_is_passed():
    assert parse_bind("v1:/x", volume_driver="nfsplugin").driver == "nfsplugin"


@pytest.mark.parametrize("raw", [":/x", "/x:rw", "/x:ro", "a:b:c:d", "a:/b:ro:z", "v:"])
def test_invalid_spec(raw):
    with pytest.raises(InvalidArgument, match=r"^invalid volume specification: '"):
        parse_bind(raw)


@pytest.mark.parametrize("mode", ["rw,ro", "bogus", "z,Z", "shared,slave", "nocopy,nocopy", "ro,,"])
def test_invalid_mode(mode):
    with pytest.raises(InvalidArgument, match=r"^invalid mode: "):
        parse_bind(f"/a:/b:{mode}")


def test_valid_mode_combinations():
    assert valid_mode("ro,z,rslave,nocopy,cached")
    assert not valid_mode("ro,rw")


def test_relative_destination():
    with pytest.raises(InvalidArgument) as e:
        parse_bind("/src:rel")
    assert str(e.value) == ("invalid volume specification: '/src:rel': invalid mount config for type "
                            "\"bind\": invalid mount path: 'rel' mount path must be absolute")


def test_mode_kind_must_fit_the_type():
    with pytest.raises(InvalidArgument) as e:
        parse_bind("/src:/dst:nocopy")
    assert str(e.value) == ("invalid volume specification: '/src:/dst:nocopy': invalid mount config for "
                            'type "bind": field VolumeOptions must not be specified')
    with pytest.raises(InvalidArgument, match="field BindOptions must not be specified"):
        parse_bind("data:/dst:rshared")


def test_root_destination():
    with pytest.raises(InvalidArgument, match="destination can't be '/'"):
        parse_bind("data:/")


def test_invalid_volume_name():
    with pytest.raises(InvalidArgument, match='"./rel" includes invalid characters for a local volume name'):
        parse_bind("./rel:/x")
    with pytest.raises(InvalidArgument, match="too short"):
        parse_bind("a:/x")


# ---------------------------------------------------------------- Mounts objects

def test_api_bind():
    m = parse_api_mount({"Type": "bind", "Source": "/src", "Target": "/dst", "ReadOnly": True,
                         "BindOptions": {"Propagation": "rslave", "NonRecursive": True}}, path_exists=exists)
    assert m.options == ["bind", "ro", "rslave"] and not m.create_source


def test_api_bind_missing_source():
    with pytest.raises(InvalidArgument) as e:
        parse_api_mount({"Type": "bind", "Source": "/x", "Target": "/d"}, path_exists=missing)
    assert str(e.value) == 'invalid mount config for type "bind": bind source path does not exist: /x'


def test_api_bind_create_mountpoint():
    m = parse_api_mount({"Type": "bind", "Source": "/x", "Target": "/d",
                         "BindOptions": {"CreateMountpoint": True}}, path_exists=missing)
    assert m.create_source


def test_api_bind_real_path_check(tmp_path):
    m = parse_api_mount({"Type": "bind", "Source": str(tmp_path), "Target": "/d"})
    assert m.source == str(tmp_path)
    with pytest.raises(InvalidArgument, match="bind source path does not exist"):
        parse_api_mount({"Type": "bind", "Source": str(tmp_path / "nope"), "Target": "/d"})


def test_api_volume_options():
    m = parse_api_mount({"Type": "volume", "Source": "data", "Target": "/d", "VolumeOptions": {
        "NoCopy": True, "Labels": {"a": "b"},
        "DriverConfig": {"Name": "local", "Options": {"type": "tmpfs"}}}})
    assert (m.volume_name, m.copy_up, m.labels) == ("data", False, {"a": "b"})
    assert m.driver_options == {"type": "tmpfs"}


def test_api_anonymous_volume():
    m = parse_api_mount({"Type": "volume", "Target": "/d"})
    assert m.anonymous and m.labels == {ANONYMOUS_LABEL: ""} and m.copy_up


def test_api_tmpfs():
    m = parse_api_mount({"Type": "tmpfs", "Target": "/run",
                         "TmpfsOptions": {"SizeBytes": 64 << 20, "Mode": 0o1777}})
    assert m.to_oci() == {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                          "options": ["nosuid", "nodev", "noexec", "rprivate", "mode=1777", "size=64m"]}


def test_api_tmpfs_readonly():
    m = parse_api_mount({"Type": "tmpfs", "Target": "/run", "ReadOnly": True})
    assert "ro" in m.options


@pytest.mark.parametrize("spec,msg", [
    ({"Type": "bind", "Source": "/s"},
     'invalid mount config for type "bind": field Target must not be empty'),
    ({"Type": "bind", "Target": "/d"},
     'invalid mount config for type "bind": field Source must not be empty'),
    ({"Type": "bind", "Source": "rel", "Target": "/d"},
     "invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must be absolute"),
    ({"Type": "bind", "Source": "/s", "Target": "d"},
     "invalid mount config for type \"bind\": invalid mount path: 'd' mount path must be absolute"),
    ({"Type": "volume", "Target": "/"},
     "invalid mount config for type \"volume\": invalid specification: destination can't be '/'"),
    ({"Type": "bind", "Source": "/s", "Target": "/d", "BindOptions": {"Propagation": "weird"}},
     'invalid mount config for type "bind": invalid propagation mode: weird'),
    ({"Type": "bind", "Source": "/s", "Target": "/d", "VolumeOptions": {}},
     'invalid mount config for type "bind": field VolumeOptions must not be specified'),
    ({"Type": "volume", "Target": "/d", "BindOptions": {}},
     'invalid mount config for type "volume": field BindOptions must not be specified'),
    ({"Type": "volume", "Target": "/d", "TmpfsOptions": {}},
     'invalid mount config for type "volume": field TmpfsOptions must not be specified'),
    ({"Type": "volume", "Target": "/d", "ReadOnly": True},
     'invalid mount config for type "volume": must not set ReadOnly mode when using anonymous volumes'),
    ({"Type": "tmpfs", "Source": "x", "Target": "/d"},
     'invalid mount config for type "tmpfs": field Source must not be specified'),
    ({"Type": "tmpfs", "Target": "/d", "TmpfsOptions": {"SizeBytes": -1}},
     'invalid mount config for type "tmpfs": invalid tmpfs size: must not be negative'),
    ({"Type": "npipe", "Target": "/d"}, 'invalid mount config for type "npipe": mount type unknown'),
    ({"Type": "volume", "Source": "bad/name", "Target": "/d"},
     'invalid mount config for type "volume": "bad/name" includes invalid characters'),
])
def test_api_mount_errors(spec, msg):
    with pytest.raises(InvalidArgument) as e:
        parse_api_mount(spec, path_exists=exists)
    assert str(e.value).startswith(msg)


def test_api_mount_not_an_object():
    with pytest.raises(InvalidArgument):
        parse_api_mount(["Type", "bind"])  # type: ignore[arg-type]


# ---------------------------------------------------------------- --mount CSV

def test_mount_flag_bind():
    d = parse_mount_flag("type=bind,source=/s,target=/d,readonly,bind-propagation=rshared")
    assert d == {"Type": "bind", "Source": "/s", "Target": "/d", "ReadOnly": True,
                 "BindOptions": {"Propagation": "rshared"}}


def test_mount_flag_volume_defaults_and_options():
    d = parse_mount_flag('src=data,dst=/d,volume-nocopy,volume-label=a=b,"volume-opt=o=size=1m,uid=1",'
                         "volume-driver=local")
    assert d["Type"] == "volume"
    assert d["VolumeOptions"] == {"NoCopy": True, "Labels": {"a": "b"},
                                  "DriverConfig": {"Options": {"o": "size=1m,uid=1"}, "Name": "local"}}
    m = parse_api_mount(d)
    assert m.driver_options == {"o": "size=1m,uid=1"} and not m.copy_up


def test_mount_flag_tmpfs():
    d = parse_mount_flag("type=tmpfs,destination=/t,tmpfs-size=1.5g,tmpfs-mode=700")
    assert d["TmpfsOptions"] == {"SizeBytes": 1610612736, "Mode": 0o700}
    assert "size=1536m" in parse_api_mount(d).options


def test_mount_flag_relative_source():
    assert parse_mount_flag("type=bind,src=./sub,dst=/d", cwd="/home/u")["Source"] == "/home/u/sub"


def test_mount_flag_readonly_value():
    assert parse_mount_flag("type=bind,src=/s,dst=/d,ro=false")["ReadOnly"] is False


@pytest.mark.parametrize("value,msg", [
    ("type=bind,src=/s", "target is required"),
    ("type=,target=/d", "type is required"),
    ("type=bind,src=/s,dst=/d,bogus", "invalid field 'bogus' must be a key=value pair"),
    ("type=bind,src=/s,dst=/d,color=red", "unexpected key 'color' in 'color=red'"),
    ("type=bind,src=/s,dst=/d,readonly=maybe", "invalid value for readonly: maybe"),
    ("type=volume,dst=/d,volume-nocopy=2", "invalid value for volume-nocopy: 2"),
    ("type=tmpfs,dst=/d,tmpfs-size=big", "invalid value for tmpfs-size: big"),
    ("type=tmpfs,dst=/d,tmpfs-mode=9", "invalid value for tmpfs-mode: 9"),
    ("type=bind,src=/s,dst=/d,volume-nocopy", "cannot mix 'volume-*' options with mount type 'bind'"),
    ("type=volume,dst=/d,bind-propagation=shared", "cannot mix 'bind-*' options with mount type 'volume'"),
    ("type=bind,src=/s,dst=/d,tmpfs-size=1m", "cannot mix 'tmpfs-*' options with mount type 'bind'"),
])
def test_mount_flag_errors(value, msg):
    with pytest.raises(InvalidArgument) as e:
        parse_mount_flag(value)
    assert str(e.value) == msg


# ---------------------------------------------------------------- tmpfs

def test_tmpfs_flag():
    dest, opts = parse_tmpfs_flag("/run:rw,size=64m,exec")
    m = parse_tmpfs(dest, opts)
    assert m.options == ["nosuid", "nodev", "rprivate", "rw", "size=64m", "exec"]


def test_tmpfs_errors():
    with pytest.raises(InvalidArgument, match="must be absolute"):
        parse_tmpfs("run")
    with pytest.raises(InvalidArgument, match="invalid tmpfs option"):
        parse_tmpfs("/run", "colour=blue")
    with pytest.raises(InvalidArgument, match="destination can't be '/'"):
        parse_tmpfs("/")


def test_merge_tmpfs_options_later_wins():
    merged = merge_tmpfs_options(["noexec", "size=1m", "exec", "size=2m", "shared"])
    assert merged == ["exec", "size=2m", "shared"]


def test_size_helpers():
    assert tmpfs_size_option(1 << 30) == "size=1g"
    assert tmpfs_size_option(3 << 10) == "size=3k"
    assert tmpfs_size_option(1000) == "size=1000"
    assert ram_in_bytes("64m") == 64 << 20 and ram_in_bytes("10") == 10 and ram_in_bytes("2KiB") == 2048
    with pytest.raises(InvalidArgument):
        ram_in_bytes("-1")


# ---------------------------------------------------------------- volumes-from

def _other(cid: str) -> list[ResolvedMount]:
    if cid != "c1":
        raise NotFound(f"No such container: {cid}")
    return [parse_bind("data:/data"), parse_bind("/h:/h:rshared"), parse_tmpfs("/t")]


def test_volumes_from_rw_and_ro():
    ms = volumes_from("c1", _other)
    assert [m.destination for m in ms] == ["/data", "/h"]
    assert all(not m.copy_up for m in ms) and ms[1].options == ["rbind", "rw", "rshared"]
    ro = volumes_from("c1:ro", _other)
    assert all(m.read_only and "ro" in m.options for m in ro)


def test_volumes_from_errors():
    with pytest.raises(InvalidArgument, match="cannot be an empty string"):
        parse_volumes_from("")
    for bad in ("c1:shared", "c1:nocopy", "c1:what"):
        with pytest.raises(InvalidArgument, match="invalid mode"):
            parse_volumes_from(bad)
    with pytest.raises(NotFound):
        volumes_from("c2", _other)
    assert parse_volumes_from("c1") == ("c1", "rw")


# ---------------------------------------------------------------- planning

def test_plan_order_precedence_and_image_volumes():
    ms = plan_mounts(binds=["/h/a:/data/sub", "named:/data"], tmpfs={"/run": ""},
                     mounts=[{"Type": "volume", "Target": "/logs"}],
                     volumes=["/data", "/cache", "/run"], volumes_from_specs=["c1"], get_mounts=_other,
                     path_exists=exists)
    dests = [m.destination for m in ms]
    assert dests.index("/data") < dests.index("/data/sub")
    by = {m.destination: m for m in ms}
    assert by["/data"].volume_name == "named"  # binds override volumes-from and image volumes
    assert by["/cache"].anonymous and by["/cache"].copy_up
    assert by["/run"].type == "tmpfs" and by["/h"].type == "bind"
    assert len(ms) == 6


@pytest.mark.parametrize("kw", [
    {"binds": ["a1:/d", "/h:/d"]},
    {"binds": ["a1:/d/"], "mounts": [{"Type": "volume", "Target": "/d"}]},
    {"binds": ["a1:/d"], "tmpfs": {"/d": ""}},
    {"mounts": [{"Type": "tmpfs", "Target": "/d"}, {"Type": "volume", "Target": "/d"}]},
])
def test_plan_duplicate_mount_point(kw):
    with pytest.raises(InvalidArgument) as e:
        plan_mounts(path_exists=exists, **kw)
    assert str(e.value) == "Duplicate mount point: /d"


def test_plan_bad_image_volume():
    with pytest.raises(InvalidArgument, match="invalid volume specification"):
        plan_mounts(volumes=["relative"])


def test_roundtrip_dict_and_inspect():
    m = parse_bind("data:/d:ro")
    m2 = ResolvedMount.from_dict({**m.to_dict(), "unknown": 1})
    assert m2 == m
    assert m.to_inspect() == {"Type": "volume", "Name": "data", "Source": "", "Destination": "/d",
                              "Mode": "ro", "RW": False, "Propagation": "", "Driver": "local"}


def test_to_oci_needs_a_prepared_volume():
    m = parse_bind("data:/d")
    with pytest.raises(InvalidArgument, match="has no source"):
        m.to_oci()
    m.source = "/var/lib/berth/volumes/data/_data"
    assert m.to_oci() == {"destination": "/d", "type": "bind", "source": m.source,
                          "options": ["rbind", "rw", "rprivate"]}
    assert parse_tmpfs("/t").to_inspect()["Source"] == ""
