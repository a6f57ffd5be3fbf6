import gzip
import io
import os

import pytest
import zstandard

from berth.content import ContentStore
from berth.errors import InvalidArgument
from berth.images.importer import apply_changes, import_image
from berth.images.store import ImageStore
from berth.metadata.db import Database
from berth.oci import digest
from tests.unit.test_images_util import make_tar


def test_changes_docker_syntax():
    cfg = apply_changes({"Env": ["PATH=/bin", "A=old"]}, [
        'CMD ["echo", "hi"]',
        "ENV A=new B=\"two words\"",
        "ENV LEGACY value with spaces",
        "WORKDIR /srv",
        "WORKDIR app",
        "USER nobody:nogroup",
        "EXPOSE 80 53/udp 8000-8002",
        'LABEL a=b "c d"=e',
        "VOLUME /data /cache",
        'VOLUME ["/json"]',
        "STOPSIGNAL SIGTERM",
        "ONBUILD RUN true",
    ])
    assert cfg["Cmd"] == ["echo", "hi"]
    assert cfg["Env"] == ["PATH=/bin", "A=new", "B=two words", "LEGACY=value with spaces"]
    assert cfg["WorkingDir"] == "/srv/app"
    assert cfg["User"] == "nobody:nogroup"
    assert set(cfg["ExposedPorts"]) == {"80/tcp", "53/udp", "8000/tcp", "8001/tcp", "8002/tcp"}
    assert cfg["Labels"] == {"a": "b", "c d": "e"}
    assert set(cfg["Volumes"]) == {"/data", "/cache", "/json"}
    assert cfg["StopSignal"] == "SIGTERM" and cfg["OnBuild"] == ["RUN true"]
    shell = apply_changes({}, ["cmd echo $HOME", "ENTRYPOINT /init"])
    assert shell["Entrypoint"] == ["/bin/sh", "-c", "/init"] and shell["Cmd"] is None
    assert apply_changes({}, ["CMD echo $HOME"])["Cmd"] == ["/bin/sh", "-c", "echo $HOME"]


@pytest.mark.parametrize("bad", ["RUN true", "FROM x", "ENV", "ENV =x", "EXPOSE abc", "EXPOSE 70000",
                                 "WORKDIR", "LABEL a", "VOLUME", 'ENV A="unterminated'])
def test_bad_changes(bad):
    with pytest.raises(InvalidArgument):
        apply_changes({}, [bad])


@pytest.fixture
def store(tmp_path):
    s = ImageStore(Database(str(tmp_path / "m.db")), ContentStore(str(tmp_path / "c")))
    yield s
    s.db.close()


@pytest.mark.parametrize("compress", ["none", "gzip", "zstd"])
def test_import_any_compression(store, compress):
    raw = make_tar({"etc/hello": b"hi\n", "bin/": b""})
    data = {"none": raw, "gzip": gzip.compress(raw),
            "zstd": zstandard.ZstdCompressor().compress(raw)}[compress]
    img = import_image(store, io.BytesIO(data), ref="imported:1", changes=["CMD [\"sh\"]", "ENV A=1"],
                       message="hello")
    info = store.inspect("imported:1")
    assert info["Id"] == img.id
    assert info["RootFS"]["Layers"] == [digest.sha256(raw)]
    assert info["Config"]["Cmd"] == ["sh"] and info["Config"]["Env"] == ["A=1"]
    assert info["Comment"] == "hello"
    hist = store.history("imported:1")
    assert len(hist) == 1 and hist[0]["Comment"] == "hello"
    m = store.read_manifest(img)
    assert m.layers[0].media_type.endswith("+gzip")
    with store.content.open(m.layers[0].digest) as f:
        assert gzip.decompress(f.read()) == raw


def test_import_same_input_same_layer_digest(store):
    raw = make_tar({"a": b"1"})
    a = import_image(store, io.BytesIO(raw), created="2024-01-01T00:00:00Z")
    b = import_image(store, io.BytesIO(gzip.compress(raw)), created="2024-01-01T00:00:00Z")
    assert a.id == b.id


@pytest.mark.parametrize("data", [b"", b"definitely not a tar archive" * 40, gzip.compress(b"x" * 1000)])
def test_import_refuses_non_tar_and_leaves_nothing(store, data):
    with pytest.raises(InvalidArgument):
        import_image(store, io.BytesIO(data), ref="bad:1")
    assert list(store.content.walk()) == []
    assert store.all() == []
    ingest = os.path.join(store.content.root, "ingest")
    assert not os.path.isdir(ingest) or os.listdir(ingest) == []


def test_import_bad_ref(store):
    with pytest.raises(InvalidArgument):
        import_image(store, io.BytesIO(make_tar({"a": b"1"})), ref="Bad Ref")


def test_import_from_path(store, tmp_path):
    p = tmp_path / "rootfs.tar"
    p.write_bytes(make_tar({"x": b"1"}))
    img = import_image(store, str(p), ref="frompath:1")
    assert store.inspect(img.id)["Comment"] == f"Imported from {p}"
    assert store.config("frompath:1").diff_ids == [digest.sha256(p.read_bytes())]
