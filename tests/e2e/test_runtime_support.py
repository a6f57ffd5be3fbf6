"""Shared helpers (no tests) for the berth-runtime end-to-end tests: bundles, a runtime handle
that cleans up every container it made, and leak checks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INSTALLED = "/usr/local/bin/berth-runtime"


def runtime_path(tmp_dir: str) -> str:
    """The installed berth-runtime when it starts; else an equivalent wrapper in tmp_dir."""
    try:
        if subprocess.run([INSTALLED, "--version"], capture_output=True, timeout=10).returncode == 0:
            return INSTALLED
    except (OSError, subprocess.TimeoutExpired):
        pass
    path = os.path.join(tmp_dir, "berth-runtime")
    with open(path, "w") as f:
        f.write(f"#!{sys.executable} -IS\nimport sys\nsys.path[:0] = [{REPO!r}]\n"
                "from berth.runtime.cli import main\nsys.exit(main())\n")
    os.chmod(path, 0o755)
    return path


def new_id(prefix: str = "bt") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def write_spec(bundle: str, spec: dict) -> None:
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f)


def make_bundle(tmp_path, template: str, args: list[str], *, name: str = "bundle", **kw) -> tuple[str, dict]:
    """A bundle dir with a copy of the busybox rootfs and Docker's default spec (kw tweaks it)."""
    from berth.oci.spec import default_spec

    bundle = os.path.join(str(tmp_path), name)
    os.makedirs(bundle)
    shutil.copytree(template, os.path.join(bundle, "rootfs"), symlinks=True)
    spec = default_spec(args, hostname=kw.pop("hostname", "berth-test"), terminal=kw.pop("terminal", False))
    write_spec(bundle, spec)
    return bundle, spec


def cgroup_dirs(cid: str) -> list[str]:
    """Cgroup directories named after cid anywhere in the v1 hierarchies (should be none after delete)."""
    out = []
    for ctrl in ("memory", "pids", "cpu", "freezer", "devices", "blkio", "cpuset", "systemd"):
        d = f"/sys/fs/cgroup/{ctrl}"
        for dirpath, dirnames, _ in os.walk(d):
            for n in dirnames:
                if n == cid:
                    out.append(os.path.join(dirpath, n))
            if dirpath.count("/") > 6:
                dirnames[:] = []
    return out


def procs_rooted_under(prefix: str) -> list[str]:
    """Processes in another mount namespace whose root mount comes from a directory below prefix.

    (/proc/<pid>/root of a pivoted container reads "/", so the source of the mount on "/" in its
    mountinfo is used; it is relative to its filesystem, so prefix's last two components, unique per
    pytest tmp_path, are what is matched.)"""
    out = []
    tail = "/" + "/".join(prefix.rstrip("/").split("/")[-2:])
    own = os.readlink("/proc/self/ns/mnt")
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{name}/ns/mnt") == own:
                continue
            with open(f"/proc/{name}/mountinfo") as f:
                for line in f:
                    fields = line.split()
                    if fields[4] == "/":
                        if tail + "/" in fields[3] + "/":
                            out.append(f"{name} {fields[3]}")
                        break
        except (OSError, IndexError):
            continue
    return out


class Runtime:
    """Runs the berth-runtime command with its own --root; forgets nothing it creates.

    cleanup() deletes every tracked container, then asserts that no state directory, cgroup,
    mount below `leak_dir` or process rooted below `leak_dir` is left."""

    def __init__(self, path: str, root: str, exe: str | None = None, leak_dir: str | None = None) -> None:
        self.path = exe or path
        self.root = root
        self.leak_dir = leak_dir
        self.ids: list[str] = []

    def __call__(self, *args: str, check: bool = False, timeout: float = 60,
                 **kw) -> subprocess.CompletedProcess:
        # files, not pipes: a created container's init inherits them and would hold a pipe open
        import tempfile

        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.run([self.path, "--root", self.root, *args], stdout=out, stderr=err,
                               timeout=timeout, **kw)
            out.seek(0)
            err.seek(0)
            p.stdout = out.read().decode(errors="replace")
            p.stderr = err.read().decode(errors="replace")
        if check and p.returncode != 0:
            raise AssertionError(f"{args} failed ({p.returncode}): {p.stderr}")
        return p

    def track(self, cid: str) -> str:
        self.ids.append(cid)
        return cid

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid, check=True).stdout)

    def cleanup(self) -> None:
        for cid in self.ids:
            self("delete", "--force", cid)
        left = os.listdir(self.root) if os.path.isdir(self.root) else []
        left = [n for n in left if not n.startswith(".")]
        cg = [d for cid in self.ids for d in cgroup_dirs(cid)]
        for d in cg:
            try:
                os.rmdir(d)
            except OSError:
                pass
        problems = [f"containers left behind: {left}"] if left else []
        problems += [f"cgroups left behind: {cg}"] if cg else []
        if self.leak_dir:
            from tests.helpers import mounts_under

            procs = procs_rooted_under(self.leak_dir)
            for line in procs:
                try:
                    os.kill(int(line.split()[0]), 9)
                except ProcessLookupError:
                    pass
            problems += [f"container processes left behind: {procs}"] if procs else []
            mounts = mounts_under(self.leak_dir)
            problems += [f"mounts left behind: {mounts}"] if mounts else []
        assert not problems, "; ".join(problems)


@pytest.fixture(name="runtime")
def runtime_fixture(tmp_path):
    rt = Runtime(runtime_path(str(tmp_path)), str(tmp_path / "state"), leak_dir=str(tmp_path))
    yield rt
    rt.cleanup()
