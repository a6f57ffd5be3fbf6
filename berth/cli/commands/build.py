"""berth build: build an image from a Dockerfile (docker's classic builder flags and output)."""

from __future__ import annotations

import os
import sys

from berth.cli.flags import Flag

FLAGS = [
    Flag(("--build-arg",), "build_arg", list, help="Set build-time variables"),
    Flag(("-f", "--file"), "file", str, help="Name of the Dockerfile (default: \"PATH/Dockerfile\")"),
    Flag(("--force-rm",), "force_rm", bool, help="Always remove intermediate containers"),
    Flag(("--iidfile",), "iidfile", str, help="Write the image ID to the file"),
    Flag(("--label",), "label", list, help="Set metadata for an image"),
    Flag(("--network",), "network", str, "default",
         help="Set the networking mode for the RUN instructions during build"),
    Flag(("--no-cache",), "no_cache", bool, help="Do not use cache when building the image"),
    Flag(("--platform",), "platform", str, help="Set platform if server is multi-platform capable"),
    Flag(("--pull",), "pull", bool, help="Always attempt to pull a newer version of the image"),
    Flag(("-q", "--quiet"), "quiet", bool, help="Suppress the build output and print image ID on success"),
    Flag(("--rm",), "rm", bool, True, help="Remove intermediate containers after a successful build"),
    Flag(("-t", "--tag"), "tag", list, help="Name and optionally a tag in the \"name:tag\" format"),
    Flag(("--target",), "target", str, help="Set the target build stage to build."),
]
USAGE = "[OPTIONS] PATH | URL | -"
SUMMARY = "Build an image from a Dockerfile"
MIN_ARGS = 1
MAX_ARGS = 1


def build_args(values: list[str], env: dict[str, str] | None = None) -> dict[str, str | None]:
    """``--build-arg K=V``; ``K`` alone takes the value from the environment (null when unset)."""
    env = os.environ if env is None else env
    out: dict[str, str | None] = {}
    for v in values:
        k, eq, val = v.partition("=")
        out[k] = val if eq else env.get(k)
    return out


def labels(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        k, _, val = v.partition("=")
        out[k] = val
    return out


class StepTimer:
    """On a terminal, the line that ends a step (`` ---> <id>``) also shows how long the step took."""

    def __init__(self, clock=None) -> None:
        import time

        self.clock = clock or time.monotonic
        self.start: float | None = None

    def __call__(self, text: str) -> str:
        if text.startswith("Step "):
            self.start = self.clock()
        elif self.start is not None and len(text) == 19 and text.startswith(" ---> ") \
                and text.endswith("\n") and all(c in "0123456789abcdef" for c in text[6:18]):
            took = self.clock() - self.start
            self.start = None
            return f"{text[:-1]}  {took:.2f}s\n"
        return text


def _context(cli, opts, src: str) -> tuple[object, str]:
    """(the body's chunks, the Dockerfile's name in the context)."""
    from berth.cli.context import CliError
    from berth.client import build as cb

    df_opt = opts["file"]
    if src == "-":
        if df_opt == "-":
            raise CliError("invalid argument: can't use stdin for both build context and dockerfile")
        stdin = sys.stdin.buffer
        head = stdin.read(512)
        if cb.is_archive(head):
            return cb.stdin_chunks(head, stdin), df_opt or "Dockerfile"
        data = head + stdin.read()
        return [cb.single_file_tar("Dockerfile", data)], "Dockerfile"
    if "://" in src or src.startswith("git@"):
        raise CliError(f"unable to prepare context: remote contexts are not supported by berth ({src})")
    if not os.path.isdir(src):
        raise CliError(f'unable to prepare context: path "{src}" not found')
    extra: dict[str, bytes] = {}
    if df_opt == "-":
        name = cb.random_dockerfile_name()
        extra[name] = sys.stdin.buffer.read()
    else:
        try:
            name, outside = cb.dockerfile_in_context(src, df_opt)
        except Exception as e:  # noqa: BLE001 - NotFound with docker's wording
            raise CliError(str(e)) from None
        if outside is not None:
            with open(outside, "rb") as f:
                data = f.read()
            name = cb.random_dockerfile_name()
            extra[name] = data
    assert name is not None
    return cb.context_tar(src, keep=(name, ".dockerignore"), extra=extra), name


def run(cli, opts, args) -> int:
    from berth.cli.context import CliError
    from berth.client import build as cb

    if opts["iidfile"]:
        try:
            os.unlink(opts["iidfile"])
        except FileNotFoundError:
            pass
        except OSError as e:
            raise CliError(f"Removing image ID file: {e}") from None
    body, dockerfile = _context(cli, opts, args[0])
    params = {
        "t": opts["tag"] or None, "dockerfile": dockerfile, "q": opts["quiet"] or None,
        "nocache": opts["no_cache"] or None, "rm": opts["rm"], "forcerm": opts["force_rm"] or None,
        "pull": opts["pull"] or None, "target": opts["target"], "platform": opts["platform"],
        "networkmode": opts["network"] if opts["network"] != "default" else None,
        "buildargs": build_args(opts["build_arg"]) or None, "labels": labels(opts["label"]) or None,
    }
    resp = cb.post_build(cli.client.transport, body, params)
    image_id = ""
    quiet_out: list[str] = []
    out = cli.out
    timer = StepTimer() if getattr(out, "isatty", lambda: False)() else None
    for msg in resp.iter_json():
        err = msg.get("errorDetail") or ({"message": msg["error"]} if msg.get("error") else None)
        if err:
            if opts["quiet"] and quiet_out:
                cli.err.write("".join(quiet_out))
            code = int(err.get("code") or 0) or 1
            raise CliError(err.get("message") or "build failed", code)
        aux = msg.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            image_id = aux["ID"]
        text = msg.get("stream")
        if text is None and msg.get("status"):
            text = msg["status"] + "\n"
        if text:
            if opts["quiet"]:
                quiet_out.append(text)
            else:
                out.write(timer(text) if timer else text)
                out.flush()
    if opts["quiet"]:
        cli.print(image_id or "".join(quiet_out).strip())
    if opts["iidfile"] and image_id:
        with open(opts["iidfile"], "w") as f:
            f.write(image_id)
    return 0
