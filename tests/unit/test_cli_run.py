"""run/create/start/exec against the API server with the fake engine (in process; output on fds)."""

from __future__ import annotations

import pytest

from berth.cli.main import main
from tests.unit.fake_engine import FakeEngine, ServerThread


@pytest.fixture
def srv(tmp_path, monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    with ServerThread(FakeEngine(), str(tmp_path / "api.sock")) as s:
        monkeypatch.setenv("BERTH_HOST", s.url)
        yield s


def berth(capfd, *args):
    rc = main(list(args))
    out, err = capfd.readouterr()
    return rc, out, err


def test_run_foreground_rm_and_exit_status(srv, capfd):
    assert berth(capfd, "run", "--rm", "busybox", "echo", "hi", "there") == (0, "hi there\n", "")
    assert srv.engine.containers == {}  # AutoRemove, answered by wait?condition=removed
    rc, out, err = berth(capfd, "run", "busybox", "exit", "3")
    assert (rc, out) == (3, "")
    rc, out, err = berth(capfd, "run", "--name", "e", "busybox", "err", "oops")
    assert (rc, out, err) == (0, "", "oops\n")


def test_run_detached_prints_the_id(srv, capfd):
    rc, out, _ = berth(capfd, "run", "-d", "--name", "bg", "-h", "host1", "busybox", "sleep", "5")
    cid = out.strip()
    assert rc == 0 and len(cid) == 64
    cfg = srv.engine.containers[cid].config
    assert cfg["Hostname"] == "host1" and cfg["AttachStdout"] is False and cfg["Cmd"] == ["sleep", "5"]
    rc, _, err = berth(capfd, "run", "--name", "bg", "busybox", "true")
    assert rc == 125
    assert err.startswith('berth: Error response from daemon: Conflict. The container name "/bg"')
    assert err.endswith("\n\nRun 'berth run --help' for more information\n")


def test_run_missing_image_tries_a_pull(srv, capfd):
    rc, _, err = berth(capfd, "run", "nosuch", "true")
    assert rc == 125
    assert err.startswith("Unable to find image 'nosuch:latest' locally\n")
    assert "berth: Error response from daemon:" in err


def test_run_flag_errors_exit_125(srv, capfd):
    rc, _, err = berth(capfd, "run", "-p", "1:2:3:4", "busybox")
    assert rc == 125 and "invalid port format" in err
    rc, _, err = berth(capfd, "run", "-d", "-a", "stdout", "busybox")
    assert rc == 125 and "Conflicting options: -a and -d" in err
    rc, _, err = berth(capfd, "run", "--bogus", "busybox")
    assert rc == 125 and "unknown flag: --bogus" in err


def test_create_then_start_attach(srv, capfd):
    rc, out, _ = berth(capfd, "create", "--name", "c1", "-e", "A=1", "busybox", "echo", "from", "start")
    cid = out.strip()
    assert rc == 0 and srv.engine.containers[cid].config["Env"] == ["A=1"]
    assert berth(capfd, "start", "-a", "c1") == (0, "from start\n", "")
    rc, out, err = berth(capfd, "start", "c1", "nosuch")
    assert rc == 1 and out == "c1\n" and "Error: failed to start containers: nosuch" in err


def test_exec_exit_codes(srv, capfd):
    berth(capfd, "run", "-d", "--name", "x", "busybox", "sleep", "5")
    assert berth(capfd, "exec", "x", "echo", "in", "exec") == (0, "in exec\n", "")
    assert berth(capfd, "exec", "x", "exit", "4")[0] == 4
    rc, _, err = berth(capfd, "exec", "x", "nosuch")
    assert rc == 127 and "not found" in err
    assert berth(capfd, "exec", "-d", "x", "echo", "bg") == (0, "", "")
