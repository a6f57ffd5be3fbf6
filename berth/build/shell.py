"""Variable substitution as Docker's shell lexer does it for ADD, COPY, ENV, EXPOSE, FROM, LABEL,
STOPSIGNAL, USER, VOLUME, WORKDIR, ARG and ONBUILD: ``$VAR``, ``${VAR}``, ``${VAR:-x}``,
``${VAR-x}``, ``${VAR:+x}``, ``${VAR+x}``, ``${VAR:?msg}``; single quotes keep text literal,
double quotes group, the escape character escapes the next character; quotes are removed.
"""

from __future__ import annotations

from collections.abc import Mapping

from berth.errors import InvalidArgument


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str, quotes: bool) -> None:
        self.s = text
        self.i = 0
        self.env = env
        self.escape = escape
        self.quotes = quotes
        self.used: set[str] = set()

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def next(self) -> str:
        ch = self.peek()
        self.i += 1
        return ch

    def words(self, split: bool) -> list[str]:
        words: list[str] = []
        cur: list[str] = []
        have = False
        while self.i < len(self.s):
            ch = self.next()
            if split and ch.isspace():
                if have:
                    words.append("".join(cur))
                    cur, have = [], False
                continue
            have = True
            if ch == self.escape and self.quotes:
                nxt = self.next()
                cur.append(nxt)
            elif ch == "'" and self.quotes:
                cur.append(self._until("'"))
            elif ch == '"' and self.quotes:
                cur.append(self._double())
            elif ch == "$":
                cur.append(self._dollar())
            else:
                cur.append(ch)
        if have:
            words.append("".join(cur))
        return words

    def _until(self, end: str) -> str:
        out = []
        while True:
            if self.i >= len(self.s):
                raise InvalidArgument(f"unexpected end of statement while looking for matching {end}")
            ch = self.next()
            if ch == end:
                return "".join(out)
            out.append(ch)

    def _double(self) -> str:
        out = []
        while True:
            if self.i >= len(self.s):
                raise InvalidArgument('unexpected end of statement while looking for matching double-quote')
            ch = self.next()
            if ch == '"':
                return "".join(out)
            if ch == self.escape:
                nxt = self.next()
                if nxt in ('"', "$", self.escape):
                    out.append(nxt)
                else:
                    out.append(ch + nxt)
            elif ch == "$":
                out.append(self._dollar())
            else:
                out.append(ch)

    def _name(self) -> str:
        start = self.i
        while self.i < len(self.s) and (self.s[self.i].isalnum() or self.s[self.i] == "_"):
            self.i += 1
        return self.s[start:self.i]

    def _get(self, name: str) -> str | None:
        self.used.add(name)
        return self.env.get(name)

    def _dollar(self) -> str:
        ch = self.peek()
        if ch == "{":
            self.next()
            name = self._name()
            if not name:
                raise InvalidArgument("bad substitution: missing variable name in ${}")
            op = self.next()
            if op == "}":
                return self._get(name) or ""
            colon = op == ":"
            if colon:
                op = self.next()
            if op not in ("-", "+", "?"):
                raise InvalidArgument(f"unsupported modifier ({op}) in substitution")
            word = self._word_until_brace()
            val = self._get(name)
            is_set = val is not None and (val != "" or not colon)
            if op == "-":
                return val if is_set else word  # type: ignore[return-value]
            if op == "+":
                return word if is_set else ""
            if not is_set:
                raise InvalidArgument(f"{name}: {word or 'is not allowed to be unset'}")
            return val  # type: ignore[return-value]
        if ch and (ch.isalnum() or ch == "_"):
            return self._get(self._name()) or ""
        return "$"

    def _word_until_brace(self) -> str:
        out = []
        while True:
            if self.i >= len(self.s):
                raise InvalidArgument("syntax error: missing '}'")
            ch = self.next()
            if ch == "}":
                return "".join(out)
            if ch == self.escape and self.quotes:
                out.append(self.next())
            elif ch == "$":
                out.append(self._dollar())
            elif ch == "'" and self.quotes:
                out.append(self._until("'"))
            elif ch == '"' and self.quotes:
                out.append(self._double())
            else:
                out.append(ch)


def process_word(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand one word (no splitting); quotes removed."""
    lx = _Lexer(word, env, escape, True)
    return "".join(lx.words(False))


def process_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Expand and split on unquoted whitespace (EXPOSE, VOLUME, ... shell form)."""
    return _Lexer(text, env, escape, True).words(True)


def expand_heredoc(text: str, env: Mapping[str, str]) -> str:
    """Expand variables in an unquoted here-document body (quotes are data there)."""
    return "".join(_Lexer(text, env, "\\", False).words(False))


def used_names(text: str, env: Mapping[str, str], escape: str = "\\") -> set[str]:
    """The variable names text refers to (for the cache key)."""
    lx = _Lexer(text, env, escape, True)
    try:
        lx.words(True)
    except InvalidArgument:
        pass
    return lx.used
