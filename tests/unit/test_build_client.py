"""The build plumbing outside the builder: the client's context tar, the engine's body reader and
option mapping, the tail-completing context reader, the CLI's table maths and flag parsing."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
import threading

import pytest

from berth.build.context import _TarTail
from berth.client import build as cb
from berth.engine.build_ops import BodyReader, _build_kwargs, _registry_base
from berth.errors import InvalidArgument, NotFound


def _tree(root, files: dict[str, str]) -> str:
    for name, text in files.items():
        p = os.path.join(str(root), name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
    return str(root)


def _members(chunks) -> dict[str, tarfile.TarInfo]:
    data = b"".join(chunks)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name: m for m in tf.getmembers()}


# -- the context tar -------------------------------------------------------------------------------
def test_context_tar_applies_dockerignore_with_exceptions(tmp_path):
    ctx = _tree(tmp_path, {
        "Dockerfile": "FROM x\n",
        ".dockerignore": "secret\n**/*.log\n!keep/**/*.log\nDockerfile\nnode_modules\n",
        "a.txt": "a", "secret/k": "s", "sub/x.log": "l", "keep/deep/y.log": "y", "keep/z.txt": "z",
        "node_modules/m/i.js": "m",
    })
    os.symlink("/etc/passwd", os.path.join(ctx, "link"))
    m = _members(cb.context_tar(ctx, keep=("Dockerfile", ".dockerignore")))
    assert set(m) == {"Dockerfile", ".dockerignore", "a.txt", "link", "sub", "keep", "keep/deep",
                      "keep/deep/y.log", "keep/z.txt"}
    assert m["link"].issym() and m["link"].linkname == "/etc/passwd"
    assert all(x.uid == 0 and x.gid == 0 for x in m.values())
    assert m["keep"].isdir() and m["keep/deep/y.log"].size == 1


def test_context_tar_excluded_dir_is_sent_only_for_an_excepted_child(tmp_path):
    ctx = _tree(tmp_path, {"d/a": "1", "d/b": "2", "e/x/y": "3", ".dockerignore": "d\ne\n!d/b\n"})
    names = [m for m in _members(cb.context_tar(ctx))]
    assert names.count("d") == 1 and "d/b" in names and "d/a" not in names
    assert not any(n.startswith("e") for n in names)


def test_context_tar_hardlinks_large_files_and_extra(tmp_path):
    ctx = _tree(tmp_path, {"big": "x" * (3 << 20), "f": "data"})
    os.link(os.path.join(ctx, "f"), os.path.join(ctx, "g"))
    chunks = list(cb.context_tar(ctx, extra={".dockerfile.abc": b"FROM y\n"}))
    assert max(len(c) for c in chunks) <= (1 << 20) + (1 << 20) + 4096  # streamed, not one buffer
    m = _members(chunks)
    assert m["big"].size == 3 << 20
    assert m["g"].islnk() and m["g"].linkname == "f"
    assert m[".dockerfile.abc"].size == 7
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tf:
        ign = tf.extractfile(".dockerignore").read()
    assert b".dockerfile.abc" in ign  # added to the ignore file, so COPY . skips it


def test_context_tar_missing_dir(tmp_path):
    with pytest.raises(NotFound, match="unable to prepare context"):
        list(cb.context_tar(str(tmp_path / "nope")))


def test_dockerfile_in_context(tmp_path, monkeypatch):
    ctx = _tree(tmp_path / "ctx", {"Dockerfile": "", "sub/Other": ""})
    _tree(tmp_path, {"outside.df": ""})
    assert cb.dockerfile_in_context(ctx, None) == ("Dockerfile", None)
    monkeypatch.chdir(ctx)
    assert cb.dockerfile_in_context(ctx, "sub/Other") == ("sub/Other", None)
    name, outside = cb.dockerfile_in_context(ctx, str(tmp_path / "outside.df"))
    assert name is None and outside == os.path.realpath(tmp_path / "outside.df")
    with pytest.raises(NotFound):
        cb.dockerfile_in_context(ctx, "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NotFound):
        cb.dockerfile_in_context(str(empty), None)


def test_is_archive_and_single_file_tar():
    tar = cb.single_file_tar("Dockerfile", b"FROM busybox\n")
    assert cb.is_archive(tar[:512])
    assert cb.is_archive(b"\x1f\x8b\x08\x00")
    assert not cb.is_archive(b"FROM busybox\nRUN true\n")
    m = _members([tar])
    assert m["Dockerfile"].size == 13


# -- engine side -----------------------------------------------------------------------------------
def test_body_reader_backpressure_and_eof():
    async def main():
        r = BodyReader(asyncio.get_running_loop())
        chunks = [bytes([i]) * 10000 for i in range(100)]

        async def source():
            for c in chunks:
                yield c

        got = []

        def consume():
            buf = io.BufferedReader(r, 4096)
            while True:
                b = buf.read(3000)
                if not b:
                    return
                got.append(b)

        t = threading.Thread(target=consume)
        t.start()
        await r.feed(source())
        await asyncio.to_thread(t.join)
        assert b"".join(got) == b"".join(chunks)

    asyncio.run(main())


def test_body_reader_abandon_drains_and_error_propagates():
    async def main():
        loop = asyncio.get_running_loop()
        r = BodyReader(loop)
        sent = 0

        async def source():
            nonlocal sent
            for _ in range(200):  # far more than the queue holds
                sent += 1
                yield b"x" * 1000

        feeder = loop.create_task(r.feed(source()))
        await asyncio.sleep(0.05)
        assert not feeder.done()  # blocked: nobody reads
        r.abandon()
        await asyncio.wait_for(feeder, 5)
        assert sent == 200

        r2 = BodyReader(loop)

        async def broken():
            yield b"abc"
            raise InvalidArgument("unexpected end of request body")

        await r2.feed(broken())
        assert r2.read(3) == b"abc"
        with pytest.raises(OSError, match="unexpected end"):
            r2.read(1)

    asyncio.run(main())


def test_body_reader_kill_unblocks_the_reader():
    async def main():
        r = BodyReader(asyncio.get_running_loop())
        err: list[BaseException] = []

        def consume():
            try:
                r.read(10)
            except OSError as e:
                err.append(e)

        t = threading.Thread(target=consume)
        t.start()
        await asyncio.sleep(0.05)
        r.kill()
        await asyncio.to_thread(t.join, 5)
        assert not t.is_alive() and err and "went away" in str(err[0])

    asyncio.run(main())


def test_build_kwargs_mapping_and_refusals():
    kw = _build_kwargs({"t": ["a:1", "b"], "buildargs": {"A": "1", "B": None}, "labels": {"l": None},
                        "nocache": True, "rm": True, "forcerm": False, "q": True, "dockerfile": "x/D",
                        "target": "t", "networkmode": None})
    assert kw["tags"] == ["a:1", "b"] and kw["build_args"] == {"A": "1"} and kw["labels"] == {"l": ""}
    assert kw["network"] == "default" and kw["no_cache"] and kw["quiet"] and kw["dockerfile"] == "x/D"
    with pytest.raises(InvalidArgument, match="remote"):
        _build_kwargs({"remote": "https://github.com/x/y.git"})
    with pytest.raises(InvalidArgument, match="network mode"):
        _build_kwargs({"networkmode": "container:abc"})
    with pytest.raises(InvalidArgument, match="squash"):
        _build_kwargs({"squash": True})
    with pytest.raises(InvalidArgument, match="platform"):
        _build_kwargs({"platform": "linux/s390x"})


def test_tar_tail_completes_a_tar_cut_after_the_last_data():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("f")
        ti.size = 5
        tf.addfile(ti, io.BytesIO(b"hello"))
    whole = buf.getvalue()
    cut = whole[:512 + 5]  # header + data, no padding, no end-of-archive blocks
    fixed = _TarTail(io.BytesIO(cut)).read()
    assert len(fixed) % 512 == 0 and fixed.startswith(cut)
    with tarfile.open(fileobj=io.BytesIO(fixed)) as tf:
        assert tf.extractfile("f").read() == b"hello"


def test_until_time():
    from berth.engine.build_ops import until_time

    assert until_time("24h", now=100000.0) == 100000.0 - 86400
    assert until_time("1h30m", now=10000.0) == 10000.0 - 5400
    assert until_time("1500ms", now=10.0) == 8.5
    assert until_time("1700000000") == 1700000000.0
    assert until_time("2024-01-01T00:00:00Z") == 1704067200.0
    with pytest.raises(InvalidArgument):
        until_time("yesterday")


def test_registry_base():
    assert _registry_base("") == ["https://registry-1.docker.io"]
    assert _registry_base("https://index.docker.io/v1/") == ["https://registry-1.docker.io"]
    assert _registry_base("localhost:5000") == ["https://localhost:5000", "http://localhost:5000"]
    assert _registry_base("reg.example.com") == ["https://reg.example.com"]
    assert _registry_base("http://reg.example.com:80/") == ["http://reg.example.com:80"]


# -- CLI -------------------------------------------------------------------------------------------
def test_cli_build_args_and_df_rows():
    from berth.cli.commands.build import build_args, labels
    from berth.cli.commands.builder_prune import _ram_bytes
    from berth.cli.commands.system_df import rows

    assert build_args(["A=1", "B", "C"], env={"B": "env"}) == {"A": "1", "B": "env", "C": None}
    assert labels(["a=b", "c"]) == {"a": "b", "c": ""}
    assert _ram_bytes("10k") == 10240 and _ram_bytes("1.5GB") == 3 << 29 and _ram_bytes("512") == 512
    df = {
        "LayersSize": 1000,
        "Images": [{"Size": 600, "SharedSize": 200, "Containers": 1}, {"Size": 400, "SharedSize": 200,
                                                                        "Containers": 0}],
        "Containers": [{"State": "running", "SizeRw": 10}, {"State": "exited", "SizeRw": 30}],
        "Volumes": [{"UsageData": {"Size": 50, "RefCount": 0}}, {"UsageData": {"Size": 50, "RefCount": 2}}],
        "BuildCache": [{"Size": 100, "Shared": False, "InUse": False},
                       {"Size": 7, "Shared": True, "InUse": False},
                       {"Size": 20, "Shared": False, "InUse": True}],
    }
    r = [(x.Type, x.TotalCount, x.Active, x.Size, x.Reclaimable) for x in rows(df)]
    assert r == [("Images", "2", "1", "1kB", "600B (60%)"),
                 ("Containers", "2", "1", "40B", "30B (75%)"),
                 ("Local Volumes", "2", "1", "100B", "50B (50%)"),
                 ("Build Cache", "3", "1", "120B", "100B")]


def test_step_timer_marks_step_ends_only():
    from berth.cli.commands.build import StepTimer

    now = [10.0]
    t = StepTimer(clock=lambda: now[0])
    assert t(" ---> 0123456789ab\n") == " ---> 0123456789ab\n"  # no step started
    assert t("Step 1/2 : FROM busybox\n") == "Step 1/2 : FROM busybox\n"
    now[0] = 10.25
    assert t(" ---> Using cache\n") == " ---> Using cache\n"
    assert t("some RUN output\n") == "some RUN output\n"
    assert t(" ---> 0123456789ab\n") == " ---> 0123456789ab  0.25s\n"
    assert t(" ---> Removed intermediate container 0123456789ab\n").endswith("ab\n")


def test_cache_prune_until(tmp_path):
    from berth.build.cache import BuildCache
    from berth.metadata.db import Database

    db = Database(str(tmp_path / "m.db"))
    c = BuildCache(db)
    c.put("k-old", "sha256:old")
    c.put("k-new", "sha256:new")
    with db.transaction() as conn:
        conn.execute("UPDATE build_cache SET created=? WHERE key=?", (1000.0, "k-old"))
    assert c.prune(until=2000.0) == 1
    assert c.get("k-old") is None and c.get("k-new") == "sha256:new"
    assert c.prune() == 1 and len(c) == 0
    db.close()
