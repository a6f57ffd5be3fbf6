import os

import pytest

from berth import errors
from berth.metadata.db import Database
from berth.oci import digest


def test_digest_validation():
    d = digest.sha256(b"hi")
    assert digest.validate(d) == d
    assert digest.hex_of(d) == d[7:]
    for bad in ["sha256:../../x", "sha256:" + "A" * 64, "md5:abc", "", "sha256:" + "a" * 63]:
        with pytest.raises(errors.InvalidArgument):
            digest.validate(bad)


def test_error_status_mapping():
    assert errors.from_status(404, "x").__class__ is errors.NotFound
    assert errors.NotFound("x").http_status == 404
    assert errors.Conflict("x").http_status == 409


def test_database_migrations_are_per_component(tmp_path):
    db = Database(os.path.join(tmp_path, "m.db"))
    assert db.migrate("a", ["CREATE TABLE a1(x)", "ALTER TABLE a1 ADD COLUMN y"]) == 2
    assert db.migrate("b", ["CREATE TABLE b1(x)"]) == 1
    # re-running is a no-op
    assert db.migrate("a", ["CREATE TABLE a1(x)", "ALTER TABLE a1 ADD COLUMN y"]) == 2
    with pytest.raises(RuntimeError), db.transaction() as c:
        c.execute("INSERT INTO a1(x, y) VALUES(1, 2)")
        raise RuntimeError("rollback")
    assert db.query("SELECT * FROM a1") == []
    assert db.query_one("PRAGMA journal_mode")[0] == "wal"
