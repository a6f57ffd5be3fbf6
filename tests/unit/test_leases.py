"""Leases: create, hold resources, expire, delete, context manager."""

from __future__ import annotations

import os

import pytest

from berth.errors import AlreadyExists, InvalidArgument, NotFound
from berth.metadata.db import Database
from berth.metadata.leases import CONTENT, IMAGE, SNAPSHOT, Leases, lease
from berth.oci.digest import sha256

D1 = sha256(b"one")
D2 = sha256(b"two")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path):
    d = Database(os.path.join(tmp_path, "meta.db"))
    yield d
    d.close()


def test_create_add_resources_delete(db):
    leases = Leases(db)
    a = leases.create(labels={"op": "pull"})
    b = leases.create("build-1")
    assert a.id.startswith("lease-") and a.id != b.id
    leases.add_resource(a.id, CONTENT, D1)
    leases.add_resource(a.id, CONTENT, D1)  # idempotent
    a.add(SNAPSHOT, "sha256-chain-key")
    b.add(CONTENT, D2)
    b.add(IMAGE, "busybox:latest")
    assert leases.resources() == {(CONTENT, D1), (CONTENT, D2), (SNAPSHOT, "sha256-chain-key"),
                                  (IMAGE, "busybox:latest")}
    assert leases.lease_resources(a.id) == {(CONTENT, D1), (SNAPSHOT, "sha256-chain-key")}
    assert leases.get(a.id).labels == {"op": "pull"}
    assert {x.id for x in leases.list()} == {a.id, b.id}
    leases.delete(a.id)
    assert leases.resources() == {(CONTENT, D2), (IMAGE, "busybox:latest")}
    b.remove(IMAGE, "busybox:latest")
    assert leases.resources() == {(CONTENT, D2)}
    with pytest.raises(NotFound):
        leases.delete(a.id)
    with pytest.raises(NotFound):
        leases.add_resource(a.id, CONTENT, D1)
    # the schema survives reopening
    assert Leases(db).resources() == {(CONTENT, D2)}


def test_bad_input(db):
    leases = Leases(db)
    lz = leases.create("x")
    with pytest.raises(AlreadyExists):
        leases.create("x")
    for bad_id in ("", "../x", "a b", "x" * 300):
        with pytest.raises(InvalidArgument):
            leases.create(bad_id)
    with pytest.raises(InvalidArgument):
        leases.create(expires_in=-5)
    with pytest.raises(InvalidArgument):
        leases.create(labels={"a": 1})
    with pytest.raises(InvalidArgument):
        lz.add("blobs", D1)  # unknown kind: a typo must not silently protect nothing
    with pytest.raises(InvalidArgument):
        lz.add(CONTENT, "sha256:../../x")
    with pytest.raises(InvalidArgument):
        lz.add(SNAPSHOT, "")
    assert leases.resources() == set()


def test_expiry(db):
    clock = Clock()
    leases = Leases(db, clock=clock)
    short = leases.create("short", expires_in=10)
    forever = leases.create("forever")
    short.add(CONTENT, D1)
    forever.add(CONTENT, D2)
    clock.now += 9
    assert leases.resources() == {(CONTENT, D1), (CONTENT, D2)}
    clock.now += 2
    assert leases.resources() == {(CONTENT, D2)}
    with pytest.raises(NotFound):
        leases.get("short")
    with pytest.raises(NotFound):
        short.add(CONTENT, D2)
    assert [x.id for x in leases.list()] == ["forever"]
    leases.create("short")  # an expired id can be reused
    assert leases.lease_resources("short") == set()
    clock.now += 1
    assert leases.expire() == []
    leases.create("gone", expires_in=1)
    clock.now += 5
    assert leases.expire() == ["gone"]
    assert db.query("SELECT * FROM lease_resources WHERE lease_id='gone'") == []


def test_context_manager_deletes_on_exit_and_error(db):
    leases = Leases(db)
    with lease(db, labels={"op": "unpack"}) as lz:
        lz.add(CONTENT, D1)
        assert leases.resources() == {(CONTENT, D1)}
        assert leases.get(lz.id).expires is not None  # expires by default
    assert leases.resources() == set() and leases.list() == []
    with pytest.raises(RuntimeError):
        with lease(leases) as lz:
            lz.add(SNAPSHOT, "k")
            raise RuntimeError("boom")
    assert leases.resources() == set() and leases.list() == []
