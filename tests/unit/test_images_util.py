"""Helpers for the image tests: layers and images built in memory."""

from __future__ import annotations

import gzip
import io
import tarfile

from berth.images.blobs import Layer, put_image
from berth.oci import digest
from berth.oci import image as oci


def make_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in sorted(files.items()):
            if name.endswith("/"):
                ti = tarfile.TarInfo(name.rstrip("/"))
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                tf.addfile(ti)
                continue
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def put_layer(content, files: dict[str, bytes], compress: bool = True) -> Layer:
    raw = make_tar(files)
    blob = gzip.compress(raw, mtime=0) if compress else raw
    dg = content.write_bytes(blob)
    mt = oci.OCI_LAYER_GZIP if compress else oci.OCI_LAYER
    return Layer(oci.Descriptor(mt, dg, len(blob)), digest.sha256(raw), len(raw))


def make_image(content, layers_files: list[dict[str, bytes]], *, cmd=("sh",), created="2024-01-02T03:04:05Z",
               labels=None, extra_history=None) -> oci.Descriptor:
    layers = [put_layer(content, f) for f in layers_files]
    history = [{"created": created, "created_by": f"layer {i}"} for i in range(len(layers))]
    history += extra_history or []
    cfg = {"architecture": oci.host_platform().architecture, "os": "linux", "created": created,
           "config": {"Cmd": list(cmd), "Env": ["PATH=/bin"], "Labels": labels or None},
           "history": history}
    return put_image(content, layers, cfg)
