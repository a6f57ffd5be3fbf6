"""``berthd``: the engine daemon (configuration, listeners, signals)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

log = logging.getLogger("berth.daemon")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="berthd", description="berth engine daemon")
    p.add_argument("--config-file", default=None, help="daemon configuration file (/etc/berth/daemon.json)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--exec-root", default=None)
    p.add_argument("-H", "--host", action="append", default=None,
                   help="listen address: unix:///path or tcp://host:port (repeatable)")
    p.add_argument("-s", "--storage-driver", default=None)
    p.add_argument("--runtime", default=None, help='"berth" or the path of a runc-compatible runtime')
    p.add_argument("--runtime-root", default=None)
    p.add_argument("--cgroup-parent", default=None)
    p.add_argument("-b", "--bridge", default=None, help="Linux bridge of the default network (berth0)")
    p.add_argument("--nft-table", default=None, help="berth's nftables table (berth)")
    p.add_argument("--default-subnet", default=None, help="subnet of the default bridge network")
    p.add_argument("--no-network", action="store_true", help="no bridge networking (none/host only)")
    p.add_argument("--tls", action="store_true", default=None)
    p.add_argument("--tlsverify", action="store_true", default=None)
    p.add_argument("--tlscacert", default=None)
    p.add_argument("--tlscert", default=None)
    p.add_argument("--tlskey", default=None)
    p.add_argument("--insecure-tcp", action="store_true",
                   help="allow plain TCP without TLS (anyone who can connect is root)")
    p.add_argument("--pidfile", default=None)
    p.add_argument("-D", "--debug", action="store_true")
    p.add_argument("-v", "--version", action="store_true")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> int:
    from berth.api.server import ApiServer, tls_context
    from berth.config import Config
    from berth.engine.engine import Engine

    cfg = Config.load(args.config_file, data_root=args.data_root, exec_root=args.exec_root,
                      storage_driver=args.storage_driver, runtime=args.runtime,
                      runtime_root=args.runtime_root, cgroup_parent=args.cgroup_parent,
                      bridge=args.bridge, nft_table=args.nft_table, default_subnet=args.default_subnet,
                      networking=False if args.no_network else None,
                      tls=args.tls, tlsverify=args.tlsverify, tlscacert=args.tlscacert,
                      tlscert=args.tlscert, tlskey=args.tlskey)
    hosts = args.host or cfg.hosts or [f"unix://{cfg.socket}"]
    engine = Engine(cfg)
    await engine.restore()
    server = ApiServer(engine)
    for h in hosts:
        if h.startswith("unix://"):
            await server.listen_unix(h[len("unix://"):])
        elif h.startswith("tcp://"):
            hostport = h[len("tcp://"):]
            host, _, port = hostport.rpartition(":")
            ctx = None
            if cfg.tls or cfg.tlsverify:
                ctx = tls_context(cfg.tlscert, cfg.tlskey, cfg.tlscacert or None, bool(cfg.tlsverify))
            bound = await server.listen_tcp(host or "127.0.0.1", int(port or 2376), ctx,
                                            insecure=args.insecure_tcp)
            log.info("listening on tcp://%s:%d", host, bound)
        else:
            raise SystemExit(f"berthd: unsupported listen address {h!r}")
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
    log.info("berthd ready (data root %s, storage %s, runtime %s)", cfg.data_root,
             engine.snapshotter.name, engine.runtime)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down (containers keep running)")
    await server.close()
    await engine.shutdown()
    if args.pidfile:
        try:
            os.unlink(args.pidfile)
        except OSError:
            pass
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.version:
        from berth import __version__

        print(f"berthd version {__version__}")
        return 0
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if os.geteuid() != 0:
        print("berthd: must run as root", file=sys.stderr)
        return 1
    prof_out = os.environ.get("BERTH_PROFILE")  # development: cProfile the daemon into this file
    prof = None
    if prof_out:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    try:
        return asyncio.run(serve(args))
    except KeyboardInterrupt:
        return 0
    finally:
        if prof is not None:
            prof.disable()
            prof.dump_stats(prof_out)


if __name__ == "__main__":
    sys.exit(main())
