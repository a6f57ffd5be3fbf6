"""The Dockerfile builder end to end: real builds through a tmp Engine with the busybox image."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pathlib
import tarfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from berth.config import Config
from tests.helpers import mounts_under

pytestmark = pytest.mark.root


@pytest.fixture(params=["overlay", "vfs"])
def engine(request, tmp_path):
    from berth.engine.engine import Engine
    from berth.images.bootstrap import busybox_image

    tag = uuid.uuid4().hex[:8]
    cfg = Config(
        data_root=str(tmp_path / "data"),
        exec_root=str(tmp_path / "exec"),
        runtime="berth",
        runtime_root=str(tmp_path / "rt"),
        cgroup_parent=f"berth-test-{tag}",
        socket=str(tmp_path / "s.sock"),
        storage_driver=request.param,
    )
    eng = Engine(cfg)
    busybox_image(eng.images)
    yield eng

    async def cleanup():
        for c in list(eng.containers.all()):
            try:
                await eng.remove(c.id, force=True)
            except Exception:  # noqa: BLE001
                pass
        await eng.shutdown()

    asyncio.run(cleanup())
    for base in ("/sys/fs/cgroup/" + d for d in os.listdir("/sys/fs/cgroup")):
        p = os.path.join(base, cfg.cgroup_parent)
        if os.path.isdir(p):
            for sub in os.listdir(p):
                if os.path.isdir(os.path.join(p, sub)):
                    os.rmdir(os.path.join(p, sub))
            os.rmdir(p)
    assert mounts_under(str(tmp_path)) == []
    left = [s.key for s in eng.snapshotter.walk() if s.key.startswith("build-")]
    assert left == [], f"build snapshots left behind: {left}"


class Result:
    def __init__(self, msgs: list[dict]):
        self.msgs = msgs
        self.text = "".join(m.get("stream", "") for m in msgs)
        errs = [m for m in msgs if "error" in m]
        self.error = errs[0]["error"] if errs else None
        self.detail = errs[0]["errorDetail"] if errs else None
        ids = [m["aux"]["ID"] for m in msgs if "aux" in m]
        self.id = ids[-1] if ids else None

    @property
    def cache_hits(self) -> int:
        return self.text.count(" ---> Using cache\n")


def build(eng, context, **kw) -> Result:
    from berth.build import build as _build

    async def go():
        return [m async for m in _build(eng, context, **kw)]

    return Result(asyncio.run(go()))


def write(ctx: pathlib.Path, files: dict[str, str | bytes]) -> pathlib.Path:
    ctx.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        p = ctx / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
    return ctx


class _IO:
    tty = False
    detached = False

    def __init__(self):
        self.out = {1: b"", 2: b""}

    async def read_stdin(self):
        return b""

    async def write(self, stream, data):
        self.out[stream] += data


def run_image(eng, image: str, cmd: list[str]) -> tuple[int, str]:
    """Run cmd in a container of image; (exit code, stdout)."""

    async def go():
        cid = eng.create_container(None, {"Image": image, "Cmd": cmd, "Entrypoint": [],
                                          "HostConfig": {"NetworkMode": "none"}})["Id"]
        out = _IO()
        att = asyncio.create_task(eng.attach(cid, out, stdin=False, stdout=True, stderr=True, logs=False,
                                             stream=True))
        waiter = await eng.wait(cid, "next-exit")
        await asyncio.sleep(0.02)
        await eng.start(cid)
        res = await asyncio.wait_for(waiter, 20)
        await asyncio.wait_for(att, 10)
        await eng.remove(cid, force=True)
        return res["StatusCode"], out.out[1].decode()

    return asyncio.run(go())


def config(eng, ref: str) -> dict:
    return eng.images.read_config(eng.images.get(ref)).raw


def test_instructions_config_history_and_files(engine, tmp_path):
    ctx = write(tmp_path / "ctx", {
        "Dockerfile": """# syntax=docker/dockerfile:1
# a comment
ARG BASE=busybox
FROM ${BASE} AS base
ARG V=1.0
ENV APP=/app \\
    GREETING="hello world"
LABEL version=$V other="x y"
WORKDIR $APP
COPY --chmod=0700 a.sh ./
COPY --chown=daemon:daemon dir/ sub/
RUN echo "$GREETING" > greeting; \\
    ./a.sh > ran
RUN <<EOF
echo heredoc > /hd
EOF
COPY <<EOT /etc/made.conf
app=${APP}
EOT
EXPOSE 80 53/udp
VOLUME ["/data"]
USER daemon
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --retries=2 CMD true
SHELL ["/bin/sh", "-ec"]
ENTRYPOINT ["/bin/echo"]
CMD ["hi"]
""",
        "a.sh": "#!/bin/sh\necho ran-script\n",
        "dir/one": "1", "dir/nested/two": "2",
    })
    r = build(engine, str(ctx), tags=["t1:latest"], build_args={"V": "2.0"})
    assert r.error is None, r.text + str(r.msgs)
    assert "Step 1/19 : ARG BASE=busybox\n" in r.text and "Step 19/19 : CMD [\"hi\"]\n" in r.text
    assert "Successfully tagged t1:latest\n" in r.text and f"Successfully built {r.id[7:19]}\n" in r.text
    assert engine.images.get("t1").id == r.id
    raw = config(engine, "t1")
    c = raw["config"]
    assert "APP=/app" in c["Env"] and "GREETING=hello world" in c["Env"]
    assert c["Labels"] == {"version": "2.0", "other": "x y"}
    assert c["WorkingDir"] == "/app" and c["User"] == "daemon" and c["StopSignal"] == "SIGTERM"
    assert c["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}} and c["Volumes"] == {"/data": {}}
    assert c["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000, "Retries": 2}
    assert c["Entrypoint"] == ["/bin/echo"] and c["Cmd"] == ["hi"] and c["Shell"] == ["/bin/sh", "-ec"]
    hist = raw["history"]
    assert len(raw["rootfs"]["diff_ids"]) == sum(1 for h in hist if not h.get("empty_layer"))
    assert hist[-1]["created_by"] == '/bin/sh -c #(nop)  CMD ["hi"]' and hist[-1]["empty_layer"] is True
    assert any(h["created_by"].startswith("|1 V=2.0 /bin/sh -c echo") for h in hist)
    code, out = run_image(engine, "t1", ["sh", "-c", "cat greeting ran /hd /etc/made.conf; "
                                         "stat -c '%a %U %n' a.sh sub/one sub/nested/two; ls -a /etc"])
    assert code == 0
    assert "hello world\nran-script\nheredoc\napp=/app\n" in out
    assert "700 root a.sh\n" in out and "daemon sub/one" in out and "daemon sub/nested/two" in out
    assert "hosts" not in out.split("made.conf")[1]  # the runtime's mount points are not in the layers
    items = engine.images.history("t1")
    assert items[0]["Id"] == r.id and items[-1]["CreatedBy"].startswith("berth bootstrap")


def test_multistage_copy_from_and_target(engine, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": """
FROM busybox AS builder
RUN mkdir -p /out && echo built > /out/artifact && ln -s artifact /out/link
FROM busybox AS unused
RUN exit 1
FROM scratch
COPY --from=builder /out/ /
COPY --from=busybox /bin/busybox /bin/
COPY --from=0 /out/artifact /again
"""})
    r = build(engine, str(ctx), target="builder", tags=["stage1"])
    assert r.error is None, r.text
    assert "Step 2/2" in r.text and "RUN exit 1" not in r.text
    r2 = build(engine, str(ctx))
    assert r2.error is not None and "returned a non-zero code: 1" in r2.error  # every stage up to the last
    ctx2 = write(tmp_path / "ctx2", {"Dockerfile": """
FROM busybox AS builder
RUN mkdir -p /out && echo built > /out/artifact && ln -s artifact /out/link
FROM scratch
COPY --from=builder /out/ /
COPY --from=busybox /bin/busybox /bin/
COPY --from=0 /out/artifact /again
"""})
    r3 = build(engine, str(ctx2), tags=["ms"])
    assert r3.error is None, r3.text
    r4 = build(engine, str(ctx2))
    assert r4.id == r3.id and r4.cache_hits == 4  # scratch stages hit the cache too
    code, out = run_image(engine, "ms", ["/bin/busybox", "sh", "-c", "/bin/busybox cat /artifact /again; "
                                         "/bin/busybox readlink /link"])
    assert (code, out) == (0, "built\nbuilt\nartifact\n")
    assert len(config(engine, "ms")["rootfs"]["diff_ids"]) == 3


def test_cache_hits_and_invalidation(engine, tmp_path):
    from berth.engine.engine import Engine

    ctx = write(tmp_path / "ctx", {
        "Dockerfile": "FROM busybox\nARG X=1\nCOPY f /f\nRUN echo $X > /x\nCOPY g /g\nCMD [\"sh\"]\n",
        "f": "f1", "g": "g1"})
    first = build(engine, str(ctx))
    assert first.error is None and first.cache_hits == 0
    again = build(engine, str(ctx))
    assert again.id == first.id and again.cache_hits == 5
    # a changed file invalidates its COPY and everything after it
    (ctx / "g").write_text("g2")
    r = build(engine, str(ctx))
    assert r.cache_hits == 3 and r.id != first.id
    # a changed mode is a changed input
    os.chmod(ctx / "f", 0o600)
    r = build(engine, str(ctx))
    assert r.cache_hits == 1
    os.chmod(ctx / "f", 0o644)
    assert build(engine, str(ctx)).cache_hits == 5
    # a build arg in use invalidates RUN (and what follows); the same value again hits
    r = build(engine, str(ctx), build_args={"X": "2"})
    assert r.cache_hits == 2 and "Running in" in r.text
    assert build(engine, str(ctx), build_args={"X": "2"}).cache_hits == 5
    # a changed instruction text
    (ctx / "Dockerfile").write_text("FROM busybox\nARG X=1\nCOPY f /f\nRUN echo $X  > /x\nCOPY g /g\n"
                                    "CMD [\"sh\"]\n")
    assert build(engine, str(ctx)).cache_hits == 2
    # --no-cache
    r = build(engine, str(ctx), no_cache=True)
    assert r.cache_hits == 0 and r.error is None
    # the cache is in the database: another Engine on the same data root finds it
    other = Engine(engine.cfg)
    assert build(other, str(ctx)).cache_hits == 5
    asyncio.run(other.shutdown())


def test_onbuild_triggers(engine, tmp_path):
    parent = write(tmp_path / "p", {"Dockerfile": "FROM busybox\nONBUILD COPY data /data\n"
                                                  "ONBUILD RUN echo triggered > /trig\n"})
    r = build(engine, str(parent), tags=["parent"])
    triggers = config(engine, "parent")["config"]["OnBuild"]
    assert r.error is None and triggers == ["COPY data /data", "RUN echo triggered > /trig"]
    child = write(tmp_path / "c", {"Dockerfile": "FROM parent\nCMD [\"sh\"]\n", "data": "payload"})
    r = build(engine, str(child), tags=["child"])
    assert r.error is None, r.text
    assert "# Executing 2 build triggers\n" in r.text
    assert not config(engine, "child")["config"].get("OnBuild")
    assert run_image(engine, "child", ["cat", "/data", "/trig"]) == (0, "payloadtriggered\n")


def test_source_date_epoch_reproducible(engine, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nCOPY f /f\nRUN echo same > /out && mkdir /d\n"
                                                 "ENV A=b\n", "f": "x"})
    a = build(engine, str(ctx), no_cache=True, build_args={"SOURCE_DATE_EPOCH": "1700000000"})
    os.utime(ctx / "f", (1800000000, 1800000000))
    b = build(engine, str(ctx), no_cache=True, build_args={"SOURCE_DATE_EPOCH": "1700000000"})
    assert a.error is None and a.id == b.id
    raw = config(engine, a.id)
    assert raw["created"] == "2023-11-14T22:13:20Z"
    assert all(h["created"] == "2023-11-14T22:13:20Z" for h in raw["history"][2:])
    c = build(engine, str(ctx), no_cache=True)
    assert c.id != a.id


def test_hostile_contexts(engine, tmp_path):
    outside = tmp_path / "secret"
    outside.write_text("host secret")
    ctx = write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nCOPY ../secret /s\n", "ok": "ok"})
    r = build(engine, str(ctx))
    assert r.error and "outside the build context" in r.error
    # a symlink to a host path is copied as the link, never as the host file
    os.symlink(str(outside), ctx / "link")
    os.symlink("/etc", ctx / "etclink")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY link /link\nCOPY etclink /etclink\n")
    r = build(engine, str(ctx), tags=["links"])
    assert r.error is None, r.text
    code, out = run_image(engine, "links", ["sh", "-c",
                                            "readlink /link; readlink /etclink; cat /link 2>&1; true"])
    assert out.startswith(f"{outside}\n/etc\n") and "host secret" not in out
    # a path through a context symlink resolves inside the context, not the host
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY etclink/passwd /p\n")
    r = build(engine, str(ctx))
    assert r.error and "not found" in r.error
    # WORKDIR /proc/self/fd/N is made inside the image; nothing of the host shows there
    (ctx / "Dockerfile").write_text("FROM busybox\nWORKDIR /proc/self/fd/7\n"
                                    "RUN ls -a /proc/self/fd/7/ > /seen; "
                                    "cat ../../../../etc/hostname > /hn 2>/dev/null; true\n")
    r = build(engine, str(ctx), tags=["wd"], force_rm=True)
    if r.error is not None:  # the runtime refuses such a cwd: a clean failure
        assert "outside the container root" in r.error or "no such directory" in r.error
    else:
        code, out = run_image(engine, "wd", ["sh", "-c", "cat /seen; echo --; cat /hn"])
        assert "host secret" not in out and "metadata.db" not in out and "Dockerfile" not in out
    assert list(engine.containers.all()) == []
    # a hostile tar context is refused, nothing extracted outside
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("../escape")
        ti.size = 1
        tf.addfile(ti, io.BytesIO(b"x"))
    r = build(engine, buf.getvalue(), dockerfile=b"FROM busybox\n")
    assert r.error is not None
    assert not (pathlib.Path(engine.cfg.data_root) / "escape").exists()


def test_dockerignore_and_globs(engine, tmp_path):
    ctx = write(tmp_path / "ctx", {
        "Dockerfile": "FROM busybox\nCOPY . /ctx/\nCOPY *.txt /txt/\nCOPY d?r/*.md /md/\n",
        ".dockerignore": "**/*.log\nsecret*\n!secret-ok\nbuild\n",
        "a.txt": "a", "b.txt": "b", "x.log": "x", "deep/y/z.log": "z", "deep/keep": "k",
        "secret1": "s", "secret-ok": "ok", "build/out": "o", "dir/r.md": "md",
    })
    r = build(engine, str(ctx), tags=["ign"])
    assert r.error is None, r.text
    code, out = run_image(engine, "ign", ["sh", "-c", "cd /ctx && find . -type f | sort; ls /txt /md"])
    files = out.split()
    assert "./a.txt" in files and "./deep/keep" in files and "./secret-ok" in files
    assert not any(f.endswith(".log") or f == "./secret1" or f.startswith("./build") for f in files)
    assert "a.txt" in files and "b.txt" in files and "r.md" in files
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY x.log /\n")
    r = build(engine, str(ctx))
    assert r.error and "x.log" in r.error


def test_run_failure_exit_code_and_force_rm(engine, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo before; exit 3\n"})
    r = build(engine, str(ctx))
    assert r.detail == {"message": "The command '/bin/sh -c echo before; exit 3' returned a non-zero code: 3",
                        "code": 3}
    assert "before\n" in r.text
    kept = [c for c in engine.containers.all()]
    assert len(kept) == 1  # as Docker: a failed step's container stays unless force_rm
    asyncio.run(engine.remove(kept[0].id, force=True))
    r = build(engine, str(ctx), force_rm=True)
    assert r.detail["code"] == 3 and list(engine.containers.all()) == []


def test_limits_fork_bomb_flood_disk(engine, tmp_path):
    from berth.build import BuildLimits

    ctx = write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN i=0; while [ $i -lt 200 ]; do "
                                                 "sleep 30 & i=$((i+1)); done; wait\n"})
    r = build(engine, str(ctx), limits=BuildLimits(pids=20), force_rm=True)
    assert r.error is not None and "fork" in r.text.lower()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN yes flood\n")
    r = build(engine, str(ctx), limits=BuildLimits(max_output=200_000))
    assert r.error == "RUN output exceeded 200000 bytes"
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN while true; do cat /bin/busybox >> /big; done\n")
    r = build(engine, str(ctx), limits=BuildLimits(max_layer=8 << 20, poll=0.05))
    assert r.error is not None and "exceed" in r.error
    free = os.statvfs(engine.cfg.data_root)
    min_free = free.f_bavail * free.f_frsize - (16 << 20)
    r = build(engine, str(ctx), limits=BuildLimits(min_free=min_free, poll=0.05))
    assert r.error is not None and "free" in r.error
    assert list(engine.containers.all()) == []  # containers the builder stopped are removed


class _Files(BaseHTTPRequestHandler):
    body = b"downloaded payload\n"

    def do_GET(self):  # noqa: N802
        if self.path != "/files/payload.txt":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.send_header("Last-Modified", "Wed, 01 Jan 2020 00:00:00 GMT")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *a):
        pass


def test_add_archive_and_url(engine, tmp_path):
    import hashlib

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        ti = tarfile.TarInfo("pkg/inside.txt")
        ti.size = 6
        tf.addfile(ti, io.BytesIO(b"inside"))
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/files/payload.txt"
        good = "sha256:" + hashlib.sha256(_Files.body).hexdigest()
        df = f"FROM busybox\nADD a.tar.gz /opt/\nADD --checksum={good} {url} /dl/\n"
        ctx = write(tmp_path / "ctx", {"a.tar.gz": buf.getvalue(), "Dockerfile": df})
        r = build(engine, str(ctx), tags=["add"])
        assert r.error is None, r.text
        code, out = run_image(engine, "add", ["sh", "-c", "cat /opt/pkg/inside.txt; echo; "
                                              "cat /dl/payload.txt; stat -c %a /dl/payload.txt"])
        assert out == "inside\ndownloaded payload\n600\n"
        (ctx / "Dockerfile").write_text(f"FROM busybox\nADD --checksum=sha256:{'0' * 64} {url} /dl/\n")
        r = build(engine, str(ctx))
        assert r.error and "checksum mismatch" in r.error
    finally:
        srv.shutdown()
        srv.server_close()


def test_tar_context_dockerfile_bytes_and_outside(engine, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in (("sub/Dockerfile.app", b"FROM busybox\nCOPY hello /hello\n"), ("hello", b"hi")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    r = build(engine, buf, dockerfile="sub/Dockerfile.app", tags=["fromtar"])
    assert r.error is None, r.text
    assert run_image(engine, "fromtar", ["cat", "/hello"]) == (0, "hi")
    r = build(engine, buf.getvalue(), dockerfile=b"FROM busybox\nCOPY hello /h2\n")
    assert r.error is None
    outside = tmp_path / "Dockerfile.out"
    outside.write_text("FROM busybox\nLABEL where=outside\n")
    ctx = write(tmp_path / "ctx", {"x": "1"})
    r = build(engine, str(ctx), dockerfile=outside, tags=["outside"], labels={"extra": "1"})
    assert r.error is None
    assert config(engine, "outside")["config"]["Labels"] == {"where": "outside", "extra": "1"}
    r = build(engine, str(ctx), dockerfile="missing")
    assert r.error and "Cannot locate specified Dockerfile" in r.error


def test_network_none_by_default_and_host(engine, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN tail -n +3 /proc/net/dev | wc -l > /n\n"})
    r = build(engine, str(ctx), tags=["netnone"])
    assert r.error is None
    assert run_image(engine, "netnone", ["cat", "/n"])[1].strip() == "1"  # lo only
    r = build(engine, str(ctx), tags=["nethost"], network="host", no_cache=True)
    assert r.error is None, r.text + str(r.error)
    # the host's interfaces (other tests may add or remove some meanwhile: more than lo is enough)
    assert int(run_image(engine, "nethost", ["cat", "/n"])[1].strip()) >= 2


def test_quiet_and_bad_input(engine, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nENV A=1\n"})
    r = build(engine, str(ctx), quiet=True)
    streams = [m["stream"] for m in r.msgs if "stream" in m]
    assert streams == [r.id + "\n"]
    for df, msg in ((b"FROM busybox\nFOO bar\n", "unknown instruction"),
                    (b"RUN true\n", "no build stage"),
                    (b"FROM nosuchimage\n", "No such image"),
                    (b"FROM busybox\nCOPY missing /x\n", "not found")):
        r = build(engine, str(ctx), dockerfile=df)
        assert r.error and msg in r.error, (df, r.error)
    r = build(engine, str(ctx), target="nope")
    assert r.error and "build target nope" in r.error
    r = build(engine, str(ctx), build_args={"UNUSED": "1"})
    assert "[Warning] One or more build-args [UNUSED] were not consumed" in r.text
    assert json.dumps(r.msgs)


def test_proxy_args_and_stage_args(engine, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": """ARG G=global
FROM busybox
ARG G
ARG LOCAL=l
ENV LOCAL=from-env
RUN echo "$HTTP_PROXY $G $LOCAL" > /seen
"""})
    r = build(engine, str(ctx), tags=["px"], build_args={"HTTP_PROXY": "http://127.0.0.1:9"})
    assert r.error is None and "were not consumed" not in r.text
    assert run_image(engine, "px", ["cat", "/seen"]) == (0, "http://127.0.0.1:9 global from-env\n")
    hist = json.dumps(config(engine, "px")["history"])
    assert "127.0.0.1:9" not in hist and "|2 G=global LOCAL=l /bin/sh -c" in hist
    # a proxy value is not a cache input
    r = build(engine, str(ctx), build_args={"HTTP_PROXY": "http://127.0.0.1:10"})
    assert r.cache_hits == 4


def test_client_gone_mid_run_leaves_nothing(engine, tmp_path):
    from berth.build import build as _build

    ctx = write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo started; sleep 60\n"})

    async def go():
        gen = _build(engine, str(ctx))
        async for m in gen:
            if m.get("stream") == "started\n":
                break
        await gen.aclose()
        await asyncio.sleep(0.1)

    asyncio.run(asyncio.wait_for(go(), 30))
    assert list(engine.containers.all()) == []
