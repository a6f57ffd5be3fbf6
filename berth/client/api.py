"""The engine API client: one method per endpoint, grouped by resource.

    c = Client("unix:///run/berth/berth.sock")
    c.ping(); c.version(); c.containers.list(all=True); c.images.inspect("busybox")
"""

from __future__ import annotations

from berth.client.streams import Hijacked, demux
from berth.client.transport import Response, TLSConfig, Transport, error_from, quote_ref
from berth.errors import BerthError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any


class _Group:
    def __init__(self, t: Transport) -> None:
        self.t = t


class Containers(_Group):
    def create(self, config: dict, name: str | None = None, platform: str | None = None) -> dict:
        params = {"name": name, "platform": platform}
        return self.t.request("POST", "/containers/create", params, config).json()

    def list(self, all: bool = False, limit: int | None = None, size: bool = False,
             filters: dict[str, list[str]] | None = None) -> list[dict]:
        return self.t.request("GET", "/containers/json", {
            "all": all or None, "limit": limit, "size": size or None, "filters": _filters(filters)}).json()

    def inspect(self, id: str, size: bool = False) -> dict:
        return self.t.request("GET", f"/containers/{quote_ref(id)}/json", {"size": size or None}).json()

    def start(self, id: str) -> bool:
        """True if started, False if it was already running (304)."""
        return self.t.request("POST", f"/containers/{quote_ref(id)}/start").status != 304

    def stop(self, id: str, t: int | None = None, signal: str | None = None) -> bool:
        timeout = None if t is None else t + 60.0
        return self.t.request("POST", f"/containers/{quote_ref(id)}/stop", {"t": t, "signal": signal},
                              timeout=timeout).status != 304

    def restart(self, id: str, t: int | None = None, signal: str | None = None) -> None:
        self.t.request("POST", f"/containers/{quote_ref(id)}/restart", {"t": t, "signal": signal},
                       timeout=None).read()

    def kill(self, id: str, signal: str | None = None) -> None:
        self.t.request("POST", f"/containers/{quote_ref(id)}/kill", {"signal": signal}).read()

    def remove(self, id: str, force: bool = False, volumes: bool = False) -> None:
        self.t.request("DELETE", f"/containers/{quote_ref(id)}",
                       {"force": force or None, "v": volumes or None}).read()

    def wait(self, id: str, condition: str | None = None) -> dict:
        return self.t.request("POST", f"/containers/{quote_ref(id)}/wait", {"condition": condition},
                              timeout=None).json()

    def wait_begin(self, id: str, condition: str | None = None) -> Response:
        """Send the wait and return once the reply head is in (the engine flushes it at once);
        ``wait_result`` reads the status later. docker run does this before start."""
        return self.t.request("POST", f"/containers/{quote_ref(id)}/wait", {"condition": condition},
                              timeout=None)

    @staticmethod
    def wait_result(resp: Response) -> dict:
        """The wait body: ``{"StatusCode": N, "Error": ...}``; an Error message raises."""
        body = resp.json() or {}
        err = body.get("Error") or {}
        if err.get("Message"):
            raise BerthError(err["Message"])
        return body

    def resize(self, id: str, height: int, width: int) -> None:
        self.t.request("POST", f"/containers/{quote_ref(id)}/resize", {"h": height, "w": width}).read()

    def logs(self, id: str, stdout: bool = True, stderr: bool = True, follow: bool = False,
             timestamps: bool = False, tail: str | int = "all", since: str | None = None,
             until: str | None = None, tty: bool | None = None) -> Iterator[tuple[int, bytes]]:
        """(stream, bytes) pairs; ``tty`` (from inspect if None) says whether the body is framed."""
        if tty is None:
            tty = bool(self.inspect(id).get("Config", {}).get("Tty"))
        resp = self.t.request("GET", f"/containers/{quote_ref(id)}/logs", {
            "stdout": stdout, "stderr": stderr, "follow": follow or None, "timestamps": timestamps or None,
            "tail": str(tail), "since": since, "until": until}, timeout=None)
        if tty:
            return ((1, chunk) for chunk in resp.iter_raw())
        return demux(resp.iter_raw())

    def attach(self, id: str, stdin: bool = False, stdout: bool = True, stderr: bool = True,
               stream: bool = True, logs: bool = False, detach_keys: str | None = None) -> Hijacked:
        return _hijack(self.t, f"/containers/{quote_ref(id)}/attach", {
            "stdin": stdin or None, "stdout": stdout, "stderr": stderr, "stream": stream,
            "logs": logs or None, "detachKeys": detach_keys}, None)

    def top(self, id: str, ps_args: str | None = None) -> dict:
        return self.t.request("GET", f"/containers/{quote_ref(id)}/top", {"ps_args": ps_args}).json()

    def pause(self, id: str) -> None:
        self.t.request("POST", f"/containers/{quote_ref(id)}/pause").read()

    def unpause(self, id: str) -> None:
        self.t.request("POST", f"/containers/{quote_ref(id)}/unpause").read()

    def rename(self, id: str, name: str) -> None:
        self.t.request("POST", f"/containers/{quote_ref(id)}/rename", {"name": name}).read()

    def update(self, id: str, body: dict) -> dict:
        return self.t.request("POST", f"/containers/{quote_ref(id)}/update", body=body).json() or {}

    def changes(self, id: str) -> list[dict]:
        return self.t.request("GET", f"/containers/{quote_ref(id)}/changes").json() or []

    def export(self, id: str) -> Iterator[bytes]:
        return self.t.request("GET", f"/containers/{quote_ref(id)}/export", timeout=None).iter_raw()

    def stats(self, id: str, stream: bool = True, one_shot: bool = False) -> Iterator[dict]:
        """One stats object (stream=False) or the stream of them, one a second."""
        resp = self.t.request("GET", f"/containers/{quote_ref(id)}/stats",
                              {"stream": stream, "one-shot": one_shot or None}, timeout=None)
        if not stream:
            return iter([resp.json() or {}])
        return resp.iter_json()

    def archive_stat(self, id: str, path: str) -> dict:
        """HEAD archive: docker's path stat (``mode`` is a Go os.FileMode)."""
        resp = self.t.request("HEAD", f"/containers/{quote_ref(id)}/archive", {"path": path})
        resp.read()
        return _path_stat(resp.header("x-docker-container-path-stat"))

    def get_archive(self, id: str, path: str) -> tuple[dict, Iterator[bytes]]:
        """(path stat, tar chunks) of path in the container."""
        resp = self.t.request("GET", f"/containers/{quote_ref(id)}/archive", {"path": path}, timeout=None)
        return _path_stat(resp.header("x-docker-container-path-stat")), resp.iter_raw()

    def put_archive(self, id: str, path: str, tar: Iterable[bytes], no_overwrite_dir_non_dir: bool = True,
                    copy_uid_gid: bool = False) -> None:
        """Extract a tar stream (sent chunked) into directory path in the container."""
        self.t.request("PUT", f"/containers/{quote_ref(id)}/archive", {
            "path": path, "noOverwriteDirNonDir": no_overwrite_dir_non_dir or None,
            "copyUIDGID": copy_uid_gid or None}, body=tar, headers={"Content-Type": "application/x-tar"},
            timeout=None).read()

    def prune(self, filters: dict[str, list[str]] | None = None) -> dict:
        return self.t.request("POST", "/containers/prune", {"filters": _filters(filters)},
                              timeout=None).json() or {}

    def commit(self, id: str, repo: str | None = None, tag: str | None = None, comment: str = "",
               author: str = "", changes: list[str] | None = None, pause: bool = True,
               config: dict | None = None) -> dict:
        return self.t.request("POST", "/commit", {
            "container": id, "repo": repo, "tag": tag, "comment": comment or None, "author": author or None,
            "changes": changes or None, "pause": pause}, body=config if config is not None else {},
            timeout=None).json()


class Exec(_Group):
    def create(self, container: str, cmd: list[str], tty: bool = False, stdin: bool = False,
               env: list[str] | None = None, workdir: str = "", user: str = "", privileged: bool = False,
               detach: bool = False, detach_keys: str = "", console_size: list[int] | None = None) -> str:
        body = {"User": user, "Privileged": privileged, "Tty": tty, "AttachStdin": stdin,
                "AttachStderr": not detach, "AttachStdout": not detach, "Detach": detach,
                "DetachKeys": detach_keys, "Env": env, "WorkingDir": workdir, "Cmd": cmd}
        if console_size:
            body["ConsoleSize"] = console_size
        return self.t.request("POST", f"/containers/{quote_ref(container)}/exec", body=body).json()["Id"]

    def start(self, exec_id: str, tty: bool = False, detach: bool = False,
              console_size: list[int] | None = None) -> Hijacked | None:
        body: dict[str, Any] = {"Detach": detach, "Tty": tty}
        if console_size:
            body["ConsoleSize"] = console_size
        if detach:
            self.t.request("POST", f"/exec/{exec_id}/start", body=body).read()
            return None
        return _hijack(self.t, f"/exec/{exec_id}/start", None, body)

    def inspect(self, exec_id: str) -> dict:
        return self.t.request("GET", f"/exec/{exec_id}/json").json()

    def resize(self, exec_id: str, height: int, width: int) -> None:
        self.t.request("POST", f"/exec/{exec_id}/resize", {"h": height, "w": width}).read()


class Images(_Group):
    def list(self, all: bool = False, filters: dict[str, list[str]] | None = None,
             digests: bool = False) -> list[dict]:
        return self.t.request("GET", "/images/json", {"all": all or None, "filters": _filters(filters),
                                                      "digests": digests or None}).json()

    def inspect(self, name: str) -> dict:
        return self.t.request("GET", f"/images/{quote_ref(name)}/json").json()

    def history(self, name: str) -> list[dict]:
        return self.t.request("GET", f"/images/{quote_ref(name)}/history").json()

    def tag(self, name: str, repo: str, tag: str | None = None) -> None:
        self.t.request("POST", f"/images/{quote_ref(name)}/tag", {"repo": repo, "tag": tag}).read()

    def remove(self, name: str, force: bool = False, noprune: bool = False) -> list[dict]:
        return self.t.request("DELETE", f"/images/{quote_ref(name)}",
                              {"force": force or None, "noprune": noprune or None}).json()

    def pull(self, image: str, tag: str | None = None, auth: str = "e30=") -> Iterator[dict]:
        resp = self.t.request("POST", "/images/create", {"fromImage": image, "tag": tag},
                              headers={"X-Registry-Auth": auth}, timeout=None)
        return _messages(resp.iter_json())

    def load(self, tar: Iterable[bytes], quiet: bool = True) -> Iterator[dict]:
        resp = self.t.request("POST", "/images/load", {"quiet": quiet}, body=tar,
                              headers={"Content-Type": "application/x-tar"}, timeout=None)
        return _messages(resp.iter_json())

    def save(self, names: list[str]) -> Iterator[bytes]:
        return self.t.request("GET", "/images/get", {"names": names}, timeout=None).iter_raw()


class Client:
    """An engine client. ``host`` as for ``-H``; None uses BERTH_HOST, DOCKER_HOST, the default."""

    def __init__(self, host: str | None = None, tls: TLSConfig | None = None, timeout: float | None = 60.0,
                 version: str | None = None) -> None:
        from berth.client.transport import API_VERSION
        self.transport = Transport(host, tls, timeout, version or API_VERSION)
        self.containers = Containers(self.transport)
        self.exec = Exec(self.transport)
        self.images = Images(self.transport)

    @property
    def host(self) -> str:
        return self.transport.host

    def ping(self, timeout: float = 2.0) -> dict[str, str]:
        """HEAD /_ping (unversioned); returns the reply headers."""
        resp = self.transport.send("HEAD", "/_ping", versioned=False, timeout=timeout)
        resp.read()
        if resp.status != 200:
            raise error_from(resp) if resp.status >= 400 else BerthError(f"ping: {resp.status}")
        return resp.headers

    def version(self) -> dict:
        return self.transport.request("GET", "/version").json()

    def info(self) -> dict:
        return self.transport.request("GET", "/info").json()

    def events(self, since: str | None = None, until: str | None = None,
               filters: dict[str, list[str]] | None = None) -> Iterator[dict]:
        return self.transport.request("GET", "/events", {"since": since, "until": until,
                                                         "filters": _filters(filters)},
                                      timeout=None).iter_json()


def _filters(filters: dict[str, list[str]] | None) -> dict | None:
    """Send filters in the map form the docker CLI uses."""
    if not filters:
        return None
    return {k: {v: True for v in vs} for k, vs in filters.items()}


def _messages(msgs: Iterator[dict]) -> Iterator[dict]:
    """A JSON message stream; an in-stream error raises."""
    for m in msgs:
        if "errorDetail" in m or "error" in m:
            raise BerthError((m.get("errorDetail") or {}).get("message") or m.get("error") or "error")
        yield m


def _path_stat(header: str) -> dict:
    """X-Docker-Container-Path-Stat: base64 (std alphabet) JSON."""
    if not header:
        return {}
    import base64
    import json
    try:
        return json.loads(base64.b64decode(header + "=" * (-len(header) % 4)))
    except ValueError:
        return {}


def _hijack(t: Transport, path: str, params: dict[str, Any] | None, body: dict | None) -> Hijacked:
    resp = t.send("POST", path, params, body if body is not None else b"", upgrade=True, timeout=None,
                  headers=None if body is not None else {"Content-Type": "text/plain"})
    if resp.status >= 400:
        raise error_from(resp)
    if resp.status not in (101, 200):
        resp.close()
        raise BerthError(f"unable to upgrade to tcp, received {resp.status}")
    leftover, resp._buf = resp._buf, b""
    return Hijacked(resp.sock, leftover, resp.header("content-type"))
