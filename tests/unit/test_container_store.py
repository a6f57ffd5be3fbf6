import os

import pytest

from berth.containers.state import Status, check_transition
from berth.containers.store import Container, ContainerStore, new_id, validate_name
from berth.errors import Conflict, InvalidArgument, NotFound
from berth.metadata.db import Database


@pytest.fixture
def store(tmp_path):
    return ContainerStore(Database(os.path.join(tmp_path, "m.db")))


def _c(name, cid=None):
    return Container(id=cid or new_id(), name=name, image_id="sha256:" + "a" * 64,
                     image_name="busybox", config={"Cmd": ["sh"]}, host_config={})


def test_resolve_by_id_name_and_prefix(store):
    c = store.add(_c("web"))
    assert store.get(c.id).name == "web"
    assert store.get("web").id == c.id
    assert store.get("/web").id == c.id
    assert store.get(c.id[:5]).id == c.id
    with pytest.raises(NotFound, match="No such container: nope"):
        store.get("nope")


def test_ambiguous_prefix_and_name_collision(store):
    store.add(_c("aa", "ab" + "0" * 62))
    store.add(_c("bb", "ab" + "1" * 62))
    with pytest.raises(InvalidArgument, match="multiple IDs"):
        store.get("ab")
    with pytest.raises(Conflict, match='name "/aa" is already in use'):
        store.add(_c("aa"))


def test_full_id_wins_over_name_equal_to_another_id(store):
    # CVE-2014-5278: a container named like another container's ID must not shadow it
    first = store.add(_c("first"))
    store.add(_c(first.id[:12]))
    assert store.get(first.id).id == first.id


def test_state_round_trip_and_rename(store):
    c = store.add(_c("xx"))
    c.state.status = Status.RUNNING
    c.state.pid = 42
    store.save_state(c)
    assert store.get("xx").state.pid == 42
    store.rename(c, "yy")
    assert store.get("yy").id == c.id
    store.delete(c.id)
    assert list(store.all()) == []


@pytest.mark.parametrize("bad", ["../x", "a/b", "x" * 300, "", "-x", "a"])
def test_bad_names(bad):
    with pytest.raises(InvalidArgument):
        validate_name(bad)


def test_transitions():
    check_transition(Status.CREATED, Status.RUNNING)
    with pytest.raises(Conflict):
        check_transition(Status.DEAD, Status.RUNNING)


def test_ids_are_not_numeric_prefix():
    for _ in range(100):
        assert not new_id()[:12].isdigit()
