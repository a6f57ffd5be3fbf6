"""berth info: system-wide information from the engine."""

from __future__ import annotations

from berth.cli.flags import Flag

FLAGS = [Flag(("-f", "--format"), "format", str, help="Format output using a Go template")]
USAGE = "[OPTIONS]"
SUMMARY = "Display system-wide information"
MAX_ARGS = 0


def run(cli, opts, args) -> int:
    info = cli.client.info()
    if opts["format"]:
        from berth.cli.format import Template
        fmt = opts["format"]
        cli.print(Template("{{json .}}" if fmt == "json" else fmt).execute(info))
        return 0
    from berth import __version__
    g = info.get
    lines = ["Client:", f" Version:    {__version__}", " Context:    default",
             f" Debug Mode: {'true' if cli.gopts.get('debug') else 'false'}", "", "Server:",
             f" Containers: {g('Containers', 0)}", f"  Running: {g('ContainersRunning', 0)}",
             f"  Paused: {g('ContainersPaused', 0)}", f"  Stopped: {g('ContainersStopped', 0)}",
             f" Images: {g('Images', 0)}", f" Server Version: {g('ServerVersion', '')}",
             f" Storage Driver: {g('Driver', '')}", f" Cgroup Driver: {g('CgroupDriver', '')}",
             f" Cgroup Version: {g('CgroupVersion', '')}",
             f" Swarm: {(g('Swarm') or {}).get('LocalNodeState', 'inactive')}",
             f" Kernel Version: {g('KernelVersion', '')}", f" Operating System: {g('OperatingSystem', '')}",
             f" OSType: {g('OSType', '')}", f" Architecture: {g('Architecture', '')}",
             f" CPUs: {g('NCPU', 0)}", f" Total Memory: {_gib(g('MemTotal', 0))}",
             f" Name: {g('Name', '')}", f" ID: {g('ID', '')}",
             f" Docker Root Dir: {g('DockerRootDir', '')}",
             f" Experimental: {'true' if g('ExperimentalBuild') else 'false'}"]
    cli.print("\n".join(lines))
    return 0


def _gib(n: int) -> str:
    """units.BytesSize: binary units, 4 significant digits ("7.629GiB")."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    size, i = float(n), 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024
        i += 1
    return f"{size:.4g}{units[i]}"
