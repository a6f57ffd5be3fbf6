"""One class per Dockerfile instruction. Each turns a parsed ``Instruction`` into a change of the
stage: a metadata change (a new config, an ``empty_layer`` history entry), a RUN container, or a
COPY/ADD/WORKDIR layer. The ``Builder`` provides substitution, the cache and the commits.
"""

from __future__ import annotations

import json
import posixpath
import re
from typing import TYPE_CHECKING, ClassVar

from berth.build.parser import Instruction, name_values
from berth.errors import InvalidArgument

if TYPE_CHECKING:
    from berth.build.builder import Builder, Stage

NOP = "/bin/sh -c #(nop) "
PROXY_ARGS = frozenset({"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
                        "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"})
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
          "h": 3_600_000_000_000}


def parse_duration(s: str) -> int:
    """A Go duration ("30s", "1m30s", "500ms") in nanoseconds."""
    if s == "0":
        return 0
    pos = 0
    total = 0.0
    for m in _DURATION.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise InvalidArgument(f"time: invalid duration \"{s}\"")
    return int(total)


class Step:
    """Base class: ``run`` applies the instruction to the stage."""

    name: ClassVar[str] = ""
    allowed_flags: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, ins: Instruction) -> None:
        self.ins = ins
        for f in ins.flags:
            if f not in self.allowed_flags:
                raise InvalidArgument(f"dockerfile parse error on line {ins.line}: unknown flag: {f}")

    async def run(self, b: Builder, st: Stage) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class Meta(Step):
    """An instruction that only changes the config."""

    def change(self, b: Builder, st: Stage, cfg: dict) -> str:
        """Apply the change to the config section; return the history text."""
        raise NotImplementedError

    async def run(self, b: Builder, st: Stage) -> None:
        cfg = json.loads(json.dumps(st.raw.get("config") or {}))
        text = self.change(b, st, cfg)
        await b.commit_meta(st, text, cfg)


def _shell_or_exec(b: Builder, st: Stage, ins: Instruction) -> list[str]:
    if ins.json_args is not None:
        return list(ins.json_args)
    return [*st.shell, ins.args]


class Cmd(Meta):
    name = "CMD"

    def change(self, b, st, cfg):
        cfg["Cmd"] = _shell_or_exec(b, st, self.ins)
        st.cmd_set = True
        return f"{NOP} CMD {json.dumps(cfg['Cmd'])}"


class Entrypoint(Meta):
    name = "ENTRYPOINT"

    def change(self, b, st, cfg):
        cfg["Entrypoint"] = _shell_or_exec(b, st, self.ins) if (self.ins.args or self.ins.json_args) else None
        if not st.cmd_set:
            cfg["Cmd"] = None
        return f"{NOP} ENTRYPOINT {json.dumps(cfg['Entrypoint'])}"


class Env(Meta):
    name = "ENV"

    def change(self, b, st, cfg):
        env = list(cfg.get("Env") or [])
        shown = []
        for k, raw in name_values(self.ins, b.escape):
            v = b.expand(st, raw)
            env = [e for e in env if e.split("=", 1)[0] != k] + [f"{k}={v}"]
            shown.append(f"{k}={v}")
        cfg["Env"] = env
        return f"{NOP} ENV {' '.join(shown)}"


class Label(Meta):
    name = "LABEL"

    def change(self, b, st, cfg):
        labels = dict(cfg.get("Labels") or {})
        shown = []
        for k, raw in name_values(self.ins, b.escape):
            key, v = b.expand(st, k), b.expand(st, raw)
            labels[key] = v
            shown.append(f"{key}={json.dumps(v)}")
        cfg["Labels"] = labels
        return f"{NOP} LABEL {' '.join(shown)}"


class Maintainer(Meta):
    name = "MAINTAINER"

    def change(self, b, st, cfg):
        st.raw["author"] = self.ins.args
        return f"{NOP} MAINTAINER {self.ins.args}"


class Expose(Meta):
    name = "EXPOSE"

    def change(self, b, st, cfg):
        ports = dict(cfg.get("ExposedPorts") or {})
        shown = []
        for word in b.words(st, self.ins.args):
            port, _, proto = word.partition("/")
            proto = (proto or "tcp").lower()
            if proto not in ("tcp", "udp", "sctp"):
                raise InvalidArgument(f"invalid proto: {proto}")
            lo, _, hi = port.partition("-")
            if not lo.isdigit() or (hi and not hi.isdigit()):
                raise InvalidArgument(f"invalid containerPort: {port}")
            for p in range(int(lo), int(hi or lo) + 1):
                if not 0 < p < 65536:
                    raise InvalidArgument(f"invalid containerPort: {p}")
                ports[f"{p}/{proto}"] = {}
                shown.append(f"{p}/{proto}")
        cfg["ExposedPorts"] = ports
        return f"{NOP} EXPOSE {' '.join(sorted(ports))}"


class Volume(Meta):
    name = "VOLUME"

    def change(self, b, st, cfg):
        vols = dict(cfg.get("Volumes") or {})
        words = ([b.expand(st, w) for w in self.ins.json_args] if self.ins.json_args is not None
                 else b.words(st, self.ins.args))
        for w in words:
            if not w.strip():
                raise InvalidArgument("VOLUME specified can not be an empty string")
            vols[w] = {}
        cfg["Volumes"] = vols
        return f"{NOP} VOLUME {json.dumps(words)}"


class User(Meta):
    name = "USER"

    def change(self, b, st, cfg):
        cfg["User"] = b.expand(st, self.ins.args)
        return f"{NOP} USER {cfg['User']}"


class StopSignal(Meta):
    name = "STOPSIGNAL"

    def change(self, b, st, cfg):
        sig = b.expand(st, self.ins.args)
        if not re.fullmatch(r"(SIG)?[A-Z0-9+-]+|\d+", sig):
            raise InvalidArgument(f"invalid signal: {sig}")
        cfg["StopSignal"] = sig
        return f"{NOP} STOPSIGNAL {sig}"


class Shell(Meta):
    name = "SHELL"

    def change(self, b, st, cfg):
        if not self.ins.json_args:
            raise InvalidArgument("SHELL requires at least one argument")
        cfg["Shell"] = list(self.ins.json_args)
        st.shell = list(self.ins.json_args)
        return f"{NOP} SHELL {json.dumps(cfg['Shell'])}"


class Healthcheck(Meta):
    name = "HEALTHCHECK"
    allowed_flags = frozenset({"interval", "timeout", "start-period", "start-interval", "retries"})

    def change(self, b, st, cfg):
        ins = self.ins
        args = ins.args.strip()
        if args.upper() == "NONE":
            if ins.flags:
                raise InvalidArgument("HEALTHCHECK NONE takes no flags")
            cfg["Healthcheck"] = {"Test": ["NONE"]}
            return f"{NOP} HEALTHCHECK &{{[\"NONE\"] 0s 0s 0s 0s 0}}"
        word, _, rest = args.partition(" ")
        if word.upper() != "CMD":
            raise InvalidArgument(f"Unknown type \"{word}\" in HEALTHCHECK (try CMD)")
        rest = rest.strip()
        test: list[str]
        try:
            parsed = json.loads(rest) if rest.startswith("[") else None
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
            test = ["CMD", *parsed]
        else:
            if not rest:
                raise InvalidArgument("Missing command after HEALTHCHECK CMD")
            test = ["CMD-SHELL", rest]
        hc: dict = {"Test": test}
        for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
                          ("start-interval", "StartInterval")):
            v = ins.flag(flag)
            if v is not None:
                d = parse_duration(v)
                if d and d < 1_000_000:
                    raise InvalidArgument(f"Interval \"{flag}\" cannot be less than 1ms")
                hc[key] = d
        r = ins.flag("retries")
        if r is not None:
            if not r.lstrip("-").isdigit() or int(r) < 0:
                raise InvalidArgument(f"--retries cannot be negative ({r})")
            hc["Retries"] = int(r)
        cfg["Healthcheck"] = hc
        return f"{NOP} HEALTHCHECK {json.dumps(hc, sort_keys=True)}"


class OnBuild(Meta):
    name = "ONBUILD"

    def change(self, b, st, cfg):
        trigger = self.ins.args.strip()
        word = trigger.split(None, 1)[0].upper() if trigger else ""
        if word in ("ONBUILD", "FROM", "MAINTAINER"):
            raise InvalidArgument(f"{word} isn't allowed as an ONBUILD trigger" if word != "ONBUILD"
                                  else "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        from berth.build.parser import parse

        parse(trigger)  # a malformed trigger is refused now, not in the child build
        cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), trigger]
        return f"{NOP} ONBUILD {trigger}"


class Arg(Meta):
    name = "ARG"

    def change(self, b, st, cfg):
        shown = []
        for k, raw in name_values(self.ins, b.escape):
            default = None if raw == "\0" else b.expand(st, raw)
            value = b.arg_value(k, default)
            st.args[k] = value
            shown.append(k if raw == "\0" else f"{k}={default}")
        return f"{NOP} ARG {' '.join(shown)}"


class Workdir(Step):
    name = "WORKDIR"

    async def run(self, b, st):
        path = b.expand(st, self.ins.args)
        cfg = json.loads(json.dumps(st.raw.get("config") or {}))
        cur = cfg.get("WorkingDir") or "/"
        cfg["WorkingDir"] = posixpath.normpath(posixpath.join(cur, path))
        await b.workdir(st, cfg, f"{NOP} WORKDIR {cfg['WorkingDir']}")


class Run(Step):
    name = "RUN"
    allowed_flags = frozenset({"network", "mount", "security"})

    async def run(self, b, st):
        ins = self.ins
        if ins.flag("mount") or ins.flag("security"):
            raise InvalidArgument("RUN --mount and --security need BuildKit; "
                                  "berth's builder does not have them")
        network = ins.flag("network")
        if network not in (None, "default", "none", "host"):
            raise InvalidArgument(f"unsupported RUN --network={network}")
        if ins.json_args is not None:
            argv = list(ins.json_args)
            shown = " ".join(argv)
        elif ins.heredocs and _only_heredoc(ins.args):
            body = ins.heredocs[0].content
            argv = [*st.shell, body]
            shown = " ".join([*st.shell, body])
        else:
            script = ins.args
            for h in ins.heredocs:
                script += "\n" + h.content + h.name
            argv = [*st.shell, script]
            shown = " ".join(argv)
        await b.run(st, argv, shown, network=network)


def _only_heredoc(args: str) -> bool:
    return re.fullmatch(r"\s*<<-?(\"[^\"]+\"|'[^']+'|[A-Za-z_][A-Za-z0-9_]*)\s*", args) is not None


class Copy(Step):
    name = "COPY"
    allowed_flags = frozenset({"from", "chown", "chmod", "link", "parents", "exclude"})

    async def run(self, b, st):
        await b.copy(st, self.ins, add=False)


class Add(Step):
    name = "ADD"
    allowed_flags = frozenset({"chown", "chmod", "checksum", "keep-git-dir", "link", "exclude"})

    async def run(self, b, st):
        await b.copy(st, self.ins, add=True)


STEPS: dict[str, type[Step]] = {cls.name: cls for cls in (
    Cmd, Entrypoint, Env, Label, Maintainer, Expose, Volume, User, StopSignal, Shell, Healthcheck,
    OnBuild, Arg, Workdir, Run, Copy, Add)}


def step_for(ins: Instruction) -> Step:
    """The Step object for a parsed instruction (FROM is handled by the builder)."""
    cls = STEPS.get(ins.cmd)
    if cls is None:
        raise InvalidArgument(f"unknown instruction: {ins.cmd}")
    return cls(ins)
