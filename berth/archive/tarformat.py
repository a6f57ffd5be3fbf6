"""The tar header format (ustar, GNU long names, PAX): a strict parser and a deterministic writer.

Parsing never trusts a size before checking it against the caller's limits; names and link
names stay bytes (tar names need not be UTF-8).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from berth.errors import InvalidArgument

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)

REG = b"0"
AREG = b"\0"
CONTIG = b"7"
LNK = b"1"
SYM = b"2"
CHR = b"3"
BLK = b"4"
DIR = b"5"
FIFO = b"6"
PAX = b"x"
PAX_GLOBAL = b"g"
GNU_LONGNAME = b"L"
GNU_LONGLINK = b"K"
GNU_SPARSE = b"S"

ENTRY_TYPES = frozenset({REG, AREG, CONTIG, LNK, SYM, CHR, BLK, DIR, FIFO})
XATTR_PREFIX = b"SCHILY.xattr."


@dataclass(slots=True)
class Entry:
    """One archive member after PAX / GNU long-name records were applied."""

    name: bytes
    type: bytes
    mode: int = 0
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime_ns: int = 0
    linkname: bytes = b""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)

    def display(self) -> str:
        return self.name.decode("utf-8", "backslashreplace")


def _bad(msg: str) -> InvalidArgument:
    return InvalidArgument(f"layer: {msg}")


def parse_number(field_: bytes, what: str) -> int:
    """A numeric header field: NUL/space-terminated octal, or GNU base-256."""
    if field_ and field_[0] & 0x80:
        if field_[0] == 0xFF:
            return int.from_bytes(field_, "big", signed=True)
        return int.from_bytes(bytes([field_[0] & 0x7F]) + field_[1:], "big")
    try:
        return int(field_.rstrip(b"\0 ") or b"0", 8)  # the common case: "0000644\0"
    except ValueError:
        pass
    s = field_.split(b"\0", 1)[0].strip(b" ")
    if not s:
        return 0
    try:
        return int(s, 8)
    except ValueError:
        raise _bad(f"invalid {what} field {field_!r} in tar header") from None


def _cstr(b: bytes) -> bytes:
    i = b.find(b"\0")
    return b if i < 0 else b[:i]


def checksum_ok(block: bytes) -> bool:
    field_ = block[148:156]
    stored = parse_number(field_, "checksum")
    unsigned = sum(block) - sum(field_) + 256
    if stored == unsigned:
        return True
    signed = unsigned - 2 * (sum(1 for c in block[:148] if c > 127) + sum(1 for c in block[156:] if c > 127))
    return stored == signed


def parse_header(block: bytes) -> Entry:
    """Decode one 512-byte header block (already known not to be all zeros)."""
    try:  # fast path: plain octal fields as GNU tar, Go and we write them
        mode = int(block[100:107], 8)
        uid = int(block[108:115], 8)
        gid = int(block[116:123], 8)
        size = int(block[124:135], 8)
        mtime = int(block[136:147], 8)
        stored = int(block[148:154], 8)
        unsigned = sum(block) - sum(block[148:156]) + 256
        ok = stored == unsigned or checksum_ok(block)
    except ValueError:
        ok = checksum_ok(block)
        if not ok:
            raise _bad("invalid tar header checksum (not a tar archive, or corrupt)") from None
        mode = parse_number(block[100:108], "mode")
        uid = parse_number(block[108:116], "uid")
        gid = parse_number(block[116:124], "gid")
        size = parse_number(block[124:136], "size")
        mtime = parse_number(block[136:148], "mtime")
    if not ok:
        raise _bad("invalid tar header checksum (not a tar archive, or corrupt)")
    typ = block[156:157]
    name = _cstr(block[0:100])
    if block[257:263] == b"ustar\x00":  # POSIX ustar: prefix field extends the name
        prefix = _cstr(block[345:500])
        if prefix:
            name = prefix + b"/" + name
    linkname = _cstr(block[157:257]) if block[157] else b""
    e = Entry(name, typ, mode, uid, gid, size, mtime * 1_000_000_000, linkname)
    if typ in (CHR, BLK):
        e.devmajor = parse_number(block[329:337], "devmajor")
        e.devminor = parse_number(block[337:345], "devminor")
    if typ == AREG and name.endswith(b"/"):  # pre-POSIX directory
        e.type = DIR
    if e.size < 0:
        raise _bad(f"entry {e.display()!r}: negative size")
    return e


def parse_pax(data: bytes) -> dict[bytes, bytes]:
    """Decode PAX records ``"<len> key=value\\n"``; malformed records raise InvalidArgument."""
    out: dict[bytes, bytes] = {}
    pos, end = 0, len(data)
    while pos < end:
        if data[pos] == 0:  # NUL padding some writers leave
            break
        sp = data.find(b" ", pos, min(end, pos + 24))
        if sp < 0:
            raise _bad("malformed PAX record")
        try:
            n = int(data[pos:sp])
        except ValueError:
            raise _bad("malformed PAX record length") from None
        if n <= sp - pos + 1 or pos + n > end or data[pos + n - 1] != 0x0A:
            raise _bad("malformed PAX record")
        key, eq, value = data[sp + 1:pos + n - 1].partition(b"=")
        if not eq or not key:
            raise _bad("malformed PAX record")
        out[key] = value
        pos += n
    return out


def parse_pax_time(v: bytes) -> int:
    """PAX decimal seconds (maybe fractional, maybe negative) as nanoseconds."""
    try:
        s = v.decode("ascii")
        neg = s.startswith("-")
        whole, _, frac = s.lstrip("-").partition(".")
        ns = int(whole or "0") * 1_000_000_000 + int((frac + "000000000")[:9] or "0")
    except (UnicodeDecodeError, ValueError):
        raise _bad(f"invalid PAX time {v!r}") from None
    return -ns if neg else ns


def apply_pax(e: Entry, pax: dict[bytes, bytes]) -> None:
    """Override header fields from PAX records (path, linkpath, size, uid, gid, mtime, xattrs)."""
    for k, v in pax.items():
        if k == b"path":
            e.name = v
        elif k == b"linkpath":
            e.linkname = v
        elif k in (b"size", b"uid", b"gid"):
            if not v.isdigit():
                raise _bad(f"invalid PAX {k.decode()} {v!r}")
            setattr(e, k.decode(), int(v))
        elif k == b"mtime":
            e.mtime_ns = parse_pax_time(v)
        elif k.startswith(XATTR_PREFIX):
            try:
                e.xattrs[k[len(XATTR_PREFIX):].decode("utf-8")] = v
            except UnicodeDecodeError:
                raise _bad(f"invalid xattr name {k!r}") from None
        elif k.startswith(b"GNU.sparse."):
            raise _bad("sparse files (GNU.sparse PAX records) are not supported")


# --- writing -------------------------------------------------------------------------------------

def _octal(v: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, v)


def pax_record(key: bytes, value: bytes) -> bytes:
    payload = b" " + key + b"=" + value + b"\n"
    n = len(payload) + 1
    while len(str(n)) + len(payload) != n:
        n = len(str(n)) + len(payload)
    return str(n).encode() + payload


_MAGIC = b"ustar\x0000"
_CHK_CONST = 8 * 0x20 + sum(_MAGIC)  # the checksum field counts as spaces
_Z64 = bytes(64)
_Z167 = bytes(167)
_NO_DEV = bytes(16)


def raw_header(name: bytes, typ: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
               linkname: bytes, devmajor: int, devminor: int) -> bytes:
    """One ustar header block; every value must fit its field."""
    nums = b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (mode, uid, gid, size, mtime)
    dev = b"%07o\0%07o\0" % (devmajor, devminor) if typ in (CHR, BLK) else _NO_DEV
    chk = sum(name) + sum(nums) + typ[0] + sum(linkname) + sum(dev) + _CHK_CONST
    return b"".join((name.ljust(100, b"\0"), nums, b"%06o\0 " % chk, typ, linkname.ljust(100, b"\0"), _MAGIC,
                     _Z64, dev, _Z167))


_MAX8 = 0o7777777
_MAX12 = 0o77777777777


def build_header(name: bytes, typ: bytes, *, mode: int = 0o644, uid: int = 0, gid: int = 0, size: int = 0,
                 mtime: int = 0, linkname: bytes = b"", devmajor: int = 0, devminor: int = 0,
                 xattrs: dict[str, bytes] | None = None) -> bytes:
    """Header block(s) for one member, deterministic: a PAX record only where ustar cannot hold a field."""
    pax: list[tuple[bytes, bytes]] = []
    if len(name) > 100 or not name.isascii():
        pax.append((b"path", name))
        name = name[-100:] if name.isascii() else b"PaxName"
    if len(linkname) > 100 or not linkname.isascii():
        pax.append((b"linkpath", linkname))
        linkname = b""
    if uid > _MAX8:
        pax.append((b"uid", str(uid).encode()))
        uid = 0
    if gid > _MAX8:
        pax.append((b"gid", str(gid).encode()))
        gid = 0
    if size > _MAX12:
        pax.append((b"size", str(size).encode()))
        size_field = 0
    else:
        size_field = size
    if mtime < 0 or mtime > _MAX12:
        pax.append((b"mtime", str(mtime).encode()))
        mtime = 0
    if devmajor > _MAX8 or devminor > _MAX8:
        raise InvalidArgument(f"device number too large for {name!r}")
    if xattrs:
        for k in sorted(xattrs):
            pax.append((XATTR_PREFIX + k.encode(), xattrs[k]))
    hdr = raw_header(name, typ, mode & 0o7777, uid, gid, size_field, mtime, linkname, devmajor, devminor)
    if not pax:
        return hdr
    pax.sort()
    data = b"".join(pax_record(k, v) for k, v in pax)
    base = (name.rstrip(b"/").rsplit(b"/", 1)[-1])[:80]
    pax_hdr = raw_header(b"PaxHeaders.0/" + base, PAX, 0o644, 0, 0, len(data), 0, b"", 0, 0)
    return pax_hdr + data + bytes(-len(data) % BLOCK) + hdr
