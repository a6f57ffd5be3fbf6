"""Runtime state records: atomic save/load, ids, status from the kernel, the sync channel."""

from __future__ import annotations

import os

import pytest

from berth.errors import AlreadyExists, InvalidArgument, NotFound
from berth.runtime import state
from berth.runtime.sync import ChildError, pair


def test_create_save_load_remove(tmp_path):
    root = str(tmp_path / "root")
    d = state.create_dir(root, "c1")
    with pytest.raises(AlreadyExists):
        state.create_dir(root, "c1")
    c = state.Container(root, "c1", {"pid": os.getpid(), "config": {"ociVersion": "1.1.0"},
                                     "bundle": "/b", "created": state.rfc3339()})
    c.save()
    assert not [n for n in os.listdir(d) if n.startswith(".")]   # no temp file left
    got = state.load(root, "c1")
    assert got.pid == os.getpid() and got.status() == "running"   # alive, no fifo, not frozen
    os.mkfifo(got.fifo)
    assert got.status() == "created"
    assert got.oci_state()["status"] == "created" and got.oci_state()["pid"] == os.getpid()
    assert state.list_ids(root) == ["c1"]
    state.remove_dir(root, "c1")
    assert state.list_ids(root) == []
    with pytest.raises(NotFound):
        state.load(root, "c1")


def test_dead_or_reused_pid_is_stopped(tmp_path):
    root = str(tmp_path)
    state.create_dir(root, "c2")
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    c = state.Container(root, "c2", {"pid": pid, "config": {}})
    assert c.status() == "stopped" and c.oci_state()["pid"] == 0
    c = state.Container(root, "c2", {"pid": os.getpid(), "start_time": 1, "config": {}})
    assert c.status() == "stopped"   # same pid, other start time: not our process


def test_corrupt_state_file(tmp_path):
    root = str(tmp_path)
    d = state.create_dir(root, "c3")
    with open(os.path.join(d, state.STATE_FILE), "w") as f:
        f.write("{not json")
    with pytest.raises(InvalidArgument, match="corrupt"):
        state.load(root, "c3")


def test_channel_messages_and_errors():
    parent, child = pair()
    try:
        child.send("pid 42")
        child.send("error 127 exec: \"x\": not found")
        assert parent.expect("pid") == "42"
        with pytest.raises(ChildError) as ei:
            parent.expect("ready")
        assert ei.value.code == 127 and "not found" in str(ei.value)
        child.close()
        with pytest.raises(ChildError, match="exited unexpectedly"):
            parent.expect("ready")
    finally:
        parent.close()
        child.close()


def test_hooks_state_on_stdin_env_and_failures(tmp_path):
    import json
    import time

    from berth.runtime import hooks

    out = tmp_path / "state.json"
    hooks.run([{"path": "/bin/sh", "args": ["sh", "-c", f'cat > {out}; echo "$FOO" >> {out}.env'],
                "env": ["FOO=bar"]}], {"id": "c", "pid": 7}, "prestart")
    assert json.loads(out.read_text()) == {"id": "c", "pid": 7}
    assert (tmp_path / "state.json.env").read_text() == "bar\n"
    with pytest.raises(hooks.HookError, match="prestart hook #1 .* status 3"):
        hooks.run([{"path": "/bin/true"}, {"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}], {},
                  "prestart")
    t = time.monotonic()
    with pytest.raises(hooks.HookError, match="timed out"):
        hooks.run([{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}], {}, "poststop")
    assert time.monotonic() - t < 10
    with pytest.raises(hooks.HookError, match="127"):
        hooks.run([{"path": "/no/such/hook"}], {}, "poststart")
