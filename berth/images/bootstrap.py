"""Base images made on this machine, without a registry.

``busybox:latest`` from Debian's ``busybox-static`` (the binary, its applet links, ``/etc/passwd``,
``/etc/group``; ``Cmd ["sh"]``); reproducible: the same busybox binary gives the same image ID.

``debian:bookworm`` from ``debootstrap --variant=minbase`` against the Debian mirror apt uses here
(read from ``/etc/apt/sources.list(.d)``). The layer is cached under a cache directory so it is
built once per machine.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from typing import TYPE_CHECKING, Any

from berth.errors import InvalidArgument, NotFound, Unavailable
from berth.images.blobs import Layer, _Tee, put_image
from berth.oci import image as oci

if TYPE_CHECKING:
    from berth.images.store import Image, ImageStore

BUSYBOX = "/bin/busybox"
BUSYBOX_CREATED = "2024-01-01T00:00:00Z"
BUSYBOX_EPOCH = 1704067200  # BUSYBOX_CREATED as a Unix time: every mtime in the layer
DEFAULT_CACHE_DIR = "/var/cache/berth/bootstrap"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_DIRS = {"bin": 0o755, "sbin": 0o755, "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755, "etc": 0o755,
         "proc": 0o555, "sys": 0o555, "dev": 0o755, "tmp": 0o1777, "root": 0o700, "home": 0o755,
         "var": 0o755, "var/spool": 0o755, "var/spool/mail": 0o755, "var/www": 0o755, "run": 0o755}
_PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
           "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
           "bin:x:2:2:bin:/bin:/bin/false\n"
           "sys:x:3:3:sys:/dev:/bin/false\n"
           "www-data:x:33:33:www-data:/var/www:/bin/false\n"
           "nobody:x:65534:65534:nobody:/home:/bin/false\n")
_GROUP = ("root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nadm:x:4:\ntty:x:5:\ndisk:x:6:\nwheel:x:10:root\n"
          "www-data:x:33:\nusers:x:100:\nnogroup:x:65534:\n")


def _write_layer(store: ImageStore, root: str, epoch: int | None, lease: Any) -> Layer:
    """Diff a whole directory tree (delete mode, no parent) into a gzip layer blob."""
    import secrets

    from berth.archive import write_diff

    with store.content.writer(f"bootstrap-{secrets.token_hex(8)}") as w:
        res = write_diff(root, _Tee(w), whiteout_mode="delete", lower_dirs=(), compression="gzip",
                         source_date_epoch=epoch)
        dg = w.commit()
    lease.add("content", dg)
    if dg != res.digest:
        raise Unavailable(f"layer digest {dg} differs from the diff's {res.digest}")
    return Layer(oci.Descriptor(res.media_type, res.digest, res.compressed_size), res.diff_id, res.size)


def _set_times(root: str, ts: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (ts, ts), follow_symlinks=False)
        os.utime(dirpath, (ts, ts), follow_symlinks=False)


def make_busybox_rootfs(root: str, busybox: str = BUSYBOX) -> list[str]:
    """Fill root with busybox, its applet symlinks, passwd and group; return the applet paths."""
    if not os.path.isfile(busybox):
        raise NotFound(f"{busybox} not found: install Debian's busybox-static")
    out = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise Unavailable(f"{busybox} --list-full failed: {out.stderr.strip()}")
    applets = sorted({line.strip().lstrip("/") for line in out.stdout.splitlines() if line.strip()})
    for d, mode in sorted(_DIRS.items()):
        p = os.path.join(root, d)
        os.makedirs(p, exist_ok=True)
        os.chmod(p, mode)
    target = os.path.join(root, "bin/busybox")
    shutil.copyfile(busybox, target)
    os.chmod(target, 0o755)
    for applet in applets:
        if applet == "bin/busybox" or ".." in applet.split("/"):
            continue
        link = os.path.join(root, applet)
        if os.path.lexists(link):
            continue
        parent = os.path.dirname(link)
        if not os.path.isdir(parent):
            os.makedirs(parent, exist_ok=True)
            os.chmod(parent, 0o755)
        os.symlink("/bin/busybox", link)
    for name, text in (("etc/passwd", _PASSWD), ("etc/group", _GROUP)):
        p = os.path.join(root, name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, 0o644)
    return applets


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def busybox_image(store: ImageStore, *, name: str = "busybox:latest", busybox: str = BUSYBOX,
                  work_dir: str | None = None) -> Image:
    """Build (or rebuild: same binary, same ID) the busybox image and tag it ``name``."""
    with store.hold("bootstrap") as held:
        return _busybox_image(store, name, busybox, work_dir, held)


def _busybox_image(store: ImageStore, name: str, busybox: str, work_dir: str | None, lease: Any) -> Image:
    stage = tempfile.mkdtemp(prefix="berth-busybox-", dir=work_dir)
    try:
        root = os.path.join(stage, "rootfs")
        os.mkdir(root, 0o755)
        os.chmod(root, 0o755)
        make_busybox_rootfs(root, busybox)
        _set_times(root, BUSYBOX_EPOCH)
        layer = _write_layer(store, root, BUSYBOX_EPOCH, lease)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    cfg = oci.new_config(
        diff_ids=[layer.diff_id], created=BUSYBOX_CREATED,
        config={"Env": [f"PATH={DEFAULT_PATH}"], "Cmd": ["sh"]},
        history=[{"created": BUSYBOX_CREATED,
                  "created_by": f"berth bootstrap: busybox-static (sha256:{_file_sha256(busybox)}), "
                                "applet links from busybox --list-full"},
                 {"created": BUSYBOX_CREATED, "created_by": 'CMD ["sh"]', "empty_layer": True}])
    return store.add(put_image(store.content, [layer], cfg, lease=lease), names=[name])


# --- debian ------------------------------------------------------------------------------------
def apt_mirror(suite: str = "bookworm", root: str = "/") -> str:
    """The Debian mirror apt uses on this machine for suite (sources.list and deb822 .sources)."""
    candidates: list[tuple[str, list[str]]] = []
    one_line = [os.path.join(root, "etc/apt/sources.list")] + sorted(
        glob.glob(os.path.join(root, "etc/apt/sources.list.d/*.list")))
    for path in one_line:
        try:
            with open(path) as f:
                for line in f:
                    words = line.split("#", 1)[0].split()
                    if len(words) >= 3 and words[0] == "deb":
                        rest = [w for w in words[1:] if not w.startswith("[")]
                        if words[1].startswith("["):
                            # options block: "deb [arch=amd64 signed-by=...] URI suite comps"
                            rest = line.split("]", 1)[1].split("#", 1)[0].split()
                        if len(rest) >= 2:
                            candidates.append((rest[0], [rest[1]]))
        except OSError:
            continue
    for path in sorted(glob.glob(os.path.join(root, "etc/apt/sources.list.d/*.sources"))):
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        for stanza in text.split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                k, _, v = line.partition(":")
                fields[k.strip().lower()] = v.strip()
            if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
                continue
            for uri in fields.get("uris", "").split():
                candidates.append((uri, fields.get("suites", "").split()))
    for uri, suites in candidates:
        if suite in suites and uri.startswith(("http://", "https://", "file:/")):
            return uri
    raise NotFound(f"no Debian mirror for {suite} in {root}etc/apt/sources.list(.d)")


def _mounts_under(path: str) -> list[str]:
    real = os.path.realpath(path)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == real or mp.startswith(real + "/"):
                out.append(mp)
    return out


def _unmount_under(path: str) -> None:
    from berth.mount import unmount_all

    for mp in sorted(_mounts_under(path), key=len, reverse=True):
        try:
            unmount_all(mp)
        except OSError:
            pass
    if _mounts_under(path):
        raise Unavailable(f"cannot unmount what debootstrap left mounted under {path}")


def _safe_rmtree(path: str) -> None:
    """rmtree that never descends into a mount (debootstrap may bind /dev, /proc, /sys)."""
    if not os.path.exists(path):
        return
    _unmount_under(path)
    shutil.rmtree(path, ignore_errors=True)


def _clean_rootfs(root: str) -> None:
    """Drop what a container image does not ship: apt caches, device nodes, host files."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*",
                    "dev/*", "proc/*", "sys/*", "run/*", "tmp/*", "var/tmp/*", "var/log/*.log",
                    "var/log/apt/*", "var/cache/debconf/*-old", "var/lib/dpkg/*-old",
                    "etc/resolv.conf", "etc/hostname", "etc/machine-id", "debootstrap"):
        for p in glob.glob(os.path.join(root, pattern)):
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
    open(os.path.join(root, "etc/machine-id"), "w").close()


def debian_image(store: ImageStore, *, suite: str = "bookworm", name: str | None = None,
                 cache_dir: str = DEFAULT_CACHE_DIR, mirror: str | None = None,
                 debootstrap: str = "debootstrap", timeout: float = 1800.0) -> Image:
    """The ``debian:<suite>`` image from a cached or freshly debootstrapped minbase layer."""
    with store.hold("bootstrap") as held:
        return _debian_image(store, suite, name or f"debian:{suite}", cache_dir, mirror, debootstrap, timeout,
                             held)


def _debian_image(store: ImageStore, suite: str, name: str, cache_dir: str, mirror: str | None,
                  debootstrap: str, timeout: float, lease: Any) -> Image:
    arch = oci.host_platform().architecture
    os.makedirs(cache_dir, mode=0o700, exist_ok=True)
    blob_path = os.path.join(cache_dir, f"debian-{suite}-{arch}.layer.tar.gz")
    meta_path = blob_path + ".json"
    layer = _cached_layer(store, blob_path, meta_path, lease)
    if layer is None:
        meta = _build_debian_layer(store, suite, arch, cache_dir, blob_path, meta_path, mirror, debootstrap,
                                   timeout)
        layer = _cached_layer(store, blob_path, meta_path, lease)
        if layer is None:
            raise Unavailable(f"debian layer cache at {blob_path} is unusable right after building it")
    else:
        with open(meta_path) as f:
            meta = json.load(f)
    created = meta["created"]
    cfg = oci.new_config(
        diff_ids=[layer.diff_id], created=created,
        config={"Env": [f"PATH={DEFAULT_PATH}"], "Cmd": ["bash"]},
        history=[{"created": created,
                  "created_by": f"debootstrap --variant=minbase {suite} {meta.get('mirror', '')}"},
                 {"created": created, "created_by": 'CMD ["bash"]', "empty_layer": True}])
    return store.add(put_image(store.content, [layer], cfg, lease=lease), names=[name])


def _cached_layer(store: ImageStore, blob_path: str, meta_path: str, lease: Any) -> Layer | None:
    try:
        with open(meta_path) as f:
            meta = json.load(f)
        dg, diff_id = meta["digest"], meta["diff_id"]
        size, usize = int(meta["size"]), int(meta["uncompressed"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        lease.add("content", dg)
        if not store.content.exists(dg):
            with open(blob_path, "rb") as src, store.content.writer(f"bootstrap-cache-{dg}", expected=dg,
                                                                    size=size) as w:
                w.copy_from(src)
                w.commit()
    except (OSError, InvalidArgument) as e:
        _drop(blob_path, meta_path, e)
        return None
    except Exception as e:  # DataCorrupt: the cache file was damaged; rebuild it
        _drop(blob_path, meta_path, e)
        return None
    return Layer(oci.Descriptor(oci.OCI_LAYER_GZIP, dg, size), diff_id, usize)


def _drop(blob_path: str, meta_path: str, why: Exception) -> None:
    import logging

    logging.getLogger("berth.images.bootstrap").warning("discarding debian layer cache: %s", why)
    for p in (meta_path, blob_path):
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def _build_debian_layer(store: ImageStore, suite: str, arch: str, cache_dir: str, blob_path: str,
                        meta_path: str, mirror: str | None, debootstrap: str, timeout: float) -> dict:
    from berth.archive import write_diff
    from berth.images.blobs import now_rfc3339

    if os.geteuid() != 0:
        raise Unavailable("building debian with debootstrap needs root")
    if shutil.which(debootstrap) is None:
        raise NotFound(f"{debootstrap} not found: apt-get install debootstrap")
    mirror = mirror or apt_mirror(suite)
    stage = tempfile.mkdtemp(prefix="debootstrap-", dir=cache_dir)
    try:
        root = os.path.join(stage, "rootfs")
        try:
            proc = subprocess.run([debootstrap, "--variant=minbase", f"--arch={arch}", suite, root, mirror],
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Unavailable(f"debootstrap {suite} timed out after {timeout:.0f}s") from None
        _unmount_under(root)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
            raise Unavailable(f"debootstrap --variant=minbase {suite} {mirror} failed "
                              f"(exit {proc.returncode}):\n{tail}")
        _clean_rootfs(root)
        tmp_blob = os.path.join(stage, "layer.tar.gz")
        with open(tmp_blob, "wb") as out:
            res = write_diff(root, out, whiteout_mode="delete", lower_dirs=(), compression="gzip")
            out.flush()
            os.fsync(out.fileno())
        meta = {"digest": res.digest, "diff_id": res.diff_id, "size": res.compressed_size,
                "uncompressed": res.size, "created": now_rfc3339(), "mirror": mirror, "suite": suite}
        os.rename(tmp_blob, blob_path)
        tmp_meta = os.path.join(stage, "meta.json")
        with open(tmp_meta, "w") as f:
            json.dump(meta, f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp_meta, meta_path)
        return meta
    finally:
        _safe_rmtree(stage)
