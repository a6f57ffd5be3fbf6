import json
import os

from berth.engine import jsonlog


def test_format_and_parse_time_round_trip():
    ns = 1_700_000_000_123_456_789
    s = jsonlog.format_time(ns)
    assert s == "2023-11-14T22:13:20.123456789Z"
    assert jsonlog.parse_time(s) == ns


def test_lines_are_docker_json_file_records(tmp_path):
    p = str(tmp_path / "c.log")
    w = jsonlog.JSONLogWriter(p)
    w.write("stdout", b"a\nb\n", ts_ns=1_000_000_000)
    w.write("stderr", b"partial", ts_ns=2_000_000_000)
    w.close()
    lines = [json.loads(x) for x in open(p)]
    assert lines[0] == {"log": "a\n", "stream": "stdout", "time": "1970-01-01T00:00:01.000000000Z"}
    assert lines[2]["log"] == "partial" and lines[2]["stream"] == "stderr"
    recs = jsonlog.read_records(p, tail=2)
    assert [r.data for r in recs] == [b"b\n", b"partial"]
    assert [r.data for r in jsonlog.read_records(p, since_ns=1_500_000_000)] == [b"partial"]
    assert [r.data for r in jsonlog.read_records(p, until_ns=1_500_000_000)] == [b"a\n", b"b\n"]
    assert jsonlog.read_records(p, tail=0) == []


def test_rotation_keeps_max_file_files(tmp_path):
    p = str(tmp_path / "c.log")
    w = jsonlog.JSONLogWriter(p, max_size=200, max_file=3)
    for i in range(50):
        w.write("stdout", f"line {i:04d}\n".encode())
    w.close()
    files = sorted(os.listdir(tmp_path))
    assert files == ["c.log", "c.log.1", "c.log.2"]
    assert all(os.path.getsize(tmp_path / f) <= 200 for f in files)
    recs = jsonlog.read_records(p)
    assert recs[-1].data == b"line 0049\n"
    datas = [r.data for r in recs]
    assert datas == sorted(datas)  # oldest first across rotated files


def test_torn_line_is_skipped_and_follow(tmp_path):
    p = str(tmp_path / "c.log")
    w = jsonlog.JSONLogWriter(p)
    w.write("stdout", b"one\n")
    with open(p, "ab") as f:
        f.write(b'{"log":"tor')
    assert [r.data for r in jsonlog.read_records(p)] == [b"one\n"]
    recs, off = jsonlog.follow(p, 0)
    assert [r.data for r in recs] == [b"one\n"]
    recs, off2 = jsonlog.follow(p, off)
    assert recs == [] and off2 == off


def test_parse_size():
    assert jsonlog.parse_size("10m") == 10 * 1024 * 1024
    assert jsonlog.parse_size("1k") == 1024
    assert jsonlog.parse_size("512") == 512
    assert jsonlog.parse_size(None) == 0
