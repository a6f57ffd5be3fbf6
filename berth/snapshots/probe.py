"""What the data root supports: btrfs by statfs, overlay by a real test mount."""

from __future__ import annotations

import os
import stat
import tempfile

from berth.snapshots import fsutil


def is_btrfs(path: str) -> bool:
    """True if path is on a btrfs filesystem."""
    return fsutil.fs_type(path) == fsutil.BTRFS_SUPER_MAGIC


def overlay_works(path: str) -> bool:
    """Mount a small overlay in a temp dir under path and delete a lower file through it.

    True only if the mount succeeds and the delete leaves a 0/0 whiteout in the upper dir (what
    the overlay snapshotter and layer diffs rely on). Needs root; False otherwise.
    """
    if os.geteuid() != 0:
        return False
    from berth.mount import Mount, mount_all, unmount_all

    os.makedirs(path, mode=0o700, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".overlay-probe-", dir=path)
    try:
        dirs = {n: os.path.join(tmp, n) for n in ("l1", "l2", "u", "w", "m")}
        for d in dirs.values():
            os.mkdir(d)
        with open(os.path.join(dirs["l2"], "f"), "w") as f:
            f.write("x")
        opts = [f"lowerdir={dirs['l1']}:{dirs['l2']}", f"upperdir={dirs['u']}", f"workdir={dirs['w']}"]
        try:
            mount_all([Mount("overlay", "overlay", opts)], dirs["m"])
        except OSError:
            return False
        try:
            os.unlink(os.path.join(dirs["m"], "f"))
            st = os.lstat(os.path.join(dirs["u"], "f"))
            return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
        except OSError:
            return False
        finally:
            unmount_all(dirs["m"])
    finally:
        fsutil.remove_tree(tmp)
