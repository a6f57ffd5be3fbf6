"""json-file rotation by record (never a file past max-size but for one huge record) and Follower."""

from __future__ import annotations

import os

from berth.engine import jsonlog


def _lines(n: int, start: int = 0) -> bytes:
    return b"".join(f"line {i:05d} {'x' * 40}\n".encode() for i in range(start, start + n))


def _files(p: str) -> list[str]:
    d = os.path.dirname(p)
    return sorted(os.path.join(d, f) for f in os.listdir(d))


def test_one_big_chunk_is_spread_over_files_within_max_size(tmp_path):
    p = str(tmp_path / "c.log")
    w = jsonlog.JSONLogWriter(p, max_size=1024, max_file=4)
    w.write("stdout", _lines(200))  # ~17 KB of records in a single write
    w.close()
    assert _files(p) == [p, p + ".1", p + ".2", p + ".3"]
    assert all(0 < os.path.getsize(f) <= 1024 for f in _files(p))
    datas = [r.data for r in jsonlog.read_records(p)]
    assert datas[-1] == _lines(1, 199) and datas == sorted(datas)
    assert len(datas) >= 3 * 1024 // 120  # three full files and the live one


def test_a_record_larger_than_max_size_goes_alone(tmp_path):
    p = str(tmp_path / "c.log")
    w = jsonlog.JSONLogWriter(p, max_size=100, max_file=3)
    w.write("stdout", b"a\n")
    w.write("stdout", b"b" * 500 + b"\n")
    w.write("stdout", b"c\n")
    w.close()
    assert [r.data[:1] for r in jsonlog.read_records(p)] == [b"a", b"b", b"c"]
    assert os.path.getsize(p + ".1") > 500 and b'"log":"c\\n"' in open(p, "rb").read()


def test_max_file_1_truncates_in_place(tmp_path):
    p = str(tmp_path / "c.log")
    w = jsonlog.JSONLogWriter(p, max_size=1024, max_file=1)
    w.write("stdout", _lines(100))
    w.close()
    assert _files(p) == [p] and os.path.getsize(p) <= 1024
    assert jsonlog.read_records(p)[-1].data == _lines(1, 99)


def test_follower_across_many_rotations_between_polls(tmp_path):
    p = str(tmp_path / "c.log")
    w = jsonlog.JSONLogWriter(p, max_size=1024, max_file=100)
    w.write("stdout", _lines(5))
    f = jsonlog.Follower(p)  # from the end: the first five are not followed
    seen = []
    for start in range(5, 2005, 250):
        w.write("stdout", _lines(250, start))  # ~20 rotations per poll
        seen += [r.data for r in f.poll()]
    assert seen == [_lines(1, i) for i in range(5, 2005)]
    w.close()
    with open(p, "ab") as raw:  # a record caught half written is left for the next poll
        raw.write(b'{"log":"half')
        raw.flush()
        assert f.poll() == []
        raw.write(b'\\n","stream":"stdout","time":"2024-01-02T03:04:05.000000000Z"}\n')
    assert [r.data for r in f.poll()] == [b"half\n"]
    f.close()


def test_follower_when_its_file_rotated_out(tmp_path):
    p = str(tmp_path / "c.log")
    w = jsonlog.JSONLogWriter(p, max_size=1024, max_file=3)
    f = jsonlog.Follower(p, from_start=True)
    w.write("stdout", _lines(5))
    assert len(f.poll()) == 5
    w.write("stdout", _lines(500, 5))  # the file being read is dropped: what is left is newer
    got = [r.data for r in f.poll()]
    assert got[-1] == _lines(1, 504) and got == sorted(got) and len(set(got)) == len(got)
    f.close()
    w.close()


def test_follower_truncation_and_removal(tmp_path):
    p = str(tmp_path / "c.log")
    w = jsonlog.JSONLogWriter(p, max_size=1024, max_file=1)
    f = jsonlog.Follower(p)
    w.write("stdout", _lines(5))
    assert len(f.poll()) == 5
    w.write("stdout", _lines(20, 5))  # truncated in place, maybe more than once
    got = [r.data for r in f.poll()]
    assert got and got[-1] == _lines(1, 24) and got == sorted(got)
    w.write("stdout", b"last\n")
    w.close()
    os.unlink(p)  # the container was removed: the open file is still read to its end
    assert [r.data for r in f.poll()] == [b"last\n"]
    assert f.poll() == []
    f.close()


def test_follower_of_a_log_that_appears_later(tmp_path):
    p = str(tmp_path / "c.log")
    f = jsonlog.Follower(p)
    assert f.poll() == []
    w = jsonlog.JSONLogWriter(p)
    w.write("stdout", b"hello\n")
    assert [r.data for r in f.poll()] == [b"hello\n"]
    f.close()
    w.close()
