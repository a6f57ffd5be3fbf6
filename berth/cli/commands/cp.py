"""berth cp: copy files/folders between a container and the local filesystem (``-`` = a tar)."""

from __future__ import annotations

from berth.cli.flags import Flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FLAGS = [
    Flag(("-a", "--archive"), "archive", bool, help="Archive mode (copy all uid/gid information)"),
    Flag(("-L", "--follow-link"), "follow_link", bool, help="Always follow symbol link in SRC_PATH"),
    Flag(("-q", "--quiet"), "quiet", bool,
         help="Suppress progress output during copy. Progress output is automatically suppressed if no "
              "terminal is attached"),
]
USAGE = ("[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n\tberth cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH")
SUMMARY = ("Copy files/folders between a container and the local filesystem\n\n"
           "Use '-' as the source to read a tar archive from stdin\nand extract it to a directory "
           "destination in a container.\nUse '-' as the destination to stream a tar archive of a\n"
           "container source to stdout.")
MIN_ARGS = MAX_ARGS = 2


def run(cli, opts, args) -> int:
    from berth.cli.context import CliError
    from berth.cli.cptar import CopyError, split_target
    src_ctr, src = split_target(args[0])
    dst_ctr, dst = split_target(args[1])
    if src_ctr is not None and dst_ctr is not None:
        raise CliError("copying between containers is not supported", 1)
    if src_ctr is None and dst_ctr is None:
        raise CliError("must specify at least one container source", 1)
    if src_ctr == "" or dst_ctr == "":
        raise CliError("must specify a container name", 1)
    if (src_ctr is not None and not src) or (dst_ctr is not None and not dst):
        raise CliError("filesystem path cannot be empty", 1)
    quiet = opts["quiet"] or not cli.err.isatty()
    try:
        if src_ctr is not None:
            size = _from_container(cli, src_ctr, src, dst, opts["follow_link"])
            where = dst
        else:
            assert dst_ctr is not None
            size = _to_container(cli, src, dst_ctr, dst, opts["follow_link"], opts["archive"])
            where = args[1]
    except CopyError as e:
        raise CliError(f"Error: {e}", 1) from None
    if not quiet and size is not None:
        from berth.cli.format import human_size
        cli.error(f"Successfully copied {human_size(size)} to {where}")
    return 0


def _abs(path: str) -> str:
    return path if path.startswith("/") else "/" + path


def _stat(c: Any, ctr: str, path: str) -> dict:
    """HEAD archive; its 404 has no body, so tell a missing container from a missing path."""
    from berth.errors import NotFound
    try:
        return c.archive_stat(ctr, path)
    except NotFound:
        c.inspect(ctr)  # raises "No such container: x"
        raise NotFound(f"Could not find the file {path} in container {ctr}") from None


def _from_container(cli: Any, ctr: str, src: str, dst: str, follow: bool) -> int | None:
    import os

    from berth.cli.cptar import GO_DIR, GO_SYMLINK, CopyError, extract, plan
    c = cli.client.containers
    src = _abs(src)
    fetch = src
    st = _stat(c, ctr, src) if follow else {}
    if int(st.get("mode", 0)) & GO_SYMLINK:
        target = st.get("linkTarget") or ""
        fetch = target if target.startswith("/") else os.path.join(os.path.dirname(src.rstrip("/")), target)
    info, chunks = c.get_archive(ctr, fetch)
    if dst == "-":
        out = cli.out.buffer if hasattr(cli.out, "buffer") else None
        cli.out.flush()
        for chunk in chunks:
            if out is not None:
                out.write(chunk)
            else:
                os.write(1, chunk)
        if out is not None:
            out.flush()
        return None
    src_is_dir = bool(int(info.get("mode", 0)) & GO_DIR)
    exists, is_dir = os.path.exists(dst), os.path.isdir(dst)
    into, top = plan(src, src_is_dir, dst, exists, is_dir)
    if not os.path.isdir(into):
        raise CopyError(f"destination directory {into!r} does not exist" if not os.path.exists(into)
                        else f"{into!r} is not a directory")
    return extract(chunks, into, top)


def _to_container(cli: Any, src: str, ctr: str, dst: str, follow: bool, archive: bool) -> int | None:
    import os
    import stat

    from berth.cli.cptar import GO_DIR, GO_SYMLINK, CopyError, plan, tar_stream
    from berth.errors import NotFound
    c = cli.client.containers
    dst = _abs(dst)
    try:
        dst_st = _stat(c, ctr, dst)
        exists = True
    except NotFound as e:
        if str(e).startswith("No such container"):
            raise
        dst_st, exists = {}, False
    mode = int(dst_st.get("mode", 0))
    if exists and mode & GO_SYMLINK:  # a link at the destination: copy to what it points to
        target = dst_st.get("linkTarget") or ""
        link_dst = target if target.startswith("/") else os.path.join(os.path.dirname(dst.rstrip("/")),
                                                                      target)
        try:
            mode = int(_stat(c, ctr, link_dst).get("mode", 0))
            dst = link_dst + ("/" if dst.endswith("/") else "")
        except NotFound:
            exists = False
    is_dir = bool(mode & GO_DIR)
    if src == "-":
        if not (exists and is_dir):
            raise CopyError(f"destination \"{ctr}:{dst}\" must be a directory")
        stdin = os.fdopen(os.dup(0), "rb")

        def chunks():
            with stdin:
                while data := stdin.read(1 << 20):
                    yield data
        c.put_archive(ctr, dst, chunks(), copy_uid_gid=archive)
        return None
    try:
        st = os.stat(src) if follow else os.lstat(src)
    except OSError as e:
        raise CopyError(f"{'stat' if follow else 'lstat'} {src}: {(e.strerror or '').lower()}") from None
    into, top = plan(src, stat.S_ISDIR(st.st_mode), dst, exists, is_dir)
    sent = [0]

    def counted():
        for chunk in tar_stream(src, top, follow):
            sent[0] += len(chunk)
            yield chunk
    c.put_archive(ctr, into, counted(), copy_uid_gid=archive)
    return sent[0]
