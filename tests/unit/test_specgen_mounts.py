"""specgen takes the container's planned mounts (berth.volumes) instead of parsing them."""

from __future__ import annotations

from berth.engine import specgen
from berth.volumes.mountspec import plan_mounts


def _spec(mounts, etc=None, host=None):
    return specgen.build_spec(cid="c" * 64, cfg={"Cmd": ["true"]}, host=host or {}, rootfs="rootfs",
                              user={"uid": 0, "gid": 0}, etc_files=etc or {}, mounts=mounts)


def test_planned_mounts_reach_the_spec_in_order(tmp_path):
    planned = plan_mounts(binds=[f"{tmp_path}:/a/b:ro"], tmpfs={"/a": "size=1m"},
                          volumes=["/v"], path_exists=lambda p: True)
    for m in planned:
        if m.type == "volume":
            m.source = "/var/lib/berth/volumes/x/_data"
    s = _spec([m.to_oci() for m in planned])
    dests = [m["destination"] for m in s["mounts"]]
    assert dests.index("/a") < dests.index("/a/b")  # parents before children
    ab = next(m for m in s["mounts"] if m["destination"] == "/a/b")
    assert ab == {"destination": "/a/b", "type": "bind", "source": str(tmp_path),
                  "options": ["rbind", "ro", "rprivate"]}
    a = next(m for m in s["mounts"] if m["destination"] == "/a")
    assert a["type"] == "tmpfs" and "size=1m" in a["options"] and "noexec" in a["options"]


def test_user_mount_replaces_default_and_etc_file():
    mine = [{"destination": "/dev/shm", "type": "bind", "source": "/x", "options": ["rbind", "rw"]},
            {"destination": "/etc/hosts", "type": "bind", "source": "/h", "options": ["rbind", "ro"]}]
    s = _spec(mine, etc={"/etc/hosts": "/gen/hosts", "/etc/hostname": "/gen/hostname"})
    shm = [m for m in s["mounts"] if m["destination"] == "/dev/shm"]
    hosts = [m for m in s["mounts"] if m["destination"] == "/etc/hosts"]
    assert shm == [mine[0]] and hosts == [mine[1]]
    assert any(m["source"] == "/gen/hostname" for m in s["mounts"])


def test_no_mounts_and_binds_in_host_config_are_not_parsed_here():
    s = _spec(None, host={"Binds": ["/nonexistent-src:/x"], "Tmpfs": {"/t": ""}})
    assert not [m for m in s["mounts"] if m["destination"] in ("/x", "/t")]
