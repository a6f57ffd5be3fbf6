""".dockerignore: Docker's pattern matcher (``*``, ``?``, ``[...]``, ``**`` across directories,
``!`` exceptions, last match wins, a pattern matching a directory matches what is below it)."""

from __future__ import annotations

import posixpath
import re


class _Pattern:
    """One pattern (a plain class, not a dataclass: the CLI imports this module to make contexts)."""

    __slots__ = ("text", "exclusion", "regex")

    def __init__(self, text: str, exclusion: bool, regex: re.Pattern) -> None:
        self.text, self.exclusion, self.regex = text, exclusion, regex


def _compile(pat: str) -> re.Pattern:
    out = ["^"]
    i = 0
    n = len(pat)
    while i < n:
        ch = pat[i]
        if ch == "*":
            if i + 1 < n and pat[i + 1] == "*":
                i += 2
                if i < n and pat[i] == "/":
                    i += 1
                    out.append("(?:.*/)?")
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            j = pat.find("]", i + 1)
            if j == -1:
                out.append(re.escape(ch))
            else:
                body = pat[i + 1:j]
                if body.startswith("^") or body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pat[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("(?:/.*)?$")
    return re.compile("".join(out), re.DOTALL)


class IgnoreMatcher:
    """Patterns from a .dockerignore file; ``excluded(relpath)`` tells whether a path is left out."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[_Pattern] = []
        for raw in patterns:
            p = raw.strip()
            if not p or p.startswith("#"):
                continue
            excl = p.startswith("!")
            if excl:
                p = p[1:].strip()
            p = posixpath.normpath(p).lstrip("/")
            if p in (".", ""):
                continue
            self.patterns.append(_Pattern(p, excl, _compile(p)))

    @classmethod
    def from_text(cls, text: str) -> IgnoreMatcher:
        return cls(text.splitlines())

    @property
    def has_exceptions(self) -> bool:
        return any(p.exclusion for p in self.patterns)

    def excluded(self, path: str) -> bool:
        path = posixpath.normpath(path).lstrip("/")
        matched = False
        for p in self.patterns:
            if p.exclusion == matched and p.regex.match(path):
                matched = not p.exclusion
        return matched
