"""Image parents end to end against a private berthd: ``docker commit`` records the base image as
Parent; ``images`` hides untagged parents (intermediate images) unless ``-a``; ``rmi`` of the child
prunes the untagged chain ("Deleted:" for each); ``image prune`` keeps intermediates; ``Size`` is
the compressed size until the image is unpacked, then the uncompressed one.

docker-py drives the API; the docker CLI (when installed) checks what users see.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.e2e.daemon_fixture import Daemon
from tests.helpers import mounts_under

pytestmark = pytest.mark.root
docker = pytest.importorskip("docker")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    base = tmp_path_factory.mktemp("img-parents")
    d = Daemon(str(base))
    d.start()
    yield d
    d.cleanup()
    assert mounts_under(str(base)) == []


@pytest.fixture(scope="module")
def client(daemon):
    c = docker.DockerClient(base_url=daemon.url, version="1.44", timeout=120)
    yield c
    c.close()


@pytest.fixture(scope="module")
def busybox(client):
    r = client.api.post(client.api._url("/berth/images/bootstrap"), params={"name": "busybox"})
    assert r.status_code == 200, r.text
    return r.json()["Id"]


def cli(d: Daemon, *args: str) -> subprocess.CompletedProcess:
    env = {"DOCKER_HOST": d.url, "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": d.base}
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=120)


def commit_after(client, image: str, script: str, **kw):
    ctr = client.containers.run(image, ["sh", "-c", script], detach=True)
    try:
        assert ctr.wait(timeout=60)["StatusCode"] == 0
        return client.images.get(ctr.commit(**kw).id)
    finally:
        ctr.remove(force=True)


def ids(items: list[dict]) -> list[str]:
    return [i["Id"] for i in items]


def test_commit_chain_parents_listing_and_rmi(daemon, client, busybox):
    packed = client.api.inspect_image(busybox)["Size"]
    one = commit_after(client, "busybox", "echo one > /one")                      # untagged
    assert client.api.inspect_image(busybox)["Size"] > packed  # the run unpacked busybox: uncompressed now
    two = commit_after(client, one.id, "echo two > /two", repository="h7chain", tag="1")
    assert client.api.inspect_image(two.id)["Parent"] == one.id
    assert client.api.inspect_image(one.id)["Parent"] == busybox
    hist = client.api.history("h7chain:1")
    assert [h["Id"] for h in hist[:3]] == [two.id, one.id, busybox]
    assert [h["Tags"] for h in hist[:3]] == [["h7chain:1"], None, ["busybox:latest"]]
    assert one.id not in ids(client.api.images())
    assert two.id in ids(client.api.images()) and busybox in ids(client.api.images())
    everything = {i["Id"]: i for i in client.api.images(all=True)}
    assert everything[one.id]["RepoTags"] == ["<none>:<none>"] and everything[one.id]["ParentId"] == busybox
    assert one.id not in ids(client.api.images(filters={"dangling": True}))
    assert [i.id for i in client.images.list(name="h7chain")] == [two.id]
    if shutil.which("docker"):
        short = one.id[7:19]
        assert short not in cli(daemon, "images", "-q").stdout
        assert f"{short} <none>:<none>" in cli(daemon, "images", "-a", "--format",
                                               "{{.ID}} {{.Repository}}:{{.Tag}}").stdout
        r = cli(daemon, "rmi", busybox[7:19])
        assert r.returncode != 0 and "image has dependent child images" in r.stderr
        r = cli(daemon, "rmi", "h7chain:1")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == "Untagged: h7chain:1"
        deleted = [ln.split(" ", 1)[1] for ln in lines[1:]]
        assert deleted.index(two.id) < deleted.index(one.id)
    else:
        got = client.api.remove_image("h7chain:1")
        deleted = [i["Deleted"] for i in got if "Deleted" in i]
        assert deleted.index(two.id) < deleted.index(one.id)
    left = ids(client.api.images(all=True))
    assert one.id not in left and two.id not in left and busybox in left


def test_prune_keeps_intermediate_images(daemon, client, busybox):
    base = commit_after(client, "busybox", "echo base > /base")                     # becomes a parent
    top = commit_after(client, base.id, "echo top > /top", repository="h7keep", tag="1")
    loose = commit_after(client, "busybox", "echo loose > /loose")                 # dangling
    assert loose.id in ids(client.api.images(filters={"dangling": True}))
    assert client.api.prune_images(filters={"until": "1h"})["ImagesDeleted"] is None  # all newer
    with pytest.raises(docker.errors.APIError, match="invalid filter 'bogus'"):
        client.api.prune_images(filters={"bogus": "1"})
    res = client.api.prune_images()
    deleted = [i.get("Deleted") for i in res["ImagesDeleted"] or []]
    assert loose.id in deleted and base.id not in deleted and top.id not in deleted
    left = ids(client.api.images(all=True))
    assert base.id in left and top.id in left and loose.id not in left
    # no-prune: the parent stays, now dangling
    got = client.api.remove_image("h7keep:1", noprune=True)
    assert [i for i in got if "Deleted" in i][0] == {"Deleted": top.id}
    assert base.id in ids(client.api.images(filters={"dangling": True}))
    client.api.remove_image(base.id)
    assert os.path.isdir(daemon.data)
