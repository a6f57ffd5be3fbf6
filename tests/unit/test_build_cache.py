"""Build cache keys, the cache table, context content hashes, and the history/messages of a
metadata-only build over a real image store (no root, no containers)."""

from __future__ import annotations

import asyncio
import os
import types

import pytest

from berth.build.cache import BuildCache, cache_key
from berth.build.context import BuildContext, clean_source
from berth.errors import InvalidArgument


def test_cache_key_changes_with_each_input():
    base = cache_key("sha256:p", "RUN x", {"A": "1"}, "c1", {"chown": ""})
    assert base == cache_key("sha256:p", "RUN x", {"A": "1"}, "c1", {"chown": ""})
    others = [
        cache_key("sha256:q", "RUN x", {"A": "1"}, "c1", {"chown": ""}),   # parent
        cache_key("sha256:p", "RUN y", {"A": "1"}, "c1", {"chown": ""}),   # instruction text
        cache_key("sha256:p", "RUN x", {"A": "2"}, "c1", {"chown": ""}),   # build arg value
        cache_key("sha256:p", "RUN x", {"A": "1", "B": ""}, "c1", {"chown": ""}),  # an arg more
        cache_key("sha256:p", "RUN x", {"A": "1"}, "c2", {"chown": ""}),   # content
        cache_key("sha256:p", "RUN x", {"A": "1"}, "c1", {"chown": "1:1"}),  # flags
        cache_key("", "RUN x", {"A": "1"}, "c1", {"chown": ""}),           # scratch
    ]
    assert len({base, *others}) == len(others) + 1
    assert cache_key("p", "t", {"A": "1", "B": "2"}) == cache_key("p", "t", {"B": "2", "A": "1"})


def test_cache_table(tmp_path):
    from berth.metadata.db import Database

    db = Database(str(tmp_path / "m.db"))
    c = BuildCache(db)
    BuildCache(db)  # migrating twice is harmless
    assert c.get("k") is None
    c.put("k", "sha256:1")
    c.put("k", "sha256:2")
    assert c.get("k") == "sha256:2" and len(c) == 1
    c.drop("k")
    assert c.get("k") is None
    c.put("a", "x")
    c.put("b", "y")
    assert c.prune() == 2 and len(c) == 0


def _ctx(tmp_path, files: dict[str, str]) -> BuildContext:
    root = tmp_path / "ctx"
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(data)
    return BuildContext.from_dir(str(root))


def test_content_hash_inputs(tmp_path):
    ctx = _ctx(tmp_path, {"d/a": "1", "d/b": "2", ".dockerignore": "d/ignored\n", "d/ignored": "x"})
    try:
        def h() -> str:
            return ctx.tree.content_hash(ctx.tree.select("d"))

        first = h()
        assert [s.dest for s in ctx.tree.select("d")] == ["", "a", "b"]  # the ignored file is left out
        os.utime(tmp_path / "ctx/d/a", (1, 1))
        assert h() == first                        # mtime is not an input
        (tmp_path / "ctx/d/ignored").write_text("changed")
        assert h() == first                        # neither are ignored files
        (tmp_path / "ctx/d/a").write_text("changed")
        second = h()
        assert second != first                     # content is
        os.chmod(tmp_path / "ctx/d/a", 0o600)
        assert h() != second                       # and mode
        (tmp_path / "ctx/d/c").write_text("")
        assert len({first, second, h()}) == 3      # and the set of files
        if os.geteuid() == 0:
            before = h()
            os.chown(tmp_path / "ctx/d/c", 1, 1)
            assert h() != before                   # and ownership
    finally:
        ctx.close()


def test_sources_stay_inside_the_context(tmp_path):
    for bad in ("../x", "a/../../x", ".."):
        with pytest.raises(InvalidArgument, match="outside the build context"):
            clean_source(bad)
    assert clean_source("/a/./b/") == "a/b" and clean_source(".") == "" and clean_source("/../x") == "x"
    ctx = _ctx(tmp_path, {"a": "1"})
    os.symlink("/etc", tmp_path / "ctx/etc")
    try:
        from berth.errors import NotFound

        with pytest.raises(NotFound):
            ctx.tree.select("etc/passwd")   # resolved inside the context: no such file
        [link] = ctx.tree.select("etc")
        assert ctx.tree.readlink(link.src) == "/etc"
    finally:
        ctx.close()


def _engine(tmp_path):
    from berth.content import ContentStore
    from berth.images.store import ImageStore
    from berth.metadata.db import Database

    db = Database(str(tmp_path / "meta.db"))
    store = ImageStore(db, ContentStore(str(tmp_path / "content")))
    cfg = types.SimpleNamespace(data_root=str(tmp_path / "data"))
    return types.SimpleNamespace(images=store, db=db, cfg=cfg)


def _build(eng, ctx_dir, dockerfile: bytes, **kw) -> list[dict]:
    from berth.build import build

    async def go():
        return [m async for m in build(eng, ctx_dir, dockerfile=dockerfile, **kw)]

    return asyncio.run(go())


DF = b"""FROM --platform=$BUILDPLATFORM scratch
ENV PATH=/bin
LABEL a=b
CMD ["run"]
"""


def test_metadata_build_history_messages_and_cache(tmp_path):
    eng = _engine(tmp_path)
    (tmp_path / "ctx").mkdir()
    msgs = _build(eng, str(tmp_path / "ctx"), DF, tags=["meta:1"])
    text = "".join(m.get("stream", "") for m in msgs)
    [aux] = [m["aux"]["ID"] for m in msgs if "aux" in m]
    assert text.startswith("Step 1/4 : FROM --platform=$BUILDPLATFORM scratch\n"
                           "Step 2/4 : ENV PATH=/bin\n ---> ")
    assert text.endswith(f"Successfully built {aux[7:19]}\nSuccessfully tagged meta:1\n")
    raw = eng.images.read_config(eng.images.get("meta:1")).raw
    assert raw["rootfs"] == {"type": "layers", "diff_ids": []}
    assert [h["created_by"] for h in raw["history"]] == [
        "/bin/sh -c #(nop)  ENV PATH=/bin", '/bin/sh -c #(nop)  LABEL a="b"',
        '/bin/sh -c #(nop)  CMD ["run"]']
    assert all(h["empty_layer"] for h in raw["history"])
    assert raw["config"] == {"Env": ["PATH=/bin"], "Labels": {"a": "b"}, "Cmd": ["run"]}
    again = _build(eng, str(tmp_path / "ctx"), DF)
    assert "".join(m.get("stream", "") for m in again).count(" ---> Using cache\n") == 3
    assert [m["aux"]["ID"] for m in again if "aux" in m] == [aux]
    # no cache: new images (new created times), same shape
    fresh = _build(eng, str(tmp_path / "ctx"), DF, no_cache=True)
    assert [m["aux"]["ID"] for m in fresh if "aux" in m] != [aux]
    # with SOURCE_DATE_EPOCH the image ID is reproducible without the cache
    ids = set()
    for _ in range(2):
        out = _build(eng, str(tmp_path / "ctx"), DF, no_cache=True, build_args={"SOURCE_DATE_EPOCH": "86400"})
        ids.update(m["aux"]["ID"] for m in out if "aux" in m)
    assert len(ids) == 1
    assert eng.images.read_config(eng.images.get(ids.pop())).raw["created"] == "1970-01-02T00:00:00Z"


def test_errors_are_messages(tmp_path):
    eng = _engine(tmp_path)
    (tmp_path / "ctx").mkdir()
    for df, msg in ((b"", "cannot be empty"), (b"ENV A=1\n", "no build stage"),
                    (b"FROM --platform=linux/s390x scratch\n", "host platform"),
                    (b"FROM scratch\nEXPOSE 99999\n", "invalid containerPort"),
                    (b"FROM scratch\nHEALTHCHECK --interval=bad CMD x\n", "invalid duration"),
                    (b"FROM scratch\nONBUILD FROM x\n", "isn't allowed"),
                    (b"FROM scratch AS a\nFROM scratch\n", None)):
        msgs = _build(eng, str(tmp_path / "ctx"), df, target="zz" if msg is None else None)
        errs = [m for m in msgs if "error" in m]
        assert errs, df
        assert msg is None or msg in errs[0]["error"], (df, errs)
        assert errs[0]["errorDetail"]["message"] == errs[0]["error"]
    msgs = _build(eng, str(tmp_path / "ctx"), b"FROM scratch\n", tags=["bad@sha256:" + "0" * 64])
    assert "error" in msgs[-1]


def test_prune_cache_keeps_tagged_images(tmp_path):
    from berth.build.cache import prune_cache

    eng = _engine(tmp_path)
    (tmp_path / "ctx").mkdir()
    msgs = _build(eng, str(tmp_path / "ctx"), DF, tags=["keep:1"])
    final = [m["aux"]["ID"] for m in msgs if "aux" in m][0]
    assert len(eng.images.all()) == 3
    out = prune_cache(eng.images, eng.db)
    # the step images are the tagged image's parents now (Docker's intermediates): kept until it goes
    assert len(out["CachesDeleted"]) == 2 and final not in out["CachesDeleted"]
    assert len(eng.images.all()) == 3 and final in [i.id for i in eng.images.all()]
    assert len(BuildCache(eng.db)) == 0
    again = _build(eng, str(tmp_path / "ctx"), DF)
    assert "Using cache" not in "".join(m.get("stream", "") for m in again)
