"""Run berth.snapshots.testsuite against vfs always, overlay and btrfs where they work."""

from __future__ import annotations

import os

import pytest

from berth.metadata.db import Database
from berth.snapshots import open_snapshotter, probe
from berth.snapshots.testsuite import CHECKS
from tests.helpers import have_root

DRIVERS = ["vfs", "overlay", "btrfs"]
CASES = [pytest.param(d, c, id=f"{d}-{c.name}",
                      marks=[pytest.mark.root] if (c.needs_mount or d != "vfs") else [])
         for d in DRIVERS for c in CHECKS if c.applies_to(d)]

_overlay_ok: bool | None = None


def _overlay_available(tmp: str) -> bool:
    global _overlay_ok
    if _overlay_ok is None:
        _overlay_ok = have_root() and probe.overlay_works(tmp)
    return _overlay_ok


@pytest.mark.parametrize("driver,check", CASES)
def test_conformance(driver, check, tmp_path, request, no_leaked_mounts):
    if driver == "btrfs":
        root = os.path.join(request.getfixturevalue("btrfs_dir"), "root")
    else:
        root = str(tmp_path / "root")
        if driver == "overlay" and not _overlay_available(str(tmp_path / "probe")):
            pytest.skip("overlayfs cannot be mounted here")
    db = Database(str(tmp_path / "meta.db"))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    try:
        check.func(lambda: open_snapshotter(root, db, driver), str(scratch))
    finally:
        db.close()
