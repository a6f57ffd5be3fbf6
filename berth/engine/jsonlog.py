"""Docker's json-file log format: one JSON object per line, with size-based rotation.

Line: ``{"log":"hi\\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}``.
Rotation (as moby's jsonfilelog): before a record that would take the file past ``max_size``
bytes, ``log`` → ``log.1`` → … up to ``max_file - 1`` rotated files (``max_file=1`` truncates in
place); so a file holds at most ``max_size`` bytes, or one record when a single record is larger.
A ``Follower`` reads a log as it grows, across any number of rotations.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass


def format_time(ts_ns: int) -> str:
    """RFC 3339 with 9 fractional digits, UTC (as Docker writes and prints timestamps)."""
    secs, nanos = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{nanos:09d}Z"


def parse_time(value: str) -> int:
    """Parse a format_time() string back to nanoseconds since the epoch."""
    base, _, frac = value.rstrip("Z").partition(".")
    import calendar

    secs = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return secs * 1_000_000_000 + int((frac + "000000000")[:9])


def parse_size(value: str | int | None) -> int:
    """Docker's size strings for log-opts: '10m', '1g', '512k', plain bytes; 0/None = unlimited."""
    if value in (None, "", 0):
        return 0
    if isinstance(value, int):
        return value
    v = value.strip().lower().rstrip("b")
    mult = {"k": 1024, "m": 1024**2, "g": 1024**3}.get(v[-1:], 1)
    return int(float(v[:-1] if mult != 1 else v) * mult)


class JSONLogWriter:
    """Appends log lines to ``path`` and rotates by size."""

    def __init__(self, path: str, max_size: int = 0, max_file: int = 1) -> None:
        self.path = path
        self.max_size = max_size
        self.max_file = max(1, max_file)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._size = os.fstat(self._fd).st_size

    def write(self, stream: str, data: bytes, ts_ns: int | None = None) -> None:
        """Write one record per line of data (a partial last line is written as is).

        Records go out in as few writes as rotation allows: one per file they land in.
        """
        ts = format_time(ts_ns if ts_ns is not None else time.time_ns())
        batch: list[bytes] = []
        batch_size = 0
        for line in data.splitlines(keepends=True):
            rec = (json.dumps({"log": line.decode("utf-8", "replace"), "stream": stream, "time": ts},
                              ensure_ascii=False, separators=(",", ":")) + "\n").encode()
            if self.max_size and self._size + batch_size + len(rec) > self.max_size \
                    and self._size + batch_size > 0:
                self._flush(batch)
                batch, batch_size = [], 0
                self._rotate()
            batch.append(rec)
            batch_size += len(rec)
        self._flush(batch)

    def _flush(self, batch: list[bytes]) -> None:
        if not batch:
            return
        blob = b"".join(batch)
        view = memoryview(blob)
        while view:  # a regular file takes it all at once, short of ENOSPC/EFBIG (which raise)
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(blob)

    def _rotate(self) -> None:
        os.close(self._fd)
        if self.max_file > 1:
            for i in range(self.max_file - 1, 0, -1):
                src = self.path if i == 1 else f"{self.path}.{i - 1}"
                if os.path.exists(src):
                    os.replace(src, f"{self.path}.{i}")
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        else:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        self._fd = os.open(self.path, flags, 0o640)
        self._size = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass
class LogRecord:
    stream: str
    data: bytes
    time_ns: int
    raw_time: str


def read_records(path: str, *, since_ns: int = 0, until_ns: int = 0, tail: int = -1) -> list[LogRecord]:
    """Records from the rotated files oldest first, filtered by time, the last `tail` of them."""
    files = []
    i = 1
    while os.path.exists(f"{path}.{i}"):
        files.append(f"{path}.{i}")
        i += 1
    files.reverse()
    if os.path.exists(path):
        files.append(path)
    records: list[LogRecord] = []
    for name in files:
        records.extend(_read_file(name, since_ns, until_ns))
    if tail >= 0:
        records = records[-tail:] if tail else []
    return records


def _read_file(name: str, since_ns: int, until_ns: int) -> Iterator[LogRecord]:
    with open(name, "rb") as f:
        for line in f:
            rec = _parse(line)
            if rec is None:
                continue
            if since_ns and rec.time_ns < since_ns:
                continue
            if until_ns and rec.time_ns > until_ns:
                continue
            yield rec


def _parse(line: bytes) -> LogRecord | None:
    try:
        obj = json.loads(line)
        return LogRecord(obj.get("stream", "stdout"), obj["log"].encode(), parse_time(obj["time"]),
                         obj["time"])
    except (ValueError, KeyError, TypeError):
        return None  # a torn last line after a crash is skipped


def follow(path: str, offset: int) -> tuple[list[LogRecord], int]:
    """Records appended to path since byte offset; returns them and the new offset."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < offset:  # rotated
                offset = 0
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n") + 1
    recs = [r for r in (_parse(line) for line in data[:end].splitlines()) if r is not None]
    return recs, offset + end


class Follower:
    """Follows a json-file log from its current end, across rotations, by file identity (inode).

    ``poll()`` returns the complete records written since the last call. When the log was rotated
    (once or many times) since, the rest of the file being read is drained, then every newer file
    in order, then the live one; when the log is gone (container removed) the open file is read to
    its end. A file that rotated out of existence before it was drained is lost (as with Docker).
    """

    def __init__(self, path: str, *, from_start: bool = False) -> None:
        self.path = path
        self._f = None
        self._offset = 0
        try:
            self._f = open(path, "rb")  # noqa: SIM115 - kept across polls; close() closes it
            if not from_start:
                self._offset = os.fstat(self._f.fileno()).st_size
        except OSError:
            pass

    def poll(self) -> list[LogRecord]:
        out: list[LogRecord] = []
        if self._f is None:  # the log did not exist yet
            try:
                self._f = open(self.path, "rb")  # noqa: SIM115
            except OSError:
                return out
            self._offset = 0
        out += self._drain()
        for _ in range(8):  # retried while the log rotates under us
            newer = self._open_newer()
            if newer is None:
                continue
            if not newer:
                return out  # not rotated, or removed: keep the open file
            out += self._drain()  # appended after the first drain, before the rotation
            self._f.close()
            for f in newer[:-1]:
                out += _complete_records(f.read())
                f.close()
            self._f, self._offset = newer[-1], 0
            out += self._drain()
            return out
        return out

    def _drain(self) -> list[LogRecord]:
        assert self._f is not None
        if os.fstat(self._f.fileno()).st_size < self._offset:
            self._offset = 0  # truncated in place (max-file 1)
        self._f.seek(self._offset)
        data = self._f.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        return _complete_records(data[:end])

    def _open_newer(self) -> list | None:
        """The files newer than ours, opened, oldest first and the live log last; [] when there
        are none; None when the names moved while opening them (try again)."""
        assert self._f is not None
        mine = os.fstat(self._f.fileno()).st_ino
        live = _ino(self.path)
        if live is None or live == mine:
            return []
        listed = [(self.path, live)]
        i = 1
        while (ino := _ino(f"{self.path}.{i}")) is not None and ino != mine:
            listed.append((f"{self.path}.{i}", ino))  # ours missing: dropped, every file is newer
            i += 1
        files = []
        for name, ino in reversed(listed):
            try:
                f = open(name, "rb")  # noqa: SIM115 - handed to poll()
            except OSError:
                f = None
            if f is None or os.fstat(f.fileno()).st_ino != ino:
                for g in files + ([f] if f else []):
                    g.close()
                return None
            files.append(f)
        return files

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def _ino(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _complete_records(data: bytes) -> list[LogRecord]:
    end = data.rfind(b"\n") + 1
    return [r for r in (_parse(line) for line in data[:end].splitlines()) if r is not None]
