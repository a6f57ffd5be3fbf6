"""Dockerfile text → a list of parsed instructions.

Handles parser directives (``# escape=``, ``# syntax=``, ``# check=``), comments, line
continuations (with comment lines inside them), here-documents (``<<EOF``, ``<<-EOF``, quoted
delimiters), ``--flag=value`` options and the exec (JSON) versus shell forms. Variable
substitution is not done here: which instructions take it, and with which variables, is decided
when the build reaches them (``berth.build.shell``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from berth.errors import InvalidArgument

MAX_DOCKERFILE = 4 << 20
KNOWN = frozenset({
    "FROM", "RUN", "CMD", "ENTRYPOINT", "ENV", "ARG", "LABEL", "EXPOSE", "VOLUME", "USER", "WORKDIR",
    "SHELL", "STOPSIGNAL", "HEALTHCHECK", "ONBUILD", "COPY", "ADD", "MAINTAINER",
})
HEREDOC_INSTRUCTIONS = frozenset({"RUN", "COPY", "ADD"})
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"<<(-?)(?:\"([^\"\s]+)\"|'([^'\s]+)'|([A-Za-z_][A-Za-z0-9_]*))")
_FLAG = re.compile(r"^--([a-zA-Z][a-zA-Z0-9-]*)(?:=(.*))?$")


@dataclass
class Heredoc:
    """One here-document: its delimiter name, body, and whether it may be expanded."""

    name: str
    content: str
    expand: bool = True
    chomp: bool = False


@dataclass
class Instruction:
    """One Dockerfile instruction as written (flags split off, not yet substituted)."""

    cmd: str                      # upper case: "RUN"
    args: str                     # the text after the command and its flags
    original: str                 # the instruction line as written (continuations joined)
    line: int                     # 1-based line of the instruction
    flags: dict[str, list[str]] = field(default_factory=dict)
    json_args: list[str] | None = None   # exec form
    heredocs: list[Heredoc] = field(default_factory=list)

    def flag(self, name: str, default: str | None = None) -> str | None:
        vals = self.flags.get(name)
        return vals[-1] if vals else default


@dataclass
class Dockerfile:
    instructions: list[Instruction]
    directives: dict[str, str]
    escape: str = "\\"


def parse(text: str | bytes) -> Dockerfile:
    """Parse a Dockerfile; InvalidArgument (with the line number) for malformed input."""
    if isinstance(text, bytes):
        if len(text) > MAX_DOCKERFILE:
            raise InvalidArgument(f"Dockerfile too large ({len(text)} bytes > {MAX_DOCKERFILE})")
        if text.startswith(b"\xef\xbb\xbf"):
            text = text[3:]
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidArgument(f"Dockerfile is not valid UTF-8: {e}") from None
    if len(text) > MAX_DOCKERFILE:
        raise InvalidArgument("Dockerfile too large")
    lines = text.replace("\r\n", "\n").split("\n")
    directives: dict[str, str] = {}
    i = 0
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i].strip())
        if not m:
            break
        key, value = m.group(1).lower(), m.group(2)
        if key not in ("escape", "syntax", "check"):
            break  # an unknown directive is a comment, and ends the directives
        if key in directives:
            raise InvalidArgument(f"only one {key} parser directive can be used")
        directives[key] = value
        i += 1
    escape = directives.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise InvalidArgument(f"invalid escape token '{escape}' does not match ` or \\")
    out: list[Instruction] = []
    n = len(lines)
    while i < n:
        raw = lines[i]
        stripped = raw.strip()
        start = i + 1
        i += 1
        if not stripped or stripped.startswith("#"):
            continue
        parts = [raw]
        text_line = raw.rstrip()
        while text_line.endswith(escape) and i <= n:
            parts[-1] = text_line[: -len(escape)]
            # continuation: skip comment lines and empty lines inside it
            while i < n and (not lines[i].strip() or lines[i].strip().startswith("#")):
                i += 1
            if i >= n:
                text_line = ""
                break
            parts.append(lines[i])
            text_line = lines[i].rstrip()
            i += 1
        joined = "".join(parts).strip()
        ins = _instruction(joined, start, escape)
        if ins.cmd in HEREDOC_INSTRUCTIONS and ins.json_args is None:
            i = _read_heredocs(ins, lines, i)
        out.append(ins)
    return Dockerfile(out, directives, escape)


def _read_heredocs(ins: Instruction, lines: list[str], i: int) -> int:
    for m in _HEREDOC.finditer(ins.args):
        chomp = m.group(1) == "-"
        name = m.group(2) or m.group(3) or m.group(4)
        expand = m.group(4) is not None
        body: list[str] = []
        while True:
            if i >= len(lines):
                raise InvalidArgument(f"line {ins.line}: unterminated heredoc {name}")
            line = lines[i]
            i += 1
            check = line.lstrip("\t") if chomp else line
            if check == name:
                break
            body.append(check)
        ins.heredocs.append(Heredoc(name, "".join(b + "\n" for b in body), expand, chomp))
    return i


def _instruction(text: str, line: int, escape: str) -> Instruction:
    cmd, _, rest = text.partition(" ")
    if "\t" in cmd:
        cmd, _, more = cmd.partition("\t")
        rest = more + " " + rest
    cmd_u = cmd.upper()
    if cmd_u not in KNOWN:
        raise InvalidArgument(f"dockerfile parse error on line {line}: unknown instruction: {cmd}")
    rest = rest.strip()
    flags: dict[str, list[str]] = {}
    while cmd_u != "ONBUILD" and rest.startswith("--"):
        word, _, tail = rest.partition(" ")
        m = _FLAG.match(word)
        if not m:
            break
        flags.setdefault(m.group(1), []).append(m.group(2) if m.group(2) is not None else "true")
        rest = tail.strip()
    ins = Instruction(cmd=cmd_u, args=rest, original=text, line=line, flags=flags)
    if cmd_u in ("RUN", "CMD", "ENTRYPOINT", "SHELL", "VOLUME", "COPY", "ADD", "HEALTHCHECK") and \
            rest.startswith("["):
        try:
            val = json.loads(rest)
        except ValueError:
            val = None
        if isinstance(val, list) and all(isinstance(v, str) for v in val):
            ins.json_args = val
    if cmd_u == "SHELL" and ins.json_args is None:
        raise InvalidArgument(f"line {line}: SHELL requires the arguments to be in JSON form")
    if not rest and cmd_u not in ("RUN", "CMD", "ENTRYPOINT", "HEALTHCHECK"):
        raise InvalidArgument(f"dockerfile parse error on line {line}: "
                              f"{cmd_u} requires at least one argument")
    return ins


def split_words(text: str, escape: str = "\\") -> list[str]:
    """Split on unquoted whitespace, keeping quotes and escapes (Docker's parseWords)."""
    words: list[str] = []
    cur: list[str] = []
    quote = ""
    esc = False
    in_word = False
    for ch in text:
        if esc:
            cur.append(ch)
            esc = False
            continue
        if ch == escape:
            cur.append(ch)
            esc = True
            in_word = True
            continue
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = ""
            continue
        if ch in "\"'":
            quote = ch
            cur.append(ch)
            in_word = True
            continue
        if ch.isspace():
            if in_word:
                words.append("".join(cur))
                cur = []
                in_word = False
            continue
        cur.append(ch)
        in_word = True
    if in_word:
        words.append("".join(cur))
    return words


def name_values(ins: Instruction, escape: str = "\\") -> list[tuple[str, str]]:
    """ENV / LABEL / ARG pairs: ``k=v k2="v 2"`` or the legacy ``k some value`` (values unexpanded)."""
    words = split_words(ins.args, escape)
    if not words:
        raise InvalidArgument(f"{ins.cmd} requires at least one argument")
    if "=" not in words[0]:
        if ins.cmd == "ARG":
            return [(w, "\0") for w in words]  # "\0": declared without a default
        key = words[0]
        value = ins.args[len(key):].strip()
        if not value:
            raise InvalidArgument(f"{ins.cmd} names can not be blank" if not key else
                                  f"{ins.cmd} {key} requires a value (or use {key}=value)")
        return [(key, value)]
    pairs = []
    for w in words:
        if "=" not in w:
            if ins.cmd == "ARG":
                pairs.append((w, "\0"))
                continue
            raise InvalidArgument(f"Syntax error - can't find = in \"{w}\". Must be of the form: name=value")
        k, _, v = w.partition("=")
        if not k:
            raise InvalidArgument(f"{ins.cmd} names can not be blank")
        pairs.append((k, v))
    return pairs
