"""A small pflag-style option parser (fast to import, docker's syntax and error wording)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any



class UsageError(Exception):
    """Bad flags or arguments; the CLI prints it with a usage hint and exits 125 (flags) or 1 (args)."""

    def __init__(self, message: str, status: int = 125) -> None:
        super().__init__(message)
        self.status = status


class Flag:
    """One option: names like ("-a", "--all"); kind is bool, str, int or list (repeatable str)."""

    __slots__ = ("names", "dest", "kind", "default", "help")

    def __init__(self, names: tuple[str, ...], dest: str, kind: type = bool, default: Any = None,
                 help: str = "") -> None:
        self.names, self.dest, self.kind, self.default, self.help = names, dest, kind, default, help

    def metavar(self) -> str:
        return {bool: "", str: " string", int: " int", list: " list"}[self.kind]


class Flags(list):
    """A command's flag list that stops parsing at the first positional argument (``run IMAGE
    CMD -l`` keeps ``-l`` for the command), as docker's ``SetInterspersed(false)``."""

    interspersed = False


def parse(flags: list[Flag], argv: list[str], interspersed: bool = True) -> tuple[dict[str, Any], list[str]]:
    """Parse argv → (options, positional args). ``--`` ends flags; ``-h``/``--help`` sets ``help``
    unless the command defines ``-h`` itself (``run -h HOSTNAME``)."""
    interspersed = interspersed and getattr(flags, "interspersed", True)
    by_name: dict[str, Flag] = {}
    opts: dict[str, Any] = {"help": False}
    for f in flags:
        for n in f.names:
            by_name[n] = f
        opts[f.dest] = list(f.default or []) if f.kind is list else (
            False if f.kind is bool and f.default is None else f.default)
    args: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if a == "--":
            args += argv[i:]
            break
        if a == "--help" or (a == "-h" and "-h" not in by_name):
            opts["help"] = True
            continue
        if a.startswith("--") and len(a) > 2:
            name, eq, val = a.partition("=")
            f = by_name.get(name)
            if f is None:
                raise UsageError(f"unknown flag: {name}")
            if f.kind is bool:
                opts[f.dest] = _bool(val, name) if eq else True
                continue
            if not eq:
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: {name}")
                val, i = argv[i], i + 1
            _set(opts, f, val, name)
        elif a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                c = a[j]
                f = by_name.get("-" + c)
                if f is None:
                    raise UsageError(f"unknown shorthand flag: '{c}' in {a}")
                j += 1
                if f.kind is bool:
                    opts[f.dest] = True
                    continue
                val = a[j:].removeprefix("=")
                if not val:
                    if i >= len(argv):
                        raise UsageError(f"flag needs an argument: '{c}' in {a}")
                    val, i = argv[i], i + 1
                _set(opts, f, val, "-" + c)
                break
        else:
            args.append(a)
            if not interspersed:
                args += argv[i:]
                break
    return opts, args


def _bool(v: str, name: str) -> bool:
    lv = v.lower()
    if lv in ("1", "t", "true"):
        return True
    if lv in ("0", "f", "false"):
        return False
    raise UsageError(f'invalid argument "{v}" for "{name}" flag: '
                     f'strconv.ParseBool: parsing "{v}": invalid syntax')


def _set(opts: dict[str, Any], f: Flag, val: str, name: str) -> None:
    if f.kind is int:
        try:
            opts[f.dest] = int(val)
        except ValueError:
            raise UsageError(f'invalid argument "{val}" for "{name}" flag: strconv.ParseInt: '
                             f'parsing "{val}": invalid syntax') from None
    elif f.kind is list:
        opts[f.dest].append(val)
    else:
        opts[f.dest] = val


def usage_text(flags: list[Flag]) -> str:
    lines = []
    for f in flags:
        short = next((n for n in f.names if not n.startswith("--")), None)
        long = next((n for n in f.names if n.startswith("--")), "")
        left = (f"{short}, " if short else "    ") + long + f.metavar()
        lines.append(f"  {left:<24}{f.help}")
    return "\n".join(lines)
