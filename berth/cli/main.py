"""``berth``: the docker-compatible command line. Global flags, then a lazily imported command module."""

from __future__ import annotations

import sys

from berth.cli.flags import Flag, UsageError, parse, usage_text

GLOBAL_FLAGS = [
    Flag(("-H", "--host"), "host", list, help="Daemon socket to connect to"),
    Flag(("--tls",), "tls", bool, help="Use TLS; implied by --tlsverify"),
    Flag(("--tlsverify",), "tlsverify", bool, help="Use TLS and verify the remote"),
    Flag(("--tlscacert",), "tlscacert", str, help="Trust certs signed only by this CA"),
    Flag(("--tlscert",), "tlscert", str, help="Path to TLS certificate file"),
    Flag(("--tlskey",), "tlskey", str, help="Path to TLS key file"),
    Flag(("-D", "--debug"), "debug", bool, help="Enable debug mode"),
    Flag(("-l", "--log-level"), "log_level", str, "info", help="Set the logging level"),
    Flag(("--config",), "config", str, help="Location of client config files"),
    Flag(("-v", "--version"), "version", bool, help="Print version information and quit"),
]

# command words → module in berth.cli.commands
COMMANDS = {
    "version": "version", "info": "info", "ps": "ps", "images": "images", "inspect": "inspect",
    "rm": "rm", "stop": "stop", "kill": "kill", "logs": "logs", "wait": "wait",
    # containers
    "run": "run", "create": "create", "start": "start", "restart": "restart", "exec": "exec",
    "attach": "attach", "cp": "cp", "top": "top", "stats": "stats", "pause": "pause", "unpause": "unpause",
    "rename": "rename", "update": "update", "port": "port", "diff": "diff", "export": "export",
    "commit": "commit",
    # images
    "pull": "pull", "push": "push", "tag": "tag", "rmi": "rmi", "history": "history", "save": "save",
    "load": "load", "import": "import_", "build": "build",
    # system
    "events": "events",
}
_CONTAINER_VERBS = ("run", "create", "start", "restart", "exec", "attach", "cp", "top", "stats", "pause",
                    "unpause", "rename", "update", "port", "diff", "export", "commit", "rm", "stop", "kill",
                    "logs", "wait", "inspect")
_IMAGE_VERBS = ("pull", "push", "tag", "history", "save", "load", "inspect", "build")
ALIASES = {
    ("container", "ls"): "ps", ("container", "ps"): "ps", ("container", "list"): "ps",
    ("container", "prune"): "container_prune",
    **{("container", v): COMMANDS[v] for v in _CONTAINER_VERBS},
    ("image", "ls"): "images", ("image", "list"): "images", ("image", "rm"): "rmi",
    ("image", "import"): "import_", ("image", "prune"): "image_prune",
    ("image", "bootstrap"): "image_bootstrap",
    **{("image", v): COMMANDS[v] for v in _IMAGE_VERBS},
    ("builder", "prune"): "builder_prune", ("builder", "build"): "build",
    ("network", "create"): "network_create", ("network", "ls"): "network_ls",
    ("network", "list"): "network_ls", ("network", "rm"): "network_rm", ("network", "remove"): "network_rm",
    ("network", "inspect"): "network_inspect",
    ("network", "connect"): "network_connect", ("network", "disconnect"): "network_disconnect",
    ("network", "prune"): "network_prune",
    ("volume", "create"): "volume_create", ("volume", "ls"): "volume_ls", ("volume", "list"): "volume_ls",
    ("volume", "rm"): "volume_rm", ("volume", "remove"): "volume_rm", ("volume", "inspect"): "volume_inspect",
    ("volume", "prune"): "volume_prune",
    ("system", "info"): "info", ("system", "df"): "system_df", ("system", "prune"): "system_prune",
    ("system", "events"): "events",
}

MAIN_USAGE = """Usage:  berth [OPTIONS] COMMAND

A container platform with the shape of Docker

Common Commands:
  run         Create and run a new container from an image
  exec        Execute a command in a running container
  ps          List containers
  build       Build an image from a Dockerfile
  pull        Download an image from a registry
  push        Upload an image to a registry
  images      List images
  version     Show the berth version information
  info        Display system-wide information

Management Commands:
  builder     Manage builds
  container   Manage containers
  image       Manage images
  network     Manage networks
  system      Manage berth
  volume      Manage volumes

Commands:
  attach      Attach local standard input, output, and error streams to a running container
  commit      Create a new image from a container's changes
  cp          Copy files/folders between a container and the local filesystem
  create      Create a new container
  diff        Inspect changes to files or directories on a container's filesystem
  events      Get real time events from the server
  export      Export a container's filesystem as a tar archive
  history     Show the history of an image
  import      Import the contents from a tarball to create a filesystem image
  inspect     Return low-level information on objects
  kill        Kill one or more running containers
  load        Load an image from a tar archive or STDIN
  logs        Fetch the logs of a container
  pause       Pause all processes within one or more containers
  port        List port mappings or a specific mapping for the container
  rename      Rename a container
  restart     Restart one or more containers
  rm          Remove one or more containers
  rmi         Remove one or more images
  save        Save one or more images to a tar archive (streamed to STDOUT by default)
  start       Start one or more stopped containers
  stats       Display a live stream of container(s) resource usage statistics
  stop        Stop one or more running containers
  tag         Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
  top         Display the running processes of a container
  unpause     Unpause all processes within one or more containers
  update      Update configuration of one or more containers
  wait        Block until one or more containers stop, then print their exit codes

Global Options:
"""
MAIN_USAGE_TAIL = "\n\nRun 'berth COMMAND --help' for more information on a command."

# management words → (summary, [(subcommand, summary)]) as `berth <word>` lists them
_SUB = {
    "attach": "Attach local standard input, output, and error streams to a running container",
    "bootstrap": "Make a base image (busybox from busybox-static, debian with debootstrap)",
    "build": "Build an image from a Dockerfile", "commit": "Create a new image from a container's changes",
    "connect": "Connect a container to a network",
    "cp": "Copy files/folders between a container and the local filesystem",
    "disconnect": "Disconnect a container from a network",
    "diff": "Inspect changes to files or directories on a container's filesystem",
    "df": "Show berth disk usage", "events": "Get real time events from the server",
    "exec": "Execute a command in a running container",
    "export": "Export a container's filesystem as a tar archive",
    "history": "Show the history of an image",
    "import": "Import the contents from a tarball to create a filesystem image",
    "info": "Display system-wide information", "kill": "Kill one or more running containers",
    "load": "Load an image from a tar archive or STDIN", "logs": "Fetch the logs of a container",
    "pause": "Pause all processes within one or more containers",
    "port": "List port mappings or a specific mapping for the container",
    "pull": "Download an image from a registry", "push": "Upload an image to a registry",
    "rename": "Rename a container", "restart": "Restart one or more containers",
    "run": "Create and run a new container from an image", "save": "Save one or more images to a tar archive "
    "(streamed to STDOUT by default)", "start": "Start one or more stopped containers",
    "stats": "Display a live stream of container(s) resource usage statistics",
    "stop": "Stop one or more running containers",
    "tag": "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
    "top": "Display the running processes of a container", "unpause": "Unpause all processes within one or "
    "more containers", "update": "Update configuration of one or more containers",
    "wait": "Block until one or more containers stop, then print their exit codes",
}
_NOUN = {"container": "containers", "image": "images", "network": "networks", "volume": "volumes"}
MANAGEMENT = {"builder": "Manage builds", "container": "Manage containers", "image": "Manage images",
              "network": "Manage networks", "system": "Manage berth", "volume": "Manage volumes"}
_HIDDEN_SUBS = {"list", "remove", "ps"}  # aliases docker does not list


def _sub_summary(word: str, sub: str) -> str:
    noun = _NOUN.get(word, "")
    special = {
        "create": f"Create a {noun[:-1]}" if word != "container" else "Create a new container",
        "inspect": f"Display detailed information on one or more {noun}",
        "ls": f"List {noun}", "rm": f"Remove one or more {noun}",
        "prune": {"container": "Remove all stopped containers", "image": "Remove unused images",
                  "network": "Remove all unused networks", "volume": "Remove unused local volumes",
                  "builder": "Remove build cache", "system": "Remove unused data"}.get(word, ""),
    }
    return special.get(sub) or _SUB.get(sub, "")


def management_usage(word: str) -> str:
    subs = sorted({s for (w, s) in ALIASES if w == word and s not in _HIDDEN_SUBS})
    lines = "".join(f"  {s:<11} {_sub_summary(word, s)}\n" for s in subs)
    return (f"Usage:  berth {word} COMMAND\n\n{MANAGEMENT[word]}\n\nCommands:\n{lines}\n"
            f"Run 'berth {word} COMMAND --help' for more information on a command.")


def _management(word: str, rest: list[str]) -> int:
    """A bare management word (or one with an unknown subcommand), as docker answers it."""
    hint = f"\n\nUsage:  berth {word}\n\nRun 'berth {word} --help' for more information"
    if not rest or rest[0] in ("-h", "--help"):
        print(management_usage(word))
        return 0
    if rest[0].startswith("-"):
        flag = rest[0]
        msg = f"unknown flag: {flag.partition('=')[0]}" if flag.startswith("--") else \
            f"unknown shorthand flag: '{flag[1:2]}' in {flag}"
        print(msg + hint, file=sys.stderr)
        return 125
    print(f"berth: unknown command: berth {word} {rest[0]}" + hint, file=sys.stderr)
    return 1


def _resolve(words: list[str]) -> tuple[str | None, str, list[str]]:
    if len(words) >= 2 and (words[0], words[1]) in ALIASES:
        return ALIASES[(words[0], words[1])], f"{words[0]} {words[1]}", words[2:]
    return COMMANDS.get(words[0]), words[0], words[1:]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    err = sys.stderr
    try:
        gopts, rest = parse(GLOBAL_FLAGS, argv, interspersed=False)
    except UsageError as e:
        print(f"{e}\nSee 'berth --help'.", file=err)
        return 125
    if gopts["version"]:
        from berth import __version__
        print(f"berth version {__version__}")
        return 0
    if not rest or gopts["help"]:
        print(MAIN_USAGE + usage_text(GLOBAL_FLAGS) + MAIN_USAGE_TAIL)
        return 0
    if rest[0] in MANAGEMENT and (len(rest) < 2 or (rest[0], rest[1]) not in ALIASES):
        return _management(rest[0], rest[1:])
    module, name, args = _resolve(rest)
    if module is None:
        print(f"berth: '{rest[0]}' is not a berth command.\nSee 'berth --help'", file=err)
        return 1
    import importlib
    try:
        mod = importlib.import_module(f"berth.cli.commands.{module}")
    except ModuleNotFoundError as e:
        if e.name != f"berth.cli.commands.{module}":
            raise
        print(f"berth: '{name}' is not a berth command.\nSee 'berth --help'", file=err)
        return 1
    usage = f"Usage:  berth {name} {mod.USAGE}\n\n{mod.SUMMARY}"
    try:
        opts, args = parse(mod.FLAGS, args)
    except UsageError as e:
        print(f"{e}\nSee 'berth {name} --help'.", file=err)
        return e.status
    if opts["help"]:
        print(f"\n{usage}\n\nOptions:\n{usage_text(mod.FLAGS)}")
        return 0
    min_args = getattr(mod, "MIN_ARGS", 0)
    max_args = getattr(mod, "MAX_ARGS", None)
    if len(args) < min_args or (max_args is not None and len(args) > max_args):
        if max_args == 0:
            want = f'"berth {name}" accepts no arguments.'
        elif min_args == max_args:
            want = f'"berth {name}" requires exactly {min_args} argument{"s" if min_args > 1 else ""}.'
        elif len(args) < min_args:
            want = f'"berth {name}" requires at least {min_args} argument{"s" if min_args > 1 else ""}.'
        else:
            want = f'"berth {name}" requires at most {max_args} argument{"s" if max_args != 1 else ""}.'
        print(f"{want}\nSee 'berth {name} --help'.\n\n{usage}", file=err)
        return 1
    from berth.cli.context import Cli
    cli = Cli(gopts)
    return cli.run(mod.run, opts, args)
