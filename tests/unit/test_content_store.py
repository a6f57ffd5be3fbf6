"""ContentStore: verified ingest, atomic visibility, concurrency, crash recovery, quarantine."""

from __future__ import annotations

import errno
import io
import multiprocessing
import os
import signal
import subprocess
import sys
import threading

import pytest

from berth.content import ContentStore
from berth.errors import DataCorrupt, InvalidArgument, LimitExceeded, NotFound, Unavailable
from berth.oci.digest import sha256

BAD_DIGESTS = ["sha256:../x", "sha256:../../etc/passwd", "sha256:" + "A" * 64, "md5:00", "", "sha256:"]


def blobs(store: ContentStore) -> list[str]:
    return sorted(b.digest for b in store.walk())


def ingests(store: ContentStore) -> list[str]:
    return os.listdir(store.ingest_dir)


def test_write_commit_read(tmp_path):
    store = ContentStore(str(tmp_path / "cs"))
    data = b"hello blob\n" * 1000
    d = sha256(data)
    with store.writer("ref-1", d, len(data)) as w:
        assert not w.exists
        w.write(data[:10])
        w.write(memoryview(data)[10:])
        assert w.offset == len(data)
        assert w.commit() == d
    assert store.exists(d)
    assert store.info(d).size == len(data)
    assert store.read(d) == data
    with store.open(d) as f:
        assert f.read() == data
    assert os.stat(store.path(d)).st_mode & 0o777 == 0o444
    assert store.path(d) == os.path.join(store.root, "blobs", "sha256", d[7:])
    assert ingests(store) == []
    assert blobs(store) == [d]


def test_commit_without_expected_and_write_bytes(tmp_path):
    store = ContentStore(str(tmp_path))
    with store.writer("anon") as w:
        w.write(b"abc")
        d = w.commit()
    assert d == sha256(b"abc")
    assert store.write_bytes(b"abc") == d  # already there: no-op
    assert store.write_bytes(b"xyz", sha256(b"xyz")) == sha256(b"xyz")
    with pytest.raises(DataCorrupt):
        store.write_bytes(b"xyz!", sha256(b"xyz"))
    assert blobs(store) == sorted([d, sha256(b"xyz")])


def test_digest_mismatch_leaves_nothing(tmp_path):
    store = ContentStore(str(tmp_path))
    expected = sha256(b"the real bytes")
    with pytest.raises(DataCorrupt, match="does not match"):
        with store.writer("r", expected) as w:
            w.write(b"forged bytes!!")
            w.commit()
    assert blobs(store) == [] and ingests(store) == []
    assert not store.exists(expected)
    assert not store.exists(sha256(b"forged bytes!!"))


def test_size_mismatch(tmp_path):
    store = ContentStore(str(tmp_path))
    data = b"0123456789"
    with pytest.raises(DataCorrupt, match="expected 11"):  # short
        with store.writer("r", sha256(data), 11) as w:
            w.write(data)
            w.commit()
    with pytest.raises(DataCorrupt, match="more than the expected"):  # long: fails at write time
        with store.writer("r", sha256(data), 5) as w:
            w.write(data)
    assert blobs(store) == [] and ingests(store) == []


def test_exception_in_with_block_aborts(tmp_path):
    store = ContentStore(str(tmp_path))
    with pytest.raises(RuntimeError):
        with store.writer("r") as w:
            w.write(b"partial")
            raise RuntimeError("network went away")
    assert blobs(store) == [] and ingests(store) == []
    with pytest.raises(InvalidArgument):
        w.write(b"more")
    # leaving the block without commit also aborts
    with store.writer("r2") as w:
        w.write(b"x")
    assert blobs(store) == [] and ingests(store) == []


def test_existing_blob_is_hashed_not_stored_but_still_verified(tmp_path):
    store = ContentStore(str(tmp_path))
    d = store.write_bytes(b"present")
    with store.writer("again", d) as w:
        assert w.exists
        w.write(b"present")
        assert w.commit() == d
    with pytest.raises(DataCorrupt):
        with store.writer("again", d) as w:
            w.write(b"absent!")
            w.commit()
    assert store.read(d) == b"present"


@pytest.mark.parametrize("bad", BAD_DIGESTS)
def test_malformed_digests_refused(tmp_path, bad):
    store = ContentStore(str(tmp_path / "cs"))
    (tmp_path / "x").write_bytes(b"outside")
    for call in (store.path, store.info, store.open, store.read, store.delete, store.verify):
        with pytest.raises(InvalidArgument):
            call(bad)
    with pytest.raises(InvalidArgument):
        store.exists(bad)
    with pytest.raises(InvalidArgument):
        store.writer("r", bad)
    with pytest.raises(InvalidArgument):
        store.write_bytes(b"x", bad)
    assert (tmp_path / "x").read_bytes() == b"outside"
    assert ingests(store) == []


def test_bad_refs_and_sizes_refused(tmp_path):
    store = ContentStore(str(tmp_path))
    for ref in ("", "a\0b", "x" * 5000):
        with pytest.raises(InvalidArgument):
            store.writer(ref)
    with pytest.raises(InvalidArgument):
        store.writer("r", size=-1)
    # any other ref is just a name: hashed into the ingest dir name
    with store.writer("../../../etc/passwd") as w:
        w.write(b"ok")
        w.commit()
    assert ingests(store) == []


def test_missing_blob_and_delete(tmp_path):
    store = ContentStore(str(tmp_path))
    d = store.write_bytes(b"to delete")
    store.delete(d)
    assert not store.exists(d)
    for call in (store.info, store.open, store.read, store.delete, store.verify):
        with pytest.raises(NotFound):
            call(d)


def test_walk_ignores_foreign_files(tmp_path):
    store = ContentStore(str(tmp_path))
    ds = sorted(store.write_bytes(bytes([i]) * i) for i in range(5))
    open(os.path.join(store.blob_dir, "not-a-digest"), "w").close()
    os.mkdir(os.path.join(store.blob_dir, "f" * 64))
    assert blobs(store) == ds
    assert {b.size for b in store.walk()} == {0, 1, 2, 3, 4}


def test_read_limit(tmp_path):
    store = ContentStore(str(tmp_path))
    d = store.write_bytes(b"x" * 100)
    assert store.read(d, max_size=100) == b"x" * 100
    with pytest.raises(LimitExceeded):
        store.read(d, max_size=99)


def test_same_ref_waits_for_the_holder(tmp_path):
    store = ContentStore(str(tmp_path))
    w = store.writer("busy")
    try:
        with pytest.raises(Unavailable):
            store.writer("busy", lock_timeout=0.05)
        assert store.cleanup_ingest() == 0  # held by a live writer: not stale
    finally:
        w.abort()
    with store.writer("busy", lock_timeout=0.05) as w2:
        w2.write(b"ok")
        w2.commit()


@pytest.mark.parametrize("same_ref", [True, False])
def test_concurrent_writers_threads(tmp_path, same_ref):
    store = ContentStore(str(tmp_path))
    data = os.urandom(3 << 20)
    d = sha256(data)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            with store.writer("layer" if same_ref else f"layer-{i}", d, len(data)) as w:
                for off in range(0, len(data), 256 << 10):
                    w.write(data[off:off + (256 << 10)])
                results.append(w.commit())
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == [d] * 6
    assert blobs(store) == [d]
    assert store.read(d) == data
    assert ingests(store) == []


def _process_writer(root: str, ref: str, data: bytes, q) -> None:
    store = ContentStore(root)
    with store.writer(ref, sha256(data), len(data)) as w:
        for off in range(0, len(data), 64 << 10):
            w.write(data[off:off + (64 << 10)])
        q.put(w.commit())


def test_concurrent_writers_processes(tmp_path):
    root = str(tmp_path / "cs")
    ContentStore(root)
    data = os.urandom(2 << 20)
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_process_writer, args=(root, "layer" if i % 2 else f"p{i}", data, q))
             for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 4
    assert sorted(q.get(timeout=5) for _ in procs) == [sha256(data)] * 4
    store = ContentStore(root)
    assert blobs(store) == [sha256(data)]
    assert store.read(sha256(data)) == data
    assert ingests(store) == []


CRASH_CHILD = """
import os, sys, time
from berth.content import ContentStore
store = ContentStore(sys.argv[1])
data = bytes(range(256)) * 16384          # 4 MiB
w = store.writer("crash-ref", sys.argv[2], len(data))
w.write(data[: len(data) // 2])
w._file.flush()
print("ready", flush=True)
time.sleep(60)
"""


def test_crash_mid_write_leaves_no_blob(tmp_path):
    root = str(tmp_path / "cs")
    data = bytes(range(256)) * 16384
    d = sha256(data)
    child = subprocess.Popen([sys.executable, "-c", CRASH_CHILD, root, d], stdout=subprocess.PIPE,
                             cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    try:
        assert child.stdout.readline() == b"ready\n"
        store = ContentStore(root)
        assert store.cleanup_ingest() == 0  # the writer is alive and holds its lock
        [name] = ingests(store)
        assert os.path.getsize(os.path.join(store.ingest_dir, name, "data")) == len(data) // 2
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    store = ContentStore(root)
    assert not store.exists(d) and blobs(store) == []
    assert len(ingests(store)) == 1
    assert store.cleanup_ingest() == 1
    assert ingests(store) == []
    # the ref is usable again
    assert store.write_from(io.BytesIO(data), "crash-ref", d, len(data)) == d


def test_cleanup_ingest_removes_strays(tmp_path):
    store = ContentStore(str(tmp_path))
    os.makedirs(os.path.join(store.ingest_dir, "dead", "sub"))
    open(os.path.join(store.ingest_dir, "dead", "data"), "w").close()
    open(os.path.join(store.ingest_dir, "stray-file"), "w").close()
    os.symlink("/", os.path.join(store.ingest_dir, "link"))
    assert store.cleanup_ingest() == 3
    assert ingests(store) == []
    assert os.path.exists("/etc")


def test_verify_quarantines_corrupt_blob(tmp_path):
    store = ContentStore(str(tmp_path))
    good = store.write_bytes(b"good bytes")
    bad = store.write_bytes(b"soon rotten")
    store.verify(good)
    os.chmod(store.path(bad), 0o644)
    with open(store.path(bad), "r+b") as f:
        f.write(b"S")
    with pytest.raises(DataCorrupt, match="quarantined"):
        store.verify(bad)
    assert not store.exists(bad)
    [q] = os.listdir(store.quarantine_dir)
    assert q.startswith(bad[7:])
    assert blobs(store) == [good]
    # verify_all reports what it quarantines
    bad2 = store.write_bytes(b"also rotten")
    os.chmod(store.path(bad2), 0o644)
    with open(store.path(bad2), "ab") as f:
        f.write(b"!")
    assert store.verify_all() == [bad2]
    assert blobs(store) == [good]


@pytest.mark.root
def test_disk_full_leaves_nothing(tmp_path, no_leaked_mounts):
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        store = ContentStore(str(mnt / "cs"))
        data = os.urandom(2 << 20)
        with pytest.raises(OSError) as ei:
            with store.writer("big", sha256(data), len(data)) as w:
                for off in range(0, len(data), 256 << 10):
                    w.write(data[off:off + (256 << 10)])
                w.commit()
        assert ei.value.errno == errno.ENOSPC
        assert blobs(store) == [] and ingests(store) == []
        assert store.write_bytes(b"small still fits") == sha256(b"small still fits")
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
