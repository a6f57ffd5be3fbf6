"""berth version: the client block without the daemon, then the server block (or an error, exit 1)."""

from __future__ import annotations

import os
import sys

from berth.cli.flags import Flag

FLAGS = [Flag(("-f", "--format"), "format", str, help="Format output using a Go template")]
USAGE = "[OPTIONS]"
SUMMARY = "Show the berth version information"
MAX_ARGS = 0

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


def client_info() -> dict:
    from berth import __version__
    from berth.client.transport import API_VERSION
    arch = _ARCH.get(os.uname().machine, os.uname().machine)
    return {"Version": __version__, "ApiVersion": API_VERSION, "APIVersion": API_VERSION,
            "DefaultAPIVersion": API_VERSION, "PythonVersion": sys.version.split()[0], "Os": "linux",
            "Arch": arch, "Context": "default"}


def run(cli, opts, args) -> int:
    from berth.client.transport import ConnectionFailed
    from berth.errors import BerthError
    client = client_info()
    server = None
    error = None
    try:
        server = cli.client.version()
        server.setdefault("APIVersion", server.get("ApiVersion"))
        server.setdefault("MinAPIVersion", server.get("MinAPIVersion"))
    except ConnectionFailed as e:
        error = str(e)
    except BerthError as e:
        error = f"Error response from daemon: {e}"
    if opts["format"]:
        from berth.cli.format import Template
        text = Template(opts["format"]).execute({"Client": client, "Server": server})
        cli.print(text)
    else:
        cli.print("Client:")
        cli.print(f" Version:           {client['Version']}")
        cli.print(f" API version:       {client['ApiVersion']}")
        cli.print(f" Python version:    {client['PythonVersion']}")
        cli.print(f" OS/Arch:           {client['Os']}/{client['Arch']}")
        cli.print(f" Context:           {client['Context']}")
        if server is not None:
            cli.print("")
            cli.print("Server:")
            cli.print(" Engine:")
            cli.print(f"  Version:          {server.get('Version', '')}")
            cli.print(f"  API version:      {server.get('ApiVersion', '')} "
                      f"(minimum version {server.get('MinAPIVersion', '')})")
            cli.print(f"  Runtime version:  {server.get('GoVersion', '')}")
            cli.print(f"  Git commit:       {server.get('GitCommit', '')}")
            cli.print(f"  Built:            {server.get('BuildTime', '')}")
            cli.print(f"  OS/Arch:          {server.get('Os', '')}/{server.get('Arch', '')}")
            cli.print(f"  Kernel version:   {server.get('KernelVersion', '')}")
    if error:
        cli.out.flush()
        cli.error(error)
        return 1
    return 0
