"""berth stats: live (or --no-stream one-shot) resource usage of containers, docker's columns."""

from __future__ import annotations

from berth.cli.flags import Flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FLAGS = [
    Flag(("-a", "--all"), "all", bool, help="Show all containers (default shows just running)"),
    Flag(("--format",), "format", str, help="Format output using a custom template"),
    Flag(("--no-stream",), "no_stream", bool, help="Disable streaming stats and only pull the first result"),
    Flag(("--no-trunc",), "no_trunc", bool, help="Do not truncate output"),
]
USAGE = "[OPTIONS] [CONTAINER...]"
SUMMARY = "Display a live stream of container(s) resource usage statistics"

DEFAULT_FORMAT = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}"
                  "\t{{.BlockIO}}\t{{.PIDs}}")
HEADERS = {"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME", "CPUPerc": "CPU %",
           "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O",
           "PIDs": "PIDS"}
_BINARY = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]


def bytes_size(size: float) -> str:
    """go-units BytesSize: binary units, %.4g."""
    i = 0
    size = float(size)
    while size >= 1024.0 and i < len(_BINARY) - 1:
        size /= 1024.0
        i += 1
    return f"{size:.4g}{_BINARY[i]}"


class StatsRow:
    """The fields a stats template sees (docker's statsContext), computed from one stats JSON."""

    def __init__(self, s: dict, container: str = "", trunc: bool = True) -> None:
        self.s, self.container, self.trunc = s, container, trunc

    @property
    def Container(self) -> str:
        return self.container or self.ID

    @property
    def ID(self) -> str:
        cid = self.s.get("id", "") or ""
        return cid[:12] if self.trunc else cid

    @property
    def Name(self) -> str:
        name = self.s.get("name", "") or ""
        return name[1:] if name.startswith("/") else (name or "--")

    def cpu(self) -> float:
        cur, pre = self.s.get("cpu_stats") or {}, self.s.get("precpu_stats") or {}
        cpu_delta = (cur.get("cpu_usage") or {}).get("total_usage", 0) - \
            (pre.get("cpu_usage") or {}).get("total_usage", 0)
        sys_delta = (cur.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
        online = cur.get("online_cpus") or len((cur.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
        if sys_delta > 0 and cpu_delta > 0:
            return cpu_delta / sys_delta * online * 100.0
        return 0.0

    def mem(self) -> tuple[float, float]:
        m = self.s.get("memory_stats") or {}
        usage, stats = m.get("usage") or 0, m.get("stats") or {}
        inactive = stats.get("total_inactive_file", stats.get("inactive_file"))
        if inactive is not None and inactive < usage:
            usage -= inactive
        return usage, m.get("limit") or 0

    @property
    def CPUPerc(self) -> str:
        return f"{self.cpu():.2f}%"

    @property
    def MemUsage(self) -> str:
        used, limit = self.mem()
        return f"{bytes_size(used)} / {bytes_size(limit)}"

    @property
    def MemPerc(self) -> str:
        used, limit = self.mem()
        return f"{used / limit * 100.0 if limit else 0.0:.2f}%"

    @property
    def NetIO(self) -> str:
        from berth.cli.format import human_size
        rx = sum((n or {}).get("rx_bytes", 0) for n in (self.s.get("networks") or {}).values())
        tx = sum((n or {}).get("tx_bytes", 0) for n in (self.s.get("networks") or {}).values())
        return f"{human_size(rx)} / {human_size(tx)}"

    @property
    def BlockIO(self) -> str:
        from berth.cli.format import human_size
        r = w = 0
        for e in (self.s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
            op = (e.get("op") or "").lower()
            if op == "read":
                r += e.get("value", 0)
            elif op == "write":
                w += e.get("value", 0)
        return f"{human_size(r)} / {human_size(w)}"

    @property
    def PIDs(self) -> str:
        return str((self.s.get("pids_stats") or {}).get("current", 0) or 0)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("BlockIO", "CPUPerc", "Container", "ID", "MemPerc", "MemUsage",
                                              "Name", "NetIO", "PIDs")}


def run(cli, opts, args) -> int:
    from berth.cli.format import render
    c = cli.client.containers
    names = list(args) or [x["Id"] for x in c.list(all=opts["all"])]
    fmt = opts["format"] or DEFAULT_FORMAT
    if fmt == "table":
        fmt = DEFAULT_FORMAT
    trunc = not opts["no_trunc"]
    if opts["no_stream"]:
        rows, failed = [], False
        for n in names:
            try:
                s = next(iter(c.stats(n, stream=False)), {})
            except Exception as e:  # noqa: BLE001 - docker reports per container and goes on
                from berth.errors import BerthError
                if not isinstance(e, BerthError):
                    raise
                cli.error(f"Error response from daemon: {e}")
                failed = True
                continue
            rows.append(StatsRow(s, n if args else "", trunc))
        cli.out.write(render(fmt, rows, HEADERS))
        return 1 if failed else 0
    return _stream(cli, names, fmt, trunc, bool(args))


def _stream(cli: Any, names: list[str], fmt: str, trunc: bool, given: bool) -> int:
    """One reader thread per container; redraw the table every second (docker clears the screen)."""
    import threading
    import time

    from berth.cli.format import render
    latest: dict[str, dict] = {}
    lock = threading.Lock()

    def follow(n: str) -> None:
        try:
            for s in cli.client.containers.stats(n, stream=True):
                with lock:
                    latest[n] = s
        except Exception:  # noqa: BLE001 - the container went away: keep showing the last sample
            pass
    for n in names:
        threading.Thread(target=follow, args=(n,), daemon=True).start()
    tty = cli.out.isatty()
    while True:
        time.sleep(1.0)
        with lock:
            rows = [StatsRow(latest[n], n if given else "", trunc) for n in names if n in latest]
        text = render(fmt, rows, HEADERS)
        cli.out.write(("\x1b[2J\x1b[H" if tty else "") + text)
        cli.out.flush()
