"""berth-runtime end to end on a busybox bundle: isolation, security defaults, errors."""

from __future__ import annotations

import json
import os

import pytest
from test_runtime_support import make_bundle, new_id, runtime_fixture, write_spec  # noqa: F401

from tests.helpers import mounts_under

pytestmark = pytest.mark.root

PROBE = r"""
echo "pid=$$"
echo "hostname=$(hostname)"
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\t'
echo "fds=$(ls /proc/self/fd | tr '\n' ' ')"
echo "mounts_host=$(grep -c -E ' /(work|tmp|home|root) ' /proc/self/mountinfo)"
echo "timer_list=$(wc -c < /proc/timer_list)"
echo "acpi=$(ls -A /proc/acpi | wc -l)"
if echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null; then echo procsys=rw; else echo procsys=ro; fi
if unshare -U true 2>/dev/null; then echo unshare=ok; else echo unshare=denied; fi
if mount -t tmpfs t /mnt 2>/dev/null; then echo mount=ok; else echo mount=denied; fi
echo "dev=$(ls /dev | tr '\n' ' ')"
echo "fd_link=$(readlink /dev/fd) ptmx=$(readlink /dev/ptmx)"
echo "lo=$(cat /sys/class/net/lo/operstate)"
echo "nofile=$(ulimit -n)"
"""


def _probe(stdout: str) -> dict[str, str]:
    out = {}
    for line in stdout.splitlines():
        k, sep, v = line.partition("=") if "=" in line else line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out


def test_default_spec_isolation_and_security(tmp_path, busybox_rootfs_template, runtime, no_leaked_mounts):
    bundle, _ = make_bundle(tmp_path, busybox_rootfs_template, ["sh", "-c", PROBE])
    cid = runtime.track(new_id())
    p = runtime("run", "--bundle", bundle, cid)
    assert p.returncode == 0, p.stderr
    r = _probe(p.stdout)
    assert r["pid"] == "1"
    assert r["hostname"] == "berth-test"
    assert r["CapEff"] == r["CapPrm"] == r["CapBnd"] == "00000000a80425fb"
    assert r["CapInh"] == r["CapAmb"] == "0000000000000000"
    assert r["Seccomp"] == "2"
    assert r["NoNewPrivs"] == "0"
    # 0-2 plus the directory fd ls itself opens to read /proc/self/fd
    assert r["fds"].split() == ["0", "1", "2", "3"]
    assert r["mounts_host"] == "0"
    assert r["timer_list"] == "0"          # masked file: /dev/null over it
    assert r["acpi"] == "0"                # masked directory: empty tmpfs
    assert r["procsys"] == "ro"
    assert r["unshare"] == "denied"
    assert r["mount"] == "denied"
    for d in ("null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "mqueue",
              "fd", "stdin", "stdout", "stderr"):
        assert d in r["dev"].split(), d
    assert r["fd_link"] == "/proc/self/fd ptmx=pts/ptmx"
    assert r["lo"] in ("unknown", "up")
    assert r["nofile"] == "1024"
    assert not os.listdir(runtime.root) or os.listdir(runtime.root) == [".seccomp-cache"]


def test_user_switch_and_readonly_root(tmp_path, busybox_rootfs_template, runtime):
    bundle, spec = make_bundle(tmp_path, busybox_rootfs_template,
                               ["sh", "-c", "id; touch /x 2>/dev/null && echo root=rw || echo root=ro;"
                                " touch /tmp/y 2>/dev/null && echo tmp=rw || echo tmp=ro; umask; pwd"])
    spec["process"]["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [5, 1002], "umask": 0o27}
    spec["process"]["cwd"] = "/home/u"
    spec["root"]["readonly"] = True
    spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev", "mode=1777"]})
    write_spec(bundle, spec)
    p = runtime("run", "-b", bundle, runtime.track(new_id()))
    assert p.returncode == 0, p.stderr
    assert "uid=1000 gid=1001 groups=5(tty),1002" in p.stdout
    assert "root=ro" in p.stdout and "tmp=rw" in p.stdout
    assert "0027" in p.stdout
    assert p.stdout.strip().endswith("/home/u")


def test_exit_status_and_missing_binary(tmp_path, busybox_rootfs_template, runtime):
    bundle, spec = make_bundle(tmp_path, busybox_rootfs_template, ["sh", "-c", "exit 7"])
    assert runtime("run", "-b", bundle, runtime.track(new_id())).returncode == 7
    spec["process"]["args"] = ["/no/such/binary"]
    write_spec(bundle, spec)
    cid = runtime.track(new_id())
    p = runtime("run", "-b", bundle, cid)
    assert p.returncode == 127
    assert "/no/such/binary" in p.stderr
    spec["process"]["args"] = ["nosuchcmd"]
    write_spec(bundle, spec)
    p = runtime("run", "-b", bundle, runtime.track(new_id()))
    assert p.returncode == 127 and "nosuchcmd" in p.stderr
    os.chmod(os.path.join(bundle, "rootfs/etc/passwd"), 0o644)
    spec["process"]["args"] = ["/etc/passwd"]
    write_spec(bundle, spec)
    p = runtime("run", "-b", bundle, runtime.track(new_id()))
    assert p.returncode == 126 and "/etc/passwd" in p.stderr
    assert runtime("state", cid).returncode != 0


@pytest.mark.parametrize("field,value,needle", [
    ("process.args", [], "process.args"),
    ("process.cwd", "relative", "process.cwd"),
    ("process.rlimits", [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}], "process.rlimits[0].type"),
    ("process.capabilities.bounding", ["CAP_NOPE"], "process.capabilities.bounding"),
    ("linux.namespaces", [{"type": "mount"}, {"type": "bogus"}], "linux.namespaces[1].type"),
    ("mounts", [{"destination": "rel", "type": "tmpfs"}], "mounts[0].destination"),
    ("linux.sysctl", {"kernel.panic": "1"}, "linux.sysctl.kernel.panic"),
    ("linux.intelRdt", {"closID": "x"}, "linux.intelRdt"),
])
def test_bad_config_names_the_field(tmp_path, busybox_rootfs_template, runtime, field, value, needle):
    bundle, spec = make_bundle(tmp_path, busybox_rootfs_template, ["true"])
    obj = spec
    *parents, last = field.split(".")
    for k in parents:
        obj = obj.setdefault(k, {})
    obj[last] = value
    write_spec(bundle, spec)
    cid = runtime.track(new_id())
    p = runtime("create", "-b", bundle, cid)
    assert p.returncode == 1
    assert needle in p.stderr
    assert runtime("state", cid).returncode != 0
    assert not [n for n in os.listdir(runtime.root) if not n.startswith(".")] \
        if os.path.isdir(runtime.root) else True


def test_malformed_json(tmp_path, busybox_rootfs_template, runtime):
    bundle, _ = make_bundle(tmp_path, busybox_rootfs_template, ["true"])
    with open(os.path.join(bundle, "config.json"), "w") as f:
        f.write('{"ociVersion": "1.0.0", ')
    p = runtime("run", "-b", bundle, runtime.track(new_id()))
    assert p.returncode == 1 and "malformed JSON" in p.stderr


def test_symlinked_proc_is_refused(tmp_path, busybox_rootfs_template, runtime, no_leaked_mounts):
    host = tmp_path / "hostproc"
    host.mkdir()
    bundle, _ = make_bundle(tmp_path, busybox_rootfs_template, ["true"])
    rootfs = os.path.join(bundle, "rootfs")
    os.rmdir(os.path.join(rootfs, "proc"))
    os.symlink(str(host), os.path.join(rootfs, "proc"))
    cid = runtime.track(new_id())
    p = runtime("run", "-b", bundle, cid)
    assert p.returncode != 0
    assert "/proc" in p.stderr and "symlink" in p.stderr
    assert os.listdir(host) == []
    assert not mounts_under(str(host))


def test_symlinked_dev_stays_inside(tmp_path, busybox_rootfs_template, runtime, no_leaked_mounts):
    host = tmp_path / "hostdev"
    host.mkdir()
    bundle, _ = make_bundle(tmp_path, busybox_rootfs_template,
                            ["sh", "-c", "ls /dev/null /dev/pts/ptmx && echo ok"])
    rootfs = os.path.join(bundle, "rootfs")
    os.rmdir(os.path.join(rootfs, "dev"))
    os.symlink(str(host), os.path.join(rootfs, "dev"))  # absolute host path
    p = runtime("run", "-b", bundle, runtime.track(new_id()))
    assert p.returncode == 0, p.stderr
    assert "ok" in p.stdout
    assert os.listdir(host) == []                       # nothing created on the host
    assert os.path.isdir(os.path.join(rootfs, str(host).lstrip("/")))  # it went inside the rootfs
    assert not mounts_under(str(host))


def test_hooks_get_state(tmp_path, busybox_rootfs_template, runtime):
    bundle, spec = make_bundle(tmp_path, busybox_rootfs_template, ["true"])
    out = tmp_path / "hooks"
    out.mkdir()
    spec["hooks"] = {
        name: [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {out}/{name}"]}]
        for name in ("prestart", "createRuntime", "createContainer", "poststart", "poststop")
    }
    write_spec(bundle, spec)
    cid = runtime.track(new_id())
    p = runtime("run", "-b", bundle, cid)
    assert p.returncode == 0, p.stderr
    for name in ("prestart", "createRuntime", "createContainer", "poststart", "poststop"):
        st = json.loads((out / name).read_text())
        assert st["id"] == cid and st["bundle"] == bundle, name
    assert json.loads((out / "prestart").read_text())["pid"] > 1


def test_failing_hook_cleans_up(tmp_path, busybox_rootfs_template, runtime, no_leaked_mounts):
    bundle, spec = make_bundle(tmp_path, busybox_rootfs_template, ["true"])
    spec["hooks"] = {"createRuntime": [{"path": "/bin/false"}]}
    write_spec(bundle, spec)
    cid = runtime.track(new_id())
    p = runtime("create", "-b", bundle, cid)
    assert p.returncode == 1 and "createRuntime" in p.stderr
    assert runtime("state", cid).returncode != 0


@pytest.fixture
def open_dir():
    """A directory the container's unprivileged host uid can traverse (pytest's tmp is 0700)."""
    import shutil
    import tempfile

    from test_runtime_support import procs_rooted_under

    from tests.helpers import mounts_under

    d = tempfile.mkdtemp(prefix="berth-userns-", dir="/tmp")
    os.chmod(d, 0o711)
    yield d  # the runtime fixture (set up later) has deleted its containers by now
    left = procs_rooted_under(d) + mounts_under(d)
    shutil.rmtree(d, ignore_errors=True)
    assert not left, f"left behind: {left}"


def test_user_namespace_with_mappings(open_dir, busybox_rootfs_template, runtime, no_leaked_mounts):
    bundle, spec = make_bundle(open_dir, busybox_rootfs_template,
                               ["sh", "-c", "id -u; cat /proc/self/uid_map /proc/self/gid_map; echo pid=$$;"
                                " stat -c %U /; cat /proc/self/cgroup | grep -c ':/$'"])
    spec["linux"]["namespaces"] += [{"type": "user"}, {"type": "cgroup"}]
    spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    write_spec(bundle, spec)
    p = runtime("run", "-b", bundle, runtime.track(new_id()))
    assert p.returncode == 0, p.stderr
    lines = [" ".join(x.split()) for x in p.stdout.splitlines()]
    assert lines[:4] == ["0", "0 200000 65536", "0 200000 65536", "pid=1"]
    assert lines[4] == "nobody"          # host root owns the rootfs: unmapped inside
    assert int(lines[5]) >= 5            # cgroup namespace: every hierarchy is '/' inside


def test_exec_into_user_namespace(open_dir, busybox_rootfs_template, runtime):
    bundle, spec = make_bundle(open_dir, busybox_rootfs_template, ["sleep", "300"])
    spec["linux"]["namespaces"].append({"type": "user"})
    spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 65536}]
    spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 65536}]
    write_spec(bundle, spec)
    cid = runtime.track(new_id())
    runtime("run", "-d", "-b", bundle, cid, check=True)
    init = runtime.state(cid)["pid"]
    with open(f"/proc/{init}/status") as f:
        assert "Uid:\t300000" in f.read()
    p = runtime("exec", "--user", "5:5", cid, "sh", "-c", "id -u; cat /proc/self/uid_map; echo $$")
    assert p.returncode == 0, p.stderr
    lines = [" ".join(x.split()) for x in p.stdout.splitlines()]
    assert lines[0] == "5" and lines[1] == "0 300000 65536" and int(lines[2]) > 1


def test_bind_mounts_devices_sysctl(tmp_path, busybox_rootfs_template, runtime, no_leaked_mounts):
    data = tmp_path / "data"
    data.mkdir()
    (data / "hello").write_text("from the host\n")
    single = tmp_path / "single.txt"
    single.write_text("one file\n")
    bundle, spec = make_bundle(tmp_path, busybox_rootfs_template, ["sh", "-c", "\n".join([
        "cat /data/hello /etc/single.txt",
        "touch /data/x 2>/dev/null && echo data=rw || echo data=ro",
        "touch /rw/x && echo rw=rw",
        "grep -E ' /(data|rw|scratch) ' /proc/self/mountinfo | awk '{print $5, $6}'",
        "stat -c '%F %a %u %t:%T' /dev/mydev",
        "echo x > /dev/mydev && echo dev=ok",
        "cat /proc/sys/net/ipv4/ip_forward",
        "stat -c %a /scratch",
    ])])
    spec["mounts"] += [
        {"destination": "/data", "type": "bind", "source": str(data), "options": ["rbind", "ro", "rprivate"]},
        {"destination": "/rw", "type": "bind", "source": str(data), "options": ["bind", "nosuid", "noexec"]},
        {"destination": "/etc/single.txt", "type": "bind", "source": str(single), "options": ["ro", "bind"]},
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["mode=700", "size=1m"]},
    ]
    spec["linux"]["devices"] = [{"path": "/dev/mydev", "type": "c", "major": 1, "minor": 3,
                                 "fileMode": 0o600, "uid": 1000, "gid": 1000}]
    spec["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    write_spec(bundle, spec)
    p = runtime("run", "-b", bundle, runtime.track(new_id()))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[:5] == ["from the host", "one file", "data=ro", "rw=rw", "/data ro,relatime"]
    assert lines[5] == "/rw rw,nosuid,noexec,relatime"
    assert lines[6].startswith("/scratch rw")
    assert lines[7:] == ["character special file 600 1000 1:3", "dev=ok", "1", "700"]
    assert (data / "x").exists()


@pytest.mark.parametrize("prop", ["rshared", "rprivate", "slave"])
def test_rootfs_propagation(tmp_path, busybox_rootfs_template, runtime, no_leaked_mounts, prop):
    bundle, spec = make_bundle(tmp_path, busybox_rootfs_template,
                               ["sh", "-c", "grep -c . /proc/self/mountinfo"])
    spec["linux"]["rootfsPropagation"] = prop
    write_spec(bundle, spec)
    p = runtime("run", "-b", bundle, runtime.track(new_id()))
    assert p.returncode == 0, p.stderr
    assert int(p.stdout) > 5


def test_cwd_through_a_host_fd_is_refused(tmp_path, busybox_rootfs_template, runtime):
    """CVE-2024-21626 shape: cwd /proc/self/fd/3 where fd 3 is a host directory."""
    import subprocess

    bundle, spec = make_bundle(tmp_path, busybox_rootfs_template, ["sh", "-c", "pwd; ls"])
    spec["process"]["cwd"] = "/proc/self/fd/3"
    write_spec(bundle, spec)
    hostdir = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        p = subprocess.run([runtime.path, "--root", runtime.root, "run", "--preserve-fds", "1", "-b", bundle,
                            runtime.track(new_id())], capture_output=True, text=True, timeout=60,
                           pass_fds=(3,), preexec_fn=lambda: os.dup2(hostdir, 3))
    finally:
        os.close(hostdir)
    assert p.returncode != 0
    assert "outside the container root" in p.stderr
    assert "bundle" not in p.stdout


def test_systemd_cgroup_without_systemd_is_a_clear_error(tmp_path, busybox_rootfs_template, runtime):
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd is running here")
    bundle, _ = make_bundle(tmp_path, busybox_rootfs_template, ["true"])
    cid = runtime.track(new_id())
    p = runtime("--systemd-cgroup", "run", "-b", bundle, cid)
    assert p.returncode == 1 and "systemd" in p.stderr
    assert runtime("state", cid).returncode != 0


def test_no_runtime_fd_reaches_the_init(tmp_path, busybox_rootfs_template, runtime):
    """The CLI's cgroup warm-up file (fd >= 200 in the runtime) is closed in init right after fork:
    init's cwd through it is "no such directory", not a host file (ENOTDIR)."""
    from berth.runtime.cgwarm import HIGH_FD

    bundle, spec = make_bundle(tmp_path, busybox_rootfs_template, ["true"])
    spec["process"]["cwd"] = f"/proc/self/fd/{HIGH_FD}"
    write_spec(bundle, spec)
    p = runtime("run", "-b", bundle, runtime.track(new_id()))
    assert p.returncode != 0
    assert "no such directory" in p.stderr, p.stderr
    spec["process"]["cwd"] = "/"
    spec["process"]["args"] = ["sleep", "300"]
    write_spec(bundle, spec)
    cid = runtime.track(new_id())
    runtime("run", "-d", "-b", bundle, cid, check=True)
    p = runtime("exec", "--cwd", f"/proc/self/fd/{HIGH_FD}", cid, "true")
    assert p.returncode != 0
    assert "no such directory" in p.stderr, p.stderr
