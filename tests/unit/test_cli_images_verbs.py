"""berth image/network/volume/system verbs against the API server with the fake engine (plus a fake
volume store, networks connect/prune and the prune endpoints)."""

from __future__ import annotations

import io
import json
import time

import pytest

from berth.cli.main import main
from berth.errors import Conflict, NotFound
from tests.unit.fake_engine import IMAGE_ID, FakeEngine, ServerThread


class Engine(FakeEngine):
    """The shared fake engine plus what these verbs need."""

    def __init__(self) -> None:
        super().__init__()
        self.volumes: dict[str, dict] = {}
        self.seen: list[tuple] = []

    def create_volume(self, body):
        self.seen.append(("create_volume", body))
        name = body.get("Name") or "a" * 64
        if name in self.volumes:
            return self.volumes[name]
        self.volumes[name] = {"Name": name, "Driver": body.get("Driver") or "local",
                              "Mountpoint": f"/var/lib/berth/volumes/{name}/_data",
                              "Labels": body.get("Labels"), "Scope": "local",
                              "Options": body.get("DriverOpts"), "CreatedAt": "2024-01-01T00:00:00Z"}
        return self.volumes[name]

    def list_volumes(self, filters=None):
        vols = list(self.volumes.values())
        for n in (filters or {}).get("name", []):
            vols = [v for v in vols if n in v["Name"]]
        return {"Volumes": vols, "Warnings": []}

    def inspect_volume(self, name):
        if name not in self.volumes:
            raise NotFound(f"get {name}: no such volume")
        return self.volumes[name]

    def remove_volume(self, name, force=False):
        self.seen.append(("remove_volume", name, force))
        if name == "busy":
            raise Conflict("remove busy: volume is in use")
        if name not in self.volumes:
            if force:
                return
            raise NotFound(f"get {name}: no such volume")
        del self.volumes[name]

    def prune_volumes(self, filters=None):
        self.seen.append(("prune_volumes", filters))
        gone = sorted(self.volumes)
        self.volumes.clear()
        return {"VolumesDeleted": gone or None, "SpaceReclaimed": 2048 if gone else 0}

    def prune_images(self, filters=None):
        self.seen.append(("prune_images", filters))
        return {"ImagesDeleted": [{"Untagged": "old:1"}, {"Deleted": "sha256:" + "b" * 64}],
                "SpaceReclaimed": 1234567}

    async def prune_containers(self, filters=None):
        return {"ContainersDeleted": ["c" * 64], "SpaceReclaimed": 100}

    def prune_networks(self, filters=None):
        self.seen.append(("prune_networks", filters))
        return {"NetworksDeleted": ["n1"]}

    async def connect_network(self, id, container, endpoint_config=None):
        self.seen.append(("connect", id, container, endpoint_config))

    async def disconnect_network(self, id, container, force=False):
        self.seen.append(("disconnect", id, container, force))

    def bootstrap_image(self, name):
        self.seen.append(("bootstrap", name))
        return {"Id": IMAGE_ID, "RepoTags": [name if ":" in name else name + ":latest"]}

    async def import_image(self, source, repo, tag, message, changes):
        self.seen.append(("import", repo, tag, message, changes))
        async for gen in super().import_image(source, repo, tag, message, changes):
            yield gen


@pytest.fixture
def srv(tmp_path, monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    with ServerThread(Engine(), str(tmp_path / "api.sock")) as s:
        monkeypatch.setenv("BERTH_HOST", s.url)
        yield s


def berth(capsys, *args, stdin: str | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_tag_rmi_history(srv, capsys):
    rc, out, err = berth(capsys, "tag", "busybox", "myrepo/bb:v1")
    assert (rc, out, err) == (0, "", "")
    assert "myrepo/bb:v1" in srv.engine.images[0]["RepoTags"]
    rc, out, err = berth(capsys, "tag", "busybox", "Bad/Name")
    assert rc == 1 and 'Error parsing reference: "Bad/Name" is not a valid repository/tag' in err
    rc, out, err = berth(capsys, "tag", "busybox", "x@sha256:" + "a" * 64)
    assert rc == 1 and "refusing to create a tag with a digest reference" in err
    rc, out, err = berth(capsys, "history", "busybox")
    lines = out.splitlines()
    assert lines[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert lines[1].startswith(IMAGE_ID[7:19] + "   ") and "ADD rootfs" in lines[1] and "4.26MB" in lines[1]
    rc, out, _ = berth(capsys, "history", "-q", "--no-trunc", "busybox")
    assert out == IMAGE_ID + "\n"
    rc, out, _ = berth(capsys, "history", "--human=false", "--format", "{{.Size}} {{.CreatedSince}}",
                       "busybox")
    assert out.startswith("4261234 2023-11-14T")
    rc, out, _ = berth(capsys, "image", "history", "--format", "json", "busybox")
    assert json.loads(out)["CreatedBy"] == "ADD rootfs"
    rc, out, err = berth(capsys, "rmi", "myrepo/bb:v1", "nosuch")
    assert rc == 1 and out == "Untagged: myrepo/bb:v1\n"
    assert err.strip() == "Error response from daemon: No such image: nosuch:latest"
    rc, out, err = berth(capsys, "image", "rm", "-f", "nosuch")
    assert rc == 0 and "No such image" in err  # not found with -f: reported, not fatal
    rc, out, _ = berth(capsys, "rmi", "busybox")
    assert rc == 0 and out == f"Untagged: busybox:latest\nDeleted: {IMAGE_ID}\n"


def test_save_load_import(srv, capsys, tmp_path, monkeypatch):
    target = tmp_path / "out.tar"
    rc, out, err = berth(capsys, "save", "-o", str(target), "busybox")
    assert rc == 0 and target.read_bytes() == b"".join(bytes([i]) * 1024 for i in range(4))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".docker_temp_")] == []
    rc, out, err = berth(capsys, "save", "-o", str(tmp_path / "none" / "x.tar"), "busybox")
    assert rc == 1 and "invalid output path" in err
    rc, out, err = berth(capsys, "save", "-o", str(target), "nosuch")
    assert rc == 1 and "No such image: nosuch" in err
    rc, out, err = berth(capsys, "load", "-i", str(target))
    assert rc == 0 and out == "Loaded image: busybox:latest (4096 bytes)\n"
    rc, out, err = berth(capsys, "load", "-i", str(tmp_path / "missing.tar"))
    assert rc == 1 and "no such file or directory" in err
    src = tmp_path / "rootfs.tar"
    src.write_bytes(b"x" * 5000)
    rc, out, err = berth(capsys, "import", "-c", "CMD [\"sh\"]", "-c", "env A=1", "-m", "hello", str(src),
                         "imported:v1")
    assert rc == 0 and out.startswith("sha256:") and len(out.strip()) == 71
    assert srv.engine.seen[-1] == ("import", "imported:v1", None, "hello", ['CMD ["sh"]', "env A=1"])
    rc, out, err = berth(capsys, "import", "-c", "RUN true", str(src))
    assert rc == 1 and err.strip() == "Error response from daemon: RUN is not a valid change command"
    rc, out, err = berth(capsys, "image", "import", "https://example.com/rootfs.tar")
    assert rc == 1 and "importing from a URL is not supported" in err


def test_pull_push_streams(srv, capsys):
    rc, out, err = berth(capsys, "pull", "busybox")
    assert rc == 0
    assert out == ("Using default tag: latest\nlatest: Pulling from busybox\n"
                   "Status: Image is up to date for busybox:latest\ndocker.io/library/busybox:latest\n")
    rc, out, err = berth(capsys, "pull", "-q", "localhost:5000/a/b:1")
    assert rc == 0 and out == "localhost:5000/a/b:1\n"
    rc, out, err = berth(capsys, "pull", "x/missing")
    assert rc == 1 and "pull access denied for x/missing" in err
    rc, out, err = berth(capsys, "push", "busybox")
    assert rc == 0 and out == "Using default tag: latest\nThe push refers to repository [busybox]\n"
    rc, out, err = berth(capsys, "push", "nosuch:1")
    assert rc == 1 and "No such image" in err


def test_image_prune_and_bootstrap(srv, capsys, monkeypatch):
    rc, out, err = berth(capsys, "image", "prune", stdin="n\n", monkeypatch=monkeypatch)
    assert rc == 0 and out == "WARNING! This will remove all dangling images.\n" \
        "Are you sure you want to continue? [y/N] "
    assert not any(s[0] == "prune_images" for s in srv.engine.seen)
    rc, out, err = berth(capsys, "image", "prune", "-a", stdin="y\n", monkeypatch=monkeypatch)
    assert out.endswith("[y/N] Deleted Images:\nuntagged: old:1\ndeleted: sha256:" + "b" * 64 +
                        "\n\nTotal reclaimed space: 1.235MB\n")
    assert srv.engine.seen[-1] == ("prune_images", {"dangling": ["false"]})
    rc, out, err = berth(capsys, "image", "bootstrap", "debian", "--suite", "trixie", "--name", "mydeb:1")
    assert rc == 0 and srv.engine.seen[-1] == ("bootstrap", "debian:trixie")
    assert out == f"Bootstrapped image: debian:trixie\nBootstrapped image: mydeb:1\n{IMAGE_ID}\n"
    assert "mydeb:1" in srv.engine.images[0]["RepoTags"]
    rc, out, err = berth(capsys, "image", "bootstrap", "busybox", "--suite", "x")
    assert rc == 1 and "--suite applies to debian only" in err
    rc, out, err = berth(capsys, "image", "bootstrap", "-q", "alpine")
    assert rc == 1 and "berth can bootstrap busybox or debian" in err


def test_networks(srv, capsys, monkeypatch):
    rc, out, err = berth(capsys, "network", "create", "--label", "a=b", "--subnet", "10.9.0.0/16",
                         "--gateway", "10.9.0.1", "--ip-range", "10.9.1.0/24", "-o", "mtu=1400", "net2")
    assert rc == 0 and len(out.strip()) == 64
    rc, out, err = berth(capsys, "network", "ls")
    lines = out.splitlines()
    assert lines[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert [ln.split()[1] for ln in lines[1:]] == ["bridge", "host", "net2", "none"]
    rc, out, err = berth(capsys, "network", "ls", "-q", "--no-trunc")
    assert all(len(x) == 64 for x in out.split())
    rc, out, err = berth(capsys, "network", "ls", "--format", "{{.Name}} {{.Labels}} {{.Internal}}")
    assert "net2 a=b false" in out.splitlines()
    rc, out, err = berth(capsys, "network", "inspect", "net2", "nosuch")
    assert rc == 1 and json.loads(out)[0]["Name"] == "net2"
    assert err.strip() == "Error response from daemon: network nosuch not found"
    rc, out, err = berth(capsys, "network", "inspect", "nosuch")
    assert rc == 1 and out == "[]\n"
    rc, out, err = berth(capsys, "network", "connect", "--alias", "web", "--ip", "10.9.1.5", "net2", "c1")
    assert rc == 0 and srv.engine.seen[-1][:3] == ("connect", "net2", "c1")
    assert srv.engine.seen[-1][3]["Aliases"] == ["web"]
    assert srv.engine.seen[-1][3]["IPAMConfig"]["IPv4Address"] == "10.9.1.5"
    rc, out, err = berth(capsys, "network", "disconnect", "-f", "net2", "c1")
    assert rc == 0 and srv.engine.seen[-1] == ("disconnect", "net2", "c1", True)
    rc, out, err = berth(capsys, "network", "rm", "net2", "nosuch")
    assert rc == 1 and out == "net2\n" and "network nosuch not found" in err
    rc, out, err = berth(capsys, "network", "rm", "-f", "nosuch")
    assert (rc, out, err) == (0, "", "")
    rc, out, err = berth(capsys, "network", "prune", "-f", "--filter", "label=x")
    assert out == "Deleted Networks:\nn1\n\n" and srv.engine.seen[-1] == ("prune_networks", {"label": ["x"]})
    rc, out, err = berth(capsys, "network", "create", "--gateway", "10.1.1.1", "x")
    assert rc == 1 and "every ip-range or gateway must have a corresponding subnet" in err


def test_volumes(srv, capsys, monkeypatch):
    rc, out, _ = berth(capsys, "volume", "create", "--label", "k=v", "-o", "type=tmpfs", "data")
    assert (rc, out) == (0, "data\n")
    assert srv.engine.seen[-1][1] == {"Driver": "local", "DriverOpts": {"type": "tmpfs"},
                                      "Labels": {"k": "v"}, "Name": "data"}
    rc, out, _ = berth(capsys, "volume", "create")
    assert out == "a" * 64 + "\n"
    rc, out, _ = berth(capsys, "volume", "ls")
    assert out.splitlines() == ["DRIVER    VOLUME NAME", "local     " + "a" * 64, "local     data"]
    rc, out, _ = berth(capsys, "volume", "ls", "-q", "--filter", "name=dat")
    assert out == "data\n"
    rc, out, _ = berth(capsys, "volume", "ls", "--format", "{{.Name}}:{{.Labels}}:{{.Links}}",
                       "-f", "name=data")
    assert out == "data:k=v:N/A\n"
    rc, out, err = berth(capsys, "volume", "inspect", "--format", "{{.Mountpoint}}", "data")
    assert out == "/var/lib/berth/volumes/data/_data\n"
    rc, out, err = berth(capsys, "volume", "inspect", "nope")
    assert rc == 1 and out == "[]\n" and "get nope: no such volume" in err
    rc, out, err = berth(capsys, "volume", "rm", "data", "busy")
    assert rc == 1 and out == "data\n" and "volume is in use" in err
    rc, out, err = berth(capsys, "volume", "rm", "-f", "gone")
    assert rc == 0 and srv.engine.seen[-1] == ("remove_volume", "gone", True)
    rc, out, err = berth(capsys, "volume", "prune", "-a", "-f")
    assert out == "Deleted Volumes:\n" + "a" * 64 + "\n\nTotal reclaimed space: 2.048kB\n"
    assert srv.engine.seen[-1] == ("prune_volumes", {"all": ["true"]})


def test_system_prune(srv, capsys, monkeypatch):
    srv.engine.create_volume({"Name": "anon"})
    rc, out, err = berth(capsys, "system", "prune", "--volumes", stdin="", monkeypatch=monkeypatch)
    assert rc == 0 and "  - all anonymous volumes not used by at least one container\n" in out
    assert out.endswith("Are you sure you want to continue? [y/N] \n")
    rc, out, err = berth(capsys, "system", "prune", "-f", "--volumes", "-a")
    assert rc == 0
    assert out.startswith("Deleted Containers:\n" + "c" * 64 + "\n\nDeleted Networks:\nn1\n\n"
                          "Deleted Volumes:\nanon\n\nDeleted Images:\n")
    assert out.endswith("Total reclaimed space: 1.237MB\n")  # 100 + 2048 + 1234567 (+ build cache)
    assert ("prune_volumes", {}) in srv.engine.seen  # system prune: anonymous volumes only, even with -a
    rc, out, err = berth(capsys, "system", "prune", "-f", "--volumes", "--filter", "until=1h")
    assert rc == 1 and 'The "until" filter is not supported with "--volumes"' in err


def test_events(srv, capsys):
    srv.engine._event(type("C", (), {"id": "c" * 64, "name": "x", "config": {"Image": "busybox"}})(), "start")
    rc, out, err = berth(capsys, "events", "--since", "1h", "--until", "0s")
    assert rc == 0, err
    line = out.splitlines()[-1]
    assert line.endswith(f" container start {'c' * 64} (image=busybox, name=x)"), line
    rc, out, _ = berth(capsys, "system", "events", "--since", "1h", "--until", str(int(time.time()) + 1),
                       "--format", "{{.Type}}/{{.Action}}/{{.Actor.Attributes.name}}/{{.ID}}")
    assert out.splitlines()[-1] == f"container/start/x/{'c' * 64}"
    rc, out, _ = berth(capsys, "events", "--since", "1h", "--until", "0s", "--format", "json")
    assert json.loads(out.splitlines()[-1])["Actor"]["Attributes"]["name"] == "x"
    rc, out, err = berth(capsys, "events", "--since", "yesterday")
    assert rc == 1 and 'failed to parse value as time or duration: "yesterday"' in err


def test_management_words(capsys):
    rc, out, err = berth(capsys, "network")
    assert rc == 0 and out.startswith("Usage:  berth network COMMAND\n\nManage networks\n\nCommands:\n")
    assert "  connect     Connect a container to a network\n" in out and "  list " not in out
    rc, out, err = berth(capsys, "image", "--help")
    assert rc == 0 and "  bootstrap   " in out and "  prune       Remove unused images\n" in out
    rc, out, err = berth(capsys, "volume", "frob")
    assert rc == 1 and err.startswith("berth: unknown command: berth volume frob\n\nUsage:  berth volume\n")
    rc, out, err = berth(capsys, "system", "-x")
    assert rc == 125 and err.startswith("unknown shorthand flag: 'x' in -x")
    rc, out, err = berth(capsys, "--help")
    assert "Management Commands:\n  builder     Manage builds\n" in out and "  rmi         Remove one" in out
