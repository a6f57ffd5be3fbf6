"""The resolved mounts work in a real container (berth-runtime on a busybox bundle)."""

from __future__ import annotations

import os

import pytest

from berth.metadata.db import Database
from berth.volumes.mountspec import plan_mounts
from berth.volumes.store import VolumeStore
from tests.helpers import mounts_under

pytestmark = pytest.mark.root

SCRIPT = r"""
echo "seed=$(cat /data/seed)"
echo changed > /data/seed
echo "bind=$(cat /host/f)"
if touch /host/new 2>/dev/null; then echo bind_ro=no; else echo bind_ro=yes; fi
echo "tmp=$(grep ' /scratch ' /proc/mounts | cut -d' ' -f3,4)"
echo "anon=$(ls /cache)"
"""


def test_volume_bind_tmpfs_in_a_container(tmp_path, busybox_rootfs_template, no_leaked_mounts):
    from tests.e2e.test_runtime_support import Runtime, make_bundle, new_id, runtime_path, write_spec

    bundle, spec = make_bundle(tmp_path, busybox_rootfs_template, ["sh", "-c", SCRIPT])
    rootfs = os.path.join(bundle, "rootfs")
    os.makedirs(os.path.join(rootfs, "data"))
    with open(os.path.join(rootfs, "data/seed"), "w") as f:
        f.write("from-image\n")
    os.makedirs(os.path.join(rootfs, "cache"))
    open(os.path.join(rootfs, "cache/c1"), "w").close()
    host = tmp_path / "host"
    host.mkdir()
    (host / "f").write_text("hostfile")

    db = Database(str(tmp_path / "meta.db"))
    store = VolumeStore(db, str(tmp_path / "root"))
    planned = plan_mounts(binds=["vol1:/data", f"{host}:/host:ro"], tmpfs={"/scratch": "size=1m"},
                          volumes=["/cache"])
    mounts = store.prepare(planned)
    store.attach(mounts, "ctr", rootfs=rootfs)
    spec["mounts"] += [m.to_oci() for m in mounts]
    write_spec(bundle, spec)
    rt = Runtime(runtime_path(str(tmp_path)), str(tmp_path / "state"))
    try:
        p = rt("run", "--bundle", bundle, rt.track(new_id("vol")))
    finally:
        rt.cleanup()
        store.detach(mounts, "ctr")
    assert p.returncode == 0, p.stderr
    out = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)
    assert out["seed"] == "from-image"
    assert out["bind"] == "hostfile" and out["bind_ro"] == "yes"
    assert out["tmp"].startswith("tmpfs rw,nosuid,nodev,noexec") and "size=1024k" in out["tmp"]
    assert out["anon"] == "c1"
    assert open(os.path.join(store.path("vol1"), "seed")).read() == "changed\n"  # written through
    assert not (host / "new").exists()
    assert mounts_under(str(tmp_path)) == []
    db.close()
