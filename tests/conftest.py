"""Fixtures shared by every test directory."""

from __future__ import annotations

import os

import pytest

from tests.helpers import have_root, make_busybox_rootfs, mounts_under


def pytest_collection_modifyitems(config, items):
    skip_root = pytest.mark.skip(reason="needs root")
    for item in items:
        if "root" in item.keywords and not have_root():
            item.add_marker(skip_root)


@pytest.fixture(scope="session")
def busybox_rootfs_template(tmp_path_factory) -> str:
    """A busybox rootfs built once per session; copy it before changing it."""
    return make_busybox_rootfs(str(tmp_path_factory.mktemp("busybox-template") / "rootfs"))


@pytest.fixture
def busybox_rootfs(tmp_path) -> str:
    """A fresh busybox rootfs for one test."""
    return make_busybox_rootfs(str(tmp_path / "rootfs"))


@pytest.fixture
def no_leaked_mounts(tmp_path):
    """Fail the test if it leaves any mount below its tmp_path."""
    yield
    left = mounts_under(str(tmp_path))
    for mp in reversed(left):
        os.system(f"umount -l {mp!r} 2>/dev/null")
    assert not left, f"leaked mounts: {left}"
