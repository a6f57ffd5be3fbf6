"""Client methods beyond ``api.py``: networks, volumes, prunes, image import/push/bootstrap, registry auth.

Each group takes the ``Transport`` of a ``Client`` (``Networks(client.transport)``). Streaming calls
return the raw JSON message iterator: the caller displays the messages and turns an in-stream
``error`` into its exit status (``berth.cli.format.display_messages``).
"""

from __future__ import annotations

import os

from berth.client.api import _filters
from berth.client.transport import Transport, quote_ref

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any


class _Group:
    def __init__(self, t: Transport) -> None:
        self.t = t


class Networks(_Group):
    def list(self, filters: dict[str, list[str]] | None = None) -> list[dict]:
        return self.t.request("GET", "/networks", {"filters": _filters(filters)}).json() or []

    def inspect(self, id: str, verbose: bool = False) -> dict:
        return self.t.request("GET", f"/networks/{quote_ref(id)}", {"verbose": verbose or None}).json()

    def create(self, body: dict) -> dict:
        return self.t.request("POST", "/networks/create", body=body).json()

    def remove(self, id: str) -> None:
        self.t.request("DELETE", f"/networks/{quote_ref(id)}").read()

    def connect(self, network: str, container: str, endpoint_config: dict | None = None) -> None:
        body = {"Container": container, "EndpointConfig": endpoint_config or {}}
        self.t.request("POST", f"/networks/{quote_ref(network)}/connect", body=body, timeout=None).read()

    def disconnect(self, network: str, container: str, force: bool = False) -> None:
        body = {"Container": container, "Force": force}
        self.t.request("POST", f"/networks/{quote_ref(network)}/disconnect", body=body, timeout=None).read()

    def prune(self, filters: dict[str, list[str]] | None = None) -> dict:
        return self.t.request("POST", "/networks/prune", {"filters": _filters(filters)},
                              timeout=None).json() or {}


class Volumes(_Group):
    def list(self, filters: dict[str, list[str]] | None = None) -> dict:
        """``{"Volumes": [...], "Warnings": [...]}``."""
        return self.t.request("GET", "/volumes", {"filters": _filters(filters)}).json() or {}

    def create(self, body: dict) -> dict:
        return self.t.request("POST", "/volumes/create", body=body).json()

    def inspect(self, name: str) -> dict:
        return self.t.request("GET", f"/volumes/{quote_ref(name)}").json()

    def remove(self, name: str, force: bool = False) -> None:
        self.t.request("DELETE", f"/volumes/{quote_ref(name)}", {"force": force or None}).read()

    def prune(self, filters: dict[str, list[str]] | None = None) -> dict:
        return self.t.request("POST", "/volumes/prune", {"filters": _filters(filters)},
                              timeout=None).json() or {}


class System(_Group):
    def prune_containers(self, filters: dict[str, list[str]] | None = None) -> dict:
        return self.t.request("POST", "/containers/prune", {"filters": _filters(filters)},
                              timeout=None).json() or {}

    def prune_build_cache(self, all: bool = False, filters: dict[str, list[str]] | None = None) -> dict:
        return self.t.request("POST", "/build/prune", {"all": all or None, "filters": _filters(filters)},
                              timeout=None).json() or {}

    def events(self, since: str | None = None, until: str | None = None,
               filters: dict[str, list[str]] | None = None) -> Iterator[dict]:
        params = {"since": since, "until": until, "filters": _filters(filters)}
        return self.t.request("GET", "/events", params, timeout=None).iter_json()


class ImageExtras(_Group):
    """The image endpoints ``api.Images`` lacks, plus streaming variants that do not raise in-stream."""

    def pull(self, image: str, tag: str | None = None, platform: str | None = None,
             auth: str = "e30=") -> Iterator[dict]:
        params = {"fromImage": image, "tag": tag, "platform": platform}
        resp = self.t.request("POST", "/images/create", params, headers={"X-Registry-Auth": auth},
                              timeout=None)
        return resp.iter_json()

    def push(self, name: str, tag: str | None = None, auth: str = "e30=") -> Iterator[dict]:
        resp = self.t.request("POST", f"/images/{quote_ref(name)}/push", {"tag": tag},
                              headers={"X-Registry-Auth": auth}, timeout=None)
        return resp.iter_json()

    def import_(self, tar: Iterable[bytes], repo: str | None = None, tag: str | None = None,
                message: str | None = None, changes: list[str] | None = None,
                platform: str | None = None) -> Iterator[dict]:
        params = {"fromSrc": "-", "repo": repo, "tag": tag, "message": message, "changes": changes or None,
                  "platform": platform}
        resp = self.t.request("POST", "/images/create", params, body=tar,
                              headers={"Content-Type": "text/plain"}, timeout=None)
        return resp.iter_json()

    def load(self, tar: Iterable[bytes], quiet: bool = True) -> Iterator[dict]:
        resp = self.t.request("POST", "/images/load", {"quiet": quiet}, body=tar,
                              headers={"Content-Type": "application/x-tar"}, timeout=None)
        if resp.header("content-type") != "application/json":  # docker copies a non-JSON reply raw
            return ({"stream": c.decode("utf-8", "replace")} for c in resp.iter_raw())
        return resp.iter_json()

    def prune(self, filters: dict[str, list[str]] | None = None) -> dict:
        return self.t.request("POST", "/images/prune", {"filters": _filters(filters)},
                              timeout=None).json() or {}

    def bootstrap(self, name: str) -> dict:
        return self.t.request("POST", "/berth/images/bootstrap", {"name": name}, timeout=None).json()


# -- registry credentials ---------------------------------------------------------------------------
INDEX_SERVER = "https://index.docker.io/v1/"


def registry_of(name: str) -> str:
    """The registry host of an image name (``docker.io`` when the first part is not a host)."""
    first, sep, _ = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def registry_auth(name: str, config_dir: str | None = None, env: dict[str, str] | None = None) -> str:
    """X-Registry-Auth for ``name``: base64url JSON credentials from the client config, else ``e30=``.

    Looks in ``config_dir`` (``--config``), ``$BERTH_CONFIG``, ``~/.berth``, then ``$DOCKER_CONFIG`` and
    ``~/.docker`` for a ``config.json`` with an ``auths`` entry for the image's registry.
    """
    import base64
    import json
    env = os.environ if env is None else env
    host = registry_of(name)
    keys = (INDEX_SERVER, "docker.io", "index.docker.io", "registry-1.docker.io") \
        if host == "docker.io" else (host, f"https://{host}", f"http://{host}", f"https://{host}/v1/")
    dirs = [config_dir, env.get("BERTH_CONFIG"), os.path.expanduser("~/.berth"), env.get("DOCKER_CONFIG"),
            os.path.expanduser("~/.docker")]
    for d in dirs:
        if not d:
            continue
        try:
            with open(os.path.join(d, "config.json"), "rb") as f:
                auths = json.load(f).get("auths") or {}
        except (OSError, ValueError, AttributeError):
            continue
        for k in keys:
            entry = auths.get(k)
            if not isinstance(entry, dict):
                continue
            creds: dict[str, Any] = {"serveraddress": k if host == "docker.io" else host}
            if entry.get("auth"):
                try:
                    user, _, pw = base64.b64decode(entry["auth"]).decode().partition(":")
                except (ValueError, UnicodeError):
                    continue
                creds.update(username=user, password=pw)
            elif entry.get("identitytoken"):
                creds["identitytoken"] = entry["identitytoken"]
            else:
                continue
            return base64.urlsafe_b64encode(json.dumps(creds).encode()).decode()
    return "e30="
