"""Output formatting as the docker CLI does it: tabwriter tables, Go-template ``--format``, human units.

The template language is a subset of Go's text/template: ``{{.A.B}}``, ``{{.}}``, pipelines with
``|``, string/number literals, parentheses, ``{{range .X}}…{{else}}…{{end}}``, ``{{if …}}``/``{{with …}}``
and the functions docker adds (json, join, split, lower, upper, title, pad, truncate, println) plus
index, len, printf, print, eq, ne, lt, gt, not, and, or.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from berth.errors import InvalidArgument
from berth.humanize import human_duration  # noqa: F401 - re-exported for the commands

# -- human units (go-units) ------------------------------------------------------------------------
_DECIMAL = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]


def _go_g(value: float, precision: int) -> str:
    """Go's %.<p>g (same as Python's, which strips trailing zeros the same way)."""
    return f"{value:.{precision}g}"


def human_size(size: float, precision: int = 3) -> str:
    """units.HumanSizeWithPrecision: decimal units, ``precision`` significant digits ("4.26MB")."""
    i = 0
    size = float(size)
    while size >= 1000.0 and i < len(_DECIMAL) - 1:
        size /= 1000.0
        i += 1
    return _go_g(size, precision) + _DECIMAL[i]


def ellipsis(s: str, width: int) -> str:
    """formatter.Ellipsis: cut to ``width`` characters, the last one being "…"."""
    if width <= 0:
        return ""
    if len(s) <= width:
        return s
    if width == 1:
        return s[0]
    return s[:width - 1] + "…"


# -- tabwriter ---------------------------------------------------------------------------------------
def tabwrite(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Go's tabwriter (minwidth 10, tabwidth 1, padding 3): align tab-terminated cells per column block."""
    lines = [line.split("\t") for line in text.split("\n")]
    widths: list[list[int]] = [[0] * max(0, len(cells) - 1) for cells in lines]

    def fmt(col: int, start: int, end: int) -> None:
        i = start
        while i < end:
            if col >= len(lines[i]) - 1:
                i += 1
                continue
            j, width = i, minwidth
            while j < end and col < len(lines[j]) - 1:
                width = max(width, len(lines[j][col]) + padding)
                j += 1
            for k in range(i, j):
                widths[k][col] = width
            fmt(col + 1, i, j)
            i = j

    fmt(0, 0, len(lines))
    out = []
    for cells, ws in zip(lines, widths, strict=True):
        out.append("".join(c.ljust(w) for c, w in zip(cells, ws, strict=False)) + cells[-1])
    return "\n".join(out)


# -- Go value printing ---------------------------------------------------------------------------------
def go_str(v: Any) -> str:
    """How text/template prints a value (%v)."""
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return str(int(v))
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_inner(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list | tuple):
        return "[" + " ".join(_inner(x) for x in v) + "]"
    return str(v)


def _inner(v: Any) -> str:
    return "<nil>" if v is None else go_str(v)


def _truthy(v: Any) -> bool:
    return bool(v) and v != 0


# -- template ------------------------------------------------------------------------------------------
_TOKEN = re.compile(r"""\s*(?:
    (?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`) |
    (?P<num>-?\d+(?:\.\d+)?) |
    (?P<field>(?:\.[A-Za-z_]\w*)+|\.) |
    (?P<var>\$\w*(?:\.[A-Za-z_]\w*)*) |
    (?P<ident>[A-Za-z_]\w*) |
    (?P<op>[|()])
)""", re.X)


class _Ctx:
    def __init__(self, dot: Any, root: Any) -> None:
        self.dot, self.root = dot, root


def _lookup(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    if obj is None:
        return None
    attr = getattr(obj, name, None)
    if attr is None:
        raise InvalidArgument(f"template: can't evaluate field {name} in type {type(obj).__name__}")
    return attr() if callable(attr) and not isinstance(attr, type) else attr


_GO_HTML_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def _json(v: Any) -> str:
    """Go's json.Marshal: compact, UTF-8 kept, and ``<``, ``>``, ``&`` escaped (as the docker CLI prints)."""
    return json.dumps(_plain(v), separators=(",", ":"), ensure_ascii=False).translate(_GO_HTML_ESCAPES)


def _plain(v: Any) -> Any:
    if hasattr(v, "as_dict"):
        return v.as_dict()
    return v


def _index(v: Any, *keys: Any) -> Any:
    for k in keys:
        if v is None:
            return None
        try:
            v = v.get(k) if isinstance(v, dict) else v[int(k)]
        except (IndexError, ValueError, TypeError):
            raise InvalidArgument(f"template: index out of range: {k}") from None
    return v


def _printf(fmt: str, *args: Any) -> str:
    conv = re.sub(r"%v|%q|%d|%s", lambda m: "%r" if m.group() == "%q" else "%s", fmt)
    vals = tuple(go_str(a) if not isinstance(a, str) else a for a in args)
    try:
        return conv % vals
    except TypeError:
        return fmt


FUNCS: dict[str, Callable[..., Any]] = {
    "json": _json,
    "join": lambda v, sep: sep.join(go_str(x) for x in (v or [])),
    "split": lambda s, sep: s.split(sep),
    "lower": lambda s: go_str(s).lower(),
    "upper": lambda s: go_str(s).upper(),
    "title": lambda s: go_str(s).title(),
    "pad": lambda s, left, right: " " * int(left) + go_str(s) + " " * int(right),
    "truncate": lambda s, n: go_str(s)[:int(n)],
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "print": lambda *a: "".join(go_str(x) for x in a),
    "printf": _printf,
    "index": _index,
    "len": lambda v: len(v or []),
    "eq": lambda a, *bs: any(a == b for b in bs),
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "gt": lambda a, b: a > b,
    "le": lambda a, b: a <= b,
    "ge": lambda a, b: a >= b,
    "not": lambda a: not _truthy(a),
    "and": lambda *a: next((x for x in a if not _truthy(x)), a[-1]),
    "or": lambda *a: next((x for x in a if _truthy(x)), a[-1]),
}


class Template:
    """A parsed Go template; ``execute(data)`` returns the text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.nodes, rest, end = self._parse(self._lex(text), 0)
        if end is not None:
            raise InvalidArgument(f"template: unexpected {{{{{end}}}}}")
        assert rest == len(self._items)

    def _lex(self, text: str) -> list[tuple[str, str]]:
        items, pos = [], 0
        while True:
            i = text.find("{{", pos)
            if i < 0:
                items.append(("text", text[pos:]))
                break
            j = text.find("}}", i)
            if j < 0:
                raise InvalidArgument("template: unclosed action")
            before = text[pos:i]
            inner = text[i + 2:j]
            if inner.startswith("-"):
                before, inner = before.rstrip(), inner[1:]
            items.append(("text", before))
            if inner.endswith("-"):
                inner = inner[:-1]
                pos = j + 2
                while pos < len(text) and text[pos] in " \t\r\n":
                    pos += 1
            else:
                pos = j + 2
            items.append(("action", inner.strip()))
        self._items = items
        return items

    def _parse(self, items: list[tuple[str, str]], i: int) -> tuple[list, int, str | None]:
        nodes: list = []
        while i < len(items):
            kind, val = items[i]
            i += 1
            if kind == "text":
                if val:
                    nodes.append(("text", val))
                continue
            word = val.split(None, 1)[0] if val else ""
            if word in ("end", "else"):
                return nodes, i, val
            if val.startswith("/*"):
                continue
            if word in ("range", "if", "with"):
                pipe = self._pipeline(val[len(word):])
                body, i, stop = self._parse(items, i)
                other: list = []
                if stop is not None and stop.startswith("else"):
                    rest = stop[4:].strip()
                    if rest.startswith("if "):  # {{else if ...}} chains
                        sub_pipe = self._pipeline(rest[3:])
                        sub_body, i, stop2 = self._parse(items, i)
                        other2: list = []
                        if stop2 == "else":
                            other2, i, stop2 = self._parse(items, i)
                        other = [("if", sub_pipe, sub_body, other2)]
                        stop = stop2
                    else:
                        other, i, stop = self._parse(items, i)
                if stop != "end":
                    raise InvalidArgument(f"template: missing {{{{end}}}} for {word}")
                nodes.append((word, pipe, body, other))
                continue
            nodes.append(("pipe", self._pipeline(val)))
        return nodes, i, None

    def _pipeline(self, src: str) -> list:
        tokens = []
        pos = 0
        src = src.strip()
        while pos < len(src):
            m = _TOKEN.match(src, pos)
            if not m or m.end() == pos:
                raise InvalidArgument(f"template: bad syntax in {src!r}")
            pos = m.end()
            kind = m.lastgroup or ""
            tokens.append((kind, m.group(kind)))
        cmds, _ = self._commands(tokens, 0)
        if not cmds:
            raise InvalidArgument("template: empty action")
        return cmds

    def _commands(self, tokens: list, i: int) -> tuple[list, int]:
        cmds: list[list] = [[]]
        while i < len(tokens):
            kind, val = tokens[i]
            if kind == "op" and val == "|":
                cmds.append([])
                i += 1
            elif kind == "op" and val == "(":
                sub, i = self._commands(tokens, i + 1)
                cmds[-1].append(("sub", sub))
            elif kind == "op" and val == ")":
                return [c for c in cmds if c], i + 1
            else:
                if kind == "str":
                    val = json.loads(val) if val.startswith('"') else val[1:-1]
                elif kind == "num":
                    val = float(val) if "." in val else int(val)
                elif kind == "ident" and val not in FUNCS and val not in ("true", "false", "nil"):
                    raise InvalidArgument(f'template: function "{val}" not defined')
                cmds[-1].append((kind, val))
                i += 1
        return [c for c in cmds if c], i

    # -- execution ---------------------------------------------------------------------------------
    def execute(self, data: Any) -> str:
        out: list[str] = []
        self._run(self.nodes, _Ctx(data, data), out)
        return "".join(out)

    def _run(self, nodes: list, ctx: _Ctx, out: list[str]) -> None:
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "pipe":
                out.append(go_str(self._eval(node[1], ctx)))
            elif kind == "if":
                self._run(node[2] if _truthy(self._eval(node[1], ctx)) else node[3], ctx, out)
            elif kind == "with":
                v = self._eval(node[1], ctx)
                if _truthy(v):
                    self._run(node[2], _Ctx(v, ctx.root), out)
                else:
                    self._run(node[3], ctx, out)
            elif kind == "range":
                v = self._eval(node[1], ctx)
                seq: Iterable = ([v[k] for k in sorted(v)] if isinstance(v, dict) else v) or []
                ran = False
                for item in seq:
                    ran = True
                    self._run(node[2], _Ctx(item, ctx.root), out)
                if not ran:
                    self._run(node[3], ctx, out)

    def _eval(self, cmds: list, ctx: _Ctx) -> Any:
        value: Any = _NOTHING
        for cmd in cmds:
            value = self._command(cmd, ctx, value)
        return value

    def _arg(self, tok: tuple, ctx: _Ctx) -> Any:
        kind, val = tok
        if kind == "field":
            v = ctx.dot
            for part in val.split(".")[1:]:
                if part:
                    v = _lookup(v, part)
            return v
        if kind == "var":
            v = ctx.root
            for part in val.split(".")[1:]:
                v = _lookup(v, part)
            return v
        if kind == "sub":
            return self._eval(val, ctx)
        if kind == "ident":
            return {"true": True, "false": False, "nil": None}.get(val, val)
        return val

    def _command(self, cmd: list, ctx: _Ctx, piped: Any) -> Any:
        head = cmd[0]
        if head[0] == "ident" and head[1] in FUNCS:
            args = [self._arg(t, ctx) for t in cmd[1:]]
            if piped is not _NOTHING:
                args.append(piped)
            try:
                return FUNCS[head[1]](*args)
            except TypeError as e:
                raise InvalidArgument(f"template: wrong arguments for {head[1]}: {e}") from None
        v = self._arg(head, ctx)
        if len(cmd) > 1 and callable(v):
            return v(*[self._arg(t, ctx) for t in cmd[1:]])
        return v


_NOTHING = object()


# -- docker-style formatted output ----------------------------------------------------------------------
def render(fmt: str, rows: Iterable[Any], header: dict[str, str] | None = None) -> str:
    """Render rows with a format: "table ..." (header + tabwriter), "json", or a plain template."""
    rows = list(rows)
    if fmt == "json":
        return "".join(_json(r) + "\n" for r in rows)
    is_table = fmt.startswith("table")
    body = fmt[5:].lstrip() if is_table else fmt
    body = body.replace("\\t", "\t").replace("\\n", "\n")
    tmpl = Template(body)
    lines = []
    if is_table and header is not None:
        lines.append(tmpl.execute(_Header(header)))
    for r in rows:
        lines.append(tmpl.execute(r))
    text = "\n".join(lines)
    if is_table:
        text = tabwrite(text)
    return text + "\n" if lines else ""


class _Header:
    """Stands in for a row when rendering a table header: every field is its column title."""

    def __init__(self, titles: dict[str, str]) -> None:
        self._titles = titles

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._titles.get(name, name.upper())

    def get(self, name: str, default: Any = None) -> str:
        return self._titles.get(name, name.upper())


# -- times ------------------------------------------------------------------------------------------------
def rfc3339(ts: float, nano: int | None = None, fixed: bool = False) -> str:
    """Go's time.Format in local time: RFC3339 (``fixed``: RFC3339NanoFixed, 9 fraction digits)."""
    import time as _time
    secs = int(ts) if nano is None else nano // 1_000_000_000
    tm = _time.localtime(secs)
    off = tm.tm_gmtoff or 0
    zone = "Z" if off == 0 else f"{'+' if off > 0 else '-'}{abs(off) // 3600:02d}:{abs(off) % 3600 // 60:02d}"
    frac = ""
    if fixed:
        ns = nano % 1_000_000_000 if nano is not None else int(round((ts - secs) * 1e9))
        frac = f".{ns:09d}"
    return _time.strftime("%Y-%m-%dT%H:%M:%S", tm) + frac + zone


# -- JSON message streams (pull, push, load, import) ----------------------------------------------------
def progress_bar(detail: dict, width: int = 80) -> str:
    """jsonmessage.JSONProgress.String: ``[==>   ]  1.2MB/4.5MB`` (the bar only on wide terminals)."""
    current, total = int(detail.get("current") or 0), int(detail.get("total") or 0)
    units = detail.get("units") or ""
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return f"{human_size(current, 4):>8}" if not units else f"{current} {units}"
    pct = min(50, int(current / total * 100) // 2)
    bar = f"[{'=' * pct}>{' ' * max(0, 50 - pct)}] " if width > 110 else ""
    if units:
        nums = f"{current}/{total} {units}"
    elif current > total:
        nums = f"{human_size(current, 4):>8}"
    else:
        nums = f"{human_size(current, 4):>8}/{human_size(total, 4)}"
    return bar + nums


def _term_width(out: Any) -> int:
    import os
    try:
        return os.get_terminal_size(out.fileno()).columns
    except (OSError, AttributeError, ValueError):
        return 200


def display_messages(msgs: Iterable[dict], out: Any, tty: bool | None = None,
                     aux: Callable[[dict], None] | None = None) -> None:
    """jsonmessage.DisplayJSONMessagesStream: print a message stream as docker does.

    On a terminal, progress lines are keyed by ``id`` and updated in place (cursor up/down); else
    progress updates are dropped and every other message is one line. An ``error`` message raises
    ``CliError(message, code or 1)``.
    """
    if tty is None:
        tty = bool(getattr(out, "isatty", lambda: False)())
    width = _term_width(out) if tty else 0
    ids: dict[str, int] = {}
    for m in msgs:
        if m.get("error") or m.get("errorDetail"):
            from berth.cli.context import CliError
            detail = m.get("errorDetail") or {}
            raise CliError(detail.get("message") or m.get("error") or "error", int(detail.get("code") or 1))
        if m.get("aux") is not None:
            if aux is not None:
                aux(m)
            continue
        has_progress = "progressDetail" in m or bool(m.get("progress"))
        diff = 0
        mid = m.get("id") or ""
        if mid and has_progress:
            if mid not in ids:
                ids[mid] = len(ids)
                if tty:
                    out.write("\n")
            diff = len(ids) - ids[mid]
            if tty:
                out.write(f"\x1b[{diff}A")
        else:
            ids = {}
        _display_one(m, out, tty, width)
        if mid and tty and diff:
            out.write(f"\x1b[{diff}B")
        out.flush()


def _display_one(m: dict, out: Any, tty: bool, width: int) -> None:
    detail = m.get("progressDetail")
    has_progress = "progressDetail" in m or bool(m.get("progress"))
    progress = progress_bar(detail, width) if detail else (m.get("progress") or "")
    endl = ""
    if tty and not m.get("stream") and has_progress:
        out.write("\x1b[2K\r")
        endl = "\r"
    elif progress:
        return  # no progress bars off a terminal
    if m.get("id"):
        out.write(f"{m['id']}: ")
    if m.get("from"):
        out.write(f"(from {m['from']}) ")
    status = m.get("status") or ""
    if tty and has_progress:
        out.write(f"{status} {progress}{endl}")
    elif m.get("stream"):
        out.write(m["stream"] + endl)
    else:
        out.write(f"{status}{endl}\n")


class ByteProgress:
    """Counts bytes flowing through an iterator and shows ``label  1.2MB/4.5MB`` on a terminal.

    ``stream`` is where the line goes (None: nothing is shown); the line is cleared at the end.
    """

    def __init__(self, label: str, stream: Any = None, total: int = 0) -> None:
        self.label, self.stream, self.total, self.done = label, stream, total, 0
        self._last = 0.0

    def wrap(self, chunks: Iterable[bytes]) -> Iterable[bytes]:
        try:
            for c in chunks:
                self.done += len(c)
                self._show()
                yield c
        finally:
            self.finish()

    def _show(self, force: bool = False) -> None:
        if self.stream is None:
            return
        import time as _time
        now = _time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        bar = progress_bar({"current": self.done, "total": self.total}, _term_width(self.stream))
        self.stream.write(f"\x1b[2K\r{self.label} {bar}")
        self.stream.flush()

    def finish(self) -> None:
        if self.stream is not None and self._last:
            self.stream.write("\x1b[2K\r")
            self.stream.flush()
            self._last = 0.0
