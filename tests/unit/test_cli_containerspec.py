"""containerspec: docker run/create flags → the Engine API create body (pure translation)."""

from __future__ import annotations

import json

import pytest

from berth.cli import containerspec as cs
from berth.cli.flags import parse


def body(*argv: str, console=None) -> dict:
    opts, args = parse(cs.RUN_FLAGS, list(argv))
    return cs.build(opts, args[0], args[1:], console)


def test_defaults_match_docker_run_foreground():
    b = body("busybox", "echo", "hi")
    assert b["Image"] == "busybox" and b["Cmd"] == ["echo", "hi"]
    assert (b["AttachStdin"], b["AttachStdout"], b["AttachStderr"]) == (False, True, True)
    assert (b["Tty"], b["OpenStdin"], b["StdinOnce"]) == (False, False, False)
    assert b["Entrypoint"] is None and b["Env"] == [] and b["Labels"] == {}
    h = b["HostConfig"]
    assert h["NetworkMode"] == "default" and h["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert h["AutoRemove"] is False and "Init" not in h
    assert b["NetworkingConfig"] == {"EndpointsConfig": {"default": {}}}
    json.dumps(b)


def test_interspersed_stops_at_image_and_h_is_hostname():
    opts, args = parse(cs.RUN_FLAGS, ["-h", "box", "--rm", "busybox", "ls", "-l", "-h"])
    assert args == ["busybox", "ls", "-l", "-h"] and opts["hostname"] == "box" and not opts["help"]
    assert parse(cs.RUN_FLAGS, ["--help"])[0]["help"]


def test_interactive_tty_detach_and_attach():
    b = body("-it", "busybox", console=(33, 101))
    assert (b["AttachStdin"], b["Tty"], b["OpenStdin"], b["StdinOnce"]) == (True, True, True, True)
    assert b["HostConfig"]["ConsoleSize"] == [33, 101]
    b = body("-d", "-i", "busybox")
    assert (b["AttachStdin"], b["AttachStdout"], b["OpenStdin"], b["StdinOnce"]) == \
        (False, False, True, False)
    b = body("-a", "stderr", "busybox")
    assert (b["AttachStdin"], b["AttachStdout"], b["AttachStderr"]) == (False, False, True)
    with pytest.raises(cs.SpecError, match="Conflicting options: -a and -d"):
        body("-d", "-a", "stdout", "busybox")
    with pytest.raises(cs.SpecError, match="--restart and --rm"):
        body("--rm", "--restart", "always", "busybox")


def test_env_labels_files(tmp_path, monkeypatch):
    monkeypatch.setenv("FROM_HOST", "h")
    monkeypatch.delenv("UNSET_X", raising=False)
    ef = tmp_path / "env"
    ef.write_text("# comment\n\nA=1\nFROM_HOST\nUNSET_X\nB=x=y\n")
    lf = tmp_path / "labels"
    lf.write_text("tier=web\nflag\n")
    b = body("--env-file", str(ef), "-e", "C=3", "-e", "FROM_HOST", "-e", "UNSET_X",
             "--label-file", str(lf), "-l", "a=b", "--label", "empty", "busybox")
    assert b["Env"] == ["A=1", "FROM_HOST=h", "B=x=y", "C=3", "FROM_HOST=h", "UNSET_X"]
    assert b["Labels"] == {"tier": "web", "flag": "", "a": "b", "empty": ""}
    with pytest.raises(cs.SpecError, match="open"):
        body("--env-file", str(tmp_path / "missing"), "busybox")


def test_sizes_cpus_and_resources():
    assert cs.ram_bytes("512m") == 512 << 20 and cs.ram_bytes("1.5g") == 3 << 29
    assert cs.ram_bytes("1024") == 1024 and cs.ram_bytes("2KiB") == 2048 and cs.ram_bytes("4kb") == 4096
    for bad in ("", "x", "12q", "-1m"):
        with pytest.raises(cs.SpecError):
            cs.ram_bytes(bad)
    b = body("-m", "64m", "--memory-swap", "-1", "--memory-reservation", "32m", "--cpus", "1.5",
             "--cpu-shares", "512", "--cpu-quota", "50000", "--cpu-period", "100000", "--cpuset-cpus", "0",
             "--pids-limit", "20", "--shm-size", "1g", "--oom-kill-disable", "busybox")
    h = b["HostConfig"]
    assert (h["Memory"], h["MemorySwap"], h["MemoryReservation"]) == (64 << 20, -1, 32 << 20)
    assert h["NanoCpus"] == 1_500_000_000 and h["CpuShares"] == 512
    assert (h["CpuQuota"], h["CpuPeriod"], h["CpusetCpus"], h["PidsLimit"]) == (50000, 100000, "0", 20)
    assert h["ShmSize"] == 1 << 30 and h["OomKillDisable"] is True
    with pytest.raises(cs.SpecError, match="memoryswap"):
        body("-m", "64m", "--memory-swap", "32m", "busybox")
    with pytest.raises(cs.SpecError, match="--cpus"):
        body("--cpus", "abc", "busybox")


@pytest.mark.parametrize("spec, want", [
    ("80", [("80/tcp", {"HostIp": "", "HostPort": ""})]),
    ("8080:80", [("80/tcp", {"HostIp": "", "HostPort": "8080"})]),
    ("127.0.0.1:8080:80/udp", [("80/udp", {"HostIp": "127.0.0.1", "HostPort": "8080"})]),
    ("127.0.0.1::80", [("80/tcp", {"HostIp": "127.0.0.1", "HostPort": ""})]),
    ("[::1]:53:53/udp", [("53/udp", {"HostIp": "::1", "HostPort": "53"})]),
    ("7000-7001:80-81", [("80/tcp", {"HostIp": "", "HostPort": "7000"}),
                         ("81/tcp", {"HostIp": "", "HostPort": "7001"})]),
    ("7000-7010:80", [("80/tcp", {"HostIp": "", "HostPort": "7000-7010"})]),
    ("90-91", [("90/tcp", {"HostIp": "", "HostPort": ""}), ("91/tcp", {"HostIp": "", "HostPort": ""})]),
])
def test_publish(spec, want):
    assert cs.parse_publish(spec) == want


@pytest.mark.parametrize("spec", ["7000-7002:80-81", "x:80", "80/icmp", "70000", "1:2:3:4", "8080:"])
def test_publish_errors(spec):
    with pytest.raises(cs.SpecError):
        cs.parse_publish(spec)


def test_publish_expose_and_all():
    b = body("-p", "8080:80", "-p", "9090:80", "--expose", "5000-5001/udp", "-P", "busybox")
    assert b["ExposedPorts"] == {"80/tcp": {}, "5000/udp": {}, "5001/udp": {}}
    assert b["HostConfig"]["PortBindings"]["80/tcp"] == [{"HostIp": "", "HostPort": "8080"},
                                                         {"HostIp": "", "HostPort": "9090"}]
    assert b["HostConfig"]["PublishAllPorts"] is True


def test_volumes_and_mounts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    b = body("-v", "/data", "-v", "vol1:/v:ro", "-v", "/host:/ctr", "-v", "./rel:/r", "busybox")
    assert b["Volumes"] == {"/data": {}}
    assert b["HostConfig"]["Binds"] == ["vol1:/v:ro", "/host:/ctr", f"{tmp_path}/rel:/r"]
    with pytest.raises(cs.SpecError):
        body("-v", "rel", "busybox")
    m = cs.parse_mount("type=bind,source=/a,target=/b,readonly,bind-propagation=rslave")
    assert m == {"Type": "bind", "Source": "/a", "Target": "/b", "ReadOnly": True,
                 "BindOptions": {"Propagation": "rslave"}}
    m = cs.parse_mount('type=volume,src=v,dst=/d,volume-opt=o=1,volume-nocopy,"volume-label=a=b"')
    assert m["VolumeOptions"] == {"DriverConfig": {"Options": {"o": "1"}}, "NoCopy": True,
                                  "Labels": {"a": "b"}}
    m = cs.parse_mount("type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=1777")
    assert m["TmpfsOptions"] == {"SizeBytes": 1 << 20, "Mode": 0o1777}
    assert cs.parse_mount("target=/x,ro=false") == {"Type": "volume", "Target": "/x", "ReadOnly": False}
    for bad in ("type=bind,target=/x", "source=/a", "type=tmpfs,target=/t,bind-propagation=shared",
                "type=weird,target=/x", "target=/x,bogus=1"):
        with pytest.raises(cs.SpecError):
            cs.parse_mount(bad)


def test_security_caps_tmpfs_ulimits_restart_devices(tmp_path):
    prof = tmp_path / "seccomp.json"
    prof.write_text('{\n  "defaultAction": "SCMP_ACT_ALLOW"\n}\n')
    b = body("--cap-add", "net_admin", "--cap-drop", "ALL", "--cap-add", "CAP_CHOWN",
             "--security-opt", f"seccomp={prof}", "--security-opt", "no-new-privileges",
             "--security-opt", "seccomp=unconfined", "--tmpfs", "/run:rw,size=64m", "--tmpfs", "/t",
             "--ulimit", "nofile=1024:2048", "--ulimit", "nproc=64", "--restart", "on-failure:3",
             "--device", "/dev/fuse", "--device", "/dev/sda:/dev/xvda:r", "--read-only", "--init",
             "--privileged", "--sysctl", "net.core.somaxconn=1024", "--add-host", "db:10.0.0.2",
             "--add-host", "x=1.2.3.4", "--pid", "host", "--ipc", "container:abc", "--uts", "host",
             "--group-add", "audio", "--log-driver", "json-file", "--log-opt", "max-size=1m",
             "--dns", "1.1.1.1", "--dns-search", "example.com", "busybox")
    h = b["HostConfig"]
    assert h["CapAdd"] == ["CAP_NET_ADMIN", "CAP_CHOWN"] and h["CapDrop"] == ["ALL"]
    assert h["SecurityOpt"] == ['seccomp={"defaultAction":"SCMP_ACT_ALLOW"}', "no-new-privileges",
                                "seccomp=unconfined"]
    assert h["Tmpfs"] == {"/run": "rw,size=64m", "/t": ""}
    assert h["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048},
                            {"Name": "nproc", "Soft": 64, "Hard": 64}]
    assert h["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert h["Devices"] == [
        {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"},
        {"PathOnHost": "/dev/sda", "PathInContainer": "/dev/xvda", "CgroupPermissions": "r"}]
    assert h["ReadonlyRootfs"] and h["Init"] and h["Privileged"]
    assert h["Sysctls"] == {"net.core.somaxconn": "1024"}
    assert h["ExtraHosts"] == ["db:10.0.0.2", "x:1.2.3.4"]
    assert (h["PidMode"], h["IpcMode"], h["UTSMode"]) == ("host", "container:abc", "host")
    assert h["GroupAdd"] == ["audio"]
    assert h["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m"}}
    assert h["Dns"] == ["1.1.1.1"] and h["DnsSearch"] == ["example.com"]
    for bad in (["--restart", "sometimes"], ["--restart", "always:3"], ["--ulimit", "nofile=9:1"],
                ["--ulimit", "nofile"], ["--add-host", "nohost"], ["--device", "/dev/x:/y:rwz"],
                ["--sysctl", "novalue"]):
        with pytest.raises(cs.SpecError):
            body(*bad, "busybox")


def test_entrypoint_user_workdir_stop_and_health():
    b = body("--entrypoint", "/bin/sh", "-u", "1000:1000", "-w", "/tmp", "--stop-signal", "SIGINT",
             "--stop-timeout", "5", "--health-cmd", "true", "--health-interval", "1m30s",
             "--health-timeout", "500ms", "--health-retries", "2", "--health-start-period", "2s", "busybox")
    assert b["Entrypoint"] == ["/bin/sh"] and b["User"] == "1000:1000" and b["WorkingDir"] == "/tmp"
    assert b["StopSignal"] == "SIGINT" and b["StopTimeout"] == 5
    assert b["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 90 * 10**9,
                                "Timeout": 5 * 10**8, "StartPeriod": 2 * 10**9, "Retries": 2}
    assert body("--entrypoint", "", "busybox")["Entrypoint"] == [""]
    assert body("--no-healthcheck", "busybox")["Healthcheck"] == {"Test": ["NONE"]}
    with pytest.raises(cs.SpecError, match="conflicts"):
        body("--no-healthcheck", "--health-cmd", "true", "busybox")
    with pytest.raises(cs.SpecError, match="invalid duration"):
        body("--health-interval", "10", "busybox")


def test_network_endpoint_settings():
    b = body("--network", "net1", "--network-alias", "web", "--ip", "10.1.0.5", "--mac-address",
             "92:d0:c6:0a:29:33", "busybox")
    assert b["HostConfig"]["NetworkMode"] == "net1"
    assert b["NetworkingConfig"]["EndpointsConfig"] == {"net1": {
        "Aliases": ["web"], "IPAMConfig": {"IPv4Address": "10.1.0.5"}, "MacAddress": "92:d0:c6:0a:29:33"}}
    with pytest.raises(cs.SpecError):
        body("--network", "host", "--network-alias", "x", "busybox")
