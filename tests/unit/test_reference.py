import pytest

from berth.errors import InvalidArgument
from berth.oci import reference
from berth.oci.reference import parse

HEX = "a" * 64


@pytest.mark.parametrize("given,full,familiar", [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
    ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
    ("localhost:5000/a/b:tag", "localhost:5000/a/b:tag", "localhost:5000/a/b:tag"),
    ("quay.io/org/img:1.0-rc_1", "quay.io/org/img:1.0-rc_1", "quay.io/org/img:1.0-rc_1"),
    ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest", "127.0.0.1:5000/x:latest"),
    ("[::1]:5000/x:t", "[::1]:5000/x:t", "[::1]:5000/x:t"),
    (f"busybox@sha256:{HEX}", f"docker.io/library/busybox@sha256:{HEX}", f"busybox@sha256:{HEX}"),
    (f"busybox:1@sha256:{HEX}", f"docker.io/library/busybox:1@sha256:{HEX}", f"busybox:1@sha256:{HEX}"),
    ("a__b/c--d.e:T_1", "docker.io/a__b/c--d.e:T_1", "a__b/c--d.e:T_1"),
    ("Host.Name/x", "Host.Name/x:latest", "Host.Name/x:latest"),
])
def test_parse_normalises(given, full, familiar):
    ref = parse(given)
    assert str(ref) == full
    assert ref.familiar() == familiar
    assert reference.familiar(given) == familiar


def test_fields():
    ref = parse("localhost:5000/a/b:tag")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == ("localhost:5000", "a/b", "tag", "")
    assert ref.name == "localhost:5000/a/b"
    ref = parse(f"busybox@sha256:{HEX}")
    assert ref.tag == "" and ref.digest == f"sha256:{HEX}"
    assert parse("busybox", default_tag=False).tag == ""
    assert parse("busybox").familiar_name() == "busybox"
    assert parse("busybox").with_tag("x").familiar() == "busybox:x"
    assert parse("busybox").with_digest(f"sha256:{HEX}").familiar() == f"busybox@sha256:{HEX}"


@pytest.mark.parametrize("bad", [
    "", "Busybox", "busybox:", ":tag", "busybox::x", "a//b", "/a", "a/", "-a", "a-", "a..b", "a b",
    "busybox:" + "t" * 129, "busybox@sha256:abc", "busybox@sha256:" + "g" * 64, "busybox@" + HEX,
    HEX, "a:b:c", "x" * 300, "busybox:-tag", "busybox:.tag", "a/b/C", "sha256:../../x",
    "localhost:port/x",
])
def test_invalid(bad):
    with pytest.raises(InvalidArgument) as e:
        parse(bad)
    assert "invalid" in str(e.value)


def test_uppercase_message():
    with pytest.raises(InvalidArgument, match="must be lowercase"):
        parse("docker.io/Library/Busybox")


def test_helpers():
    assert reference.looks_like_id("abc123")
    assert reference.looks_like_id("sha256:" + HEX)
    assert not reference.looks_like_id("busybox")
    assert reference.is_valid_tag("v1.0")
    assert not reference.is_valid_tag("-x")
    with pytest.raises(InvalidArgument):
        reference.parse_name("busybox:1")
    assert reference.parse_name("busybox").tag == ""
