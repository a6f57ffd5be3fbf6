import hashlib
import json

import pytest

from berth.errors import DataCorrupt, InvalidArgument, LimitExceeded, NotFound
from berth.oci import image as oci
from berth.oci.image import Descriptor, Platform

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def desc(mt, d=D1, size=10, **kw):
    return {"mediaType": mt, "digest": d, "size": size, **kw}


def manifest(**over):
    m = {"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "config": desc(oci.OCI_CONFIG, D1),
         "layers": [desc(oci.OCI_LAYER_GZIP, D2), desc(oci.OCI_LAYER_ZSTD, D3)]}
    m.update(over)
    return json.dumps(m).encode()


def test_parse_manifest_ok_and_roundtrip():
    m = oci.parse_manifest(manifest(), oci.OCI_MANIFEST)
    assert m.config.digest == D1 and [x.digest for x in m.layers] == [D2, D3]
    again = oci.parse_manifest(m.to_bytes())
    assert again.to_dict() == m.to_dict()


def test_docker_schema2_and_all_layer_types():
    layers = [desc(t, D2) for t in oci.LAYER_TYPES]
    data = manifest(mediaType=oci.DOCKER_MANIFEST, config=desc(oci.DOCKER_CONFIG), layers=layers)
    m = oci.parse_manifest(data, oci.DOCKER_MANIFEST)
    assert len(m.layers) == len(oci.LAYER_TYPES)
    assert oci.DOCKER_FOREIGN_LAYER in oci.FOREIGN_LAYER_TYPES
    assert oci.layer_media_type("zstd") == oci.OCI_LAYER_ZSTD
    assert oci.layer_media_type(None, docker=True) == oci.DOCKER_LAYER


def test_manifest_without_media_type_uses_descriptor():
    d = json.loads(manifest())
    del d["mediaType"]
    assert oci.parse_manifest(json.dumps(d).encode(), oci.DOCKER_MANIFEST).media_type == oci.DOCKER_MANIFEST
    assert oci.parse_manifest(json.dumps(d).encode()).media_type == oci.OCI_MANIFEST


@pytest.mark.parametrize("data,err", [
    (manifest(layers=None), "layers must be a list"),
    (manifest(layers={}), "layers must be a list"),
    (manifest(mediaType=oci.OCI_INDEX), "unexpected mediaType"),
    (manifest(manifests=[]), "index posing"),
    (manifest(schemaVersion=1), "schemaVersion"),
    (manifest(config=None), "missing config"),
    (manifest(config=desc(oci.OCI_CONFIG, "sha256:../../x")), "bad digest"),
    (manifest(config=desc(oci.OCI_CONFIG, size=-1)), "bad size"),
    (manifest(config=desc(oci.OCI_CONFIG, size="1")), "bad size"),
    (manifest(config=desc("text/plain")), "config mediaType"),
    (manifest(layers=[desc("application/x-evil", D2)]), "unsupported mediaType"),
    (manifest(layers=[{"digest": D2, "size": 1}]), "mediaType"),
    (b"[]", "not a JSON object"),
    (b"{nope", "invalid manifest"),
])
def test_manifest_rejects(data, err):
    with pytest.raises(InvalidArgument, match=err):
        oci.parse_manifest(data)


def test_lying_media_type():
    with pytest.raises(InvalidArgument, match="does not match descriptor"):
        oci.parse_manifest(manifest(mediaType=oci.DOCKER_MANIFEST), oci.OCI_MANIFEST)
    with pytest.raises(InvalidArgument):
        oci.parse_manifest(manifest(), oci.OCI_INDEX)


def test_manifest_limits():
    with pytest.raises(LimitExceeded):
        oci.parse_manifest(manifest(layers=[desc(oci.OCI_LAYER, D2)] * 129))
    big = manifest(annotations={"x": "y" * (5 << 20)})
    with pytest.raises(LimitExceeded):
        oci.parse_manifest(big)


def index(entries, **over):
    d = {"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": entries}
    d.update(over)
    return json.dumps(d).encode()


def plat(os_, arch, variant=None):
    p = {"os": os_, "architecture": arch}
    if variant:
        p["variant"] = variant
    return p


def test_parse_index_and_rejects():
    idx = oci.parse_index(index([desc(oci.OCI_MANIFEST, D1, platform=plat("linux", "amd64"))]))
    assert idx.manifests[0].platform == Platform("linux", "amd64")
    assert oci.parse_index(idx.to_bytes()).to_dict() == idx.to_dict()
    with pytest.raises(InvalidArgument):
        oci.parse_index(index(None))
    with pytest.raises(InvalidArgument, match="posing"):
        oci.parse_index(index([], layers=[]))
    with pytest.raises(InvalidArgument):
        oci.parse_index(index([], mediaType=oci.OCI_MANIFEST))
    with pytest.raises(LimitExceeded):
        oci.parse_index(index([desc(oci.OCI_MANIFEST)] * 5000))
    assert oci.sniff_media_type(index([])) == oci.OCI_INDEX
    assert oci.sniff_media_type(manifest()) == oci.OCI_MANIFEST


def test_select_manifest_platforms():
    entries = [
        desc(oci.OCI_MANIFEST, "sha256:" + "a" * 64, platform=plat("linux", "arm", "v6")),
        desc(oci.OCI_MANIFEST, "sha256:" + "b" * 64, platform=plat("linux", "arm", "v7")),
        desc(oci.OCI_MANIFEST, "sha256:" + "c" * 64, platform=plat("linux", "arm64", "v8")),
        desc(oci.OCI_MANIFEST, "sha256:" + "d" * 64, platform=plat("linux", "amd64")),
        desc(oci.OCI_MANIFEST, "sha256:" + "e" * 64, platform=plat("windows", "amd64")),
        desc(oci.OCI_MANIFEST, "sha256:" + "f" * 64, platform=plat("unknown", "unknown"),
             annotations={"vnd.docker.reference.type": "attestation-manifest"}),
    ]
    idx = oci.parse_index(index(entries))
    assert oci.select_manifest(idx, Platform("linux", "x86_64")).digest.endswith("d" * 64)
    assert oci.select_manifest(idx, oci.parse_platform("linux/arm/v7")).digest.endswith("b" * 64)
    assert oci.select_manifest(idx, oci.parse_platform("linux/arm/v6")).digest.endswith("a" * 64)
    assert oci.select_manifest(idx, oci.parse_platform("linux/arm64")).digest.endswith("c" * 64)
    assert oci.select_manifest(idx, oci.parse_platform("linux/aarch64/8")).digest.endswith("c" * 64)
    with pytest.raises(NotFound, match="no matching manifest for linux/arm/v5 in the manifest list entries"):
        oci.select_manifest(idx, oci.parse_platform("linux/arm/v5"))
    with pytest.raises(NotFound, match="linux/s390x"):
        oci.select_manifest(idx, Platform("linux", "s390x"))
    only_v7 = oci.parse_index(index(entries[1:2]))
    assert oci.select_manifest(only_v7, oci.parse_platform("linux/arm/v8")).digest.endswith("b" * 64)
    amd_v3 = oci.parse_index(index([desc(oci.OCI_MANIFEST, D2, platform=plat("linux", "amd64", "v3"))]))
    with pytest.raises(NotFound):
        oci.select_manifest(amd_v3, oci.parse_platform("linux/amd64"))
    assert oci.select_manifest(amd_v3, oci.parse_platform("linux/amd64/v4")).digest == D2


def test_host_platform_and_parse_platform():
    assert oci.host_platform().os == "linux"
    assert oci.host_platform().architecture in ("amd64", "arm64", "arm", "386", "s390x", "ppc64le", "riscv64")
    assert str(oci.parse_platform("linux/arm")) == "linux/arm/v7"
    with pytest.raises(InvalidArgument):
        oci.parse_platform("a/b/c/d")
    with pytest.raises(InvalidArgument):
        oci.parse_platform("")


def config(**over):
    c = {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
         "config": {"Cmd": ["sh"], "Env": ["A=b"]},
         "rootfs": {"type": "layers", "diff_ids": [D2, D3]},
         "history": [{"created_by": "a"}, {"created_by": "b", "empty_layer": True}, {"created_by": "c"}]}
    c.update(over)
    return json.dumps(c).encode()


def test_parse_config():
    c = oci.parse_config(config())
    assert c.diff_ids == [D2, D3] and c.config["Cmd"] == ["sh"] and c.platform == Platform("linux", "amd64")
    assert oci.config_matches(c, Platform("linux", "amd64"))
    assert not oci.config_matches(c, Platform("linux", "arm64"))
    m = oci.parse_manifest(manifest())
    oci.check_manifest_config(m, c)
    with pytest.raises(DataCorrupt):
        oci.check_manifest_config(m, oci.parse_config(config(rootfs={"type": "layers", "diff_ids": [D2]},
                                                             history=[])))


@pytest.mark.parametrize("data", [
    config(rootfs=None), config(rootfs={"type": "other", "diff_ids": []}),
    config(rootfs={"type": "layers", "diff_ids": ["sha256:../../x"]}),
    config(rootfs={"type": "layers", "diff_ids": "x"}), config(config=[]),
    config(config={"Cmd": "sh"}), config(history=[{"created_by": "only one"}]), config(os=5),
])
def test_config_rejects(data):
    with pytest.raises(InvalidArgument):
        oci.parse_config(data)


def test_chain_ids():
    assert oci.chain_ids([]) == []
    assert oci.chain_ids([D1]) == [D1]
    second = "sha256:" + hashlib.sha256(f"{D1} {D2}".encode()).hexdigest()
    third = "sha256:" + hashlib.sha256(f"{second} {D3}".encode()).hexdigest()
    assert oci.chain_ids([D1, D2, D3]) == [D1, second, third]
    assert oci.chain_id([D1, D2, D3]) == third
    with pytest.raises(InvalidArgument):
        oci.chain_ids(["sha256:../x"])
    # the example from the OCI image spec
    a = "sha256:" + "a" * 64
    assert oci.chain_id([a]) == a


def test_descriptor_roundtrip_and_new_config():
    d = Descriptor.from_dict(desc(oci.OCI_LAYER, urls=["http://x"], annotations={"a": "b"},
                                  platform=plat("linux", "arm64")))
    assert Descriptor.from_dict(d.to_dict()) == d
    with pytest.raises(InvalidArgument):
        Descriptor.from_dict(desc(oci.OCI_LAYER, annotations={"a": 1}))
    c = oci.new_config(diff_ids=[D1], history=[{"created_by": "x"}], created="2024-01-01T00:00:00Z")
    assert oci.parse_config(oci.canonical_json(c)).diff_ids == [D1]
