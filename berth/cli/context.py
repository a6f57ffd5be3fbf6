"""The per-invocation CLI context: output streams, the (lazily connected) client, error → exit code."""

from __future__ import annotations

import os
import sys

from berth.errors import BerthError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TextIO

EXIT_ENGINE_ERROR = 125  # docker: the daemon failed (run/create); also bad flags
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127


class CliError(Exception):
    """An error the command reports itself: message to stderr, then exit ``status``."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class Cli:
    def __init__(self, gopts: dict[str, Any], out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.gopts = gopts
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._client: Any = None

    @property
    def host(self) -> str:
        from berth.client.transport import resolve_host
        hosts = self.gopts.get("host") or []
        return resolve_host(hosts[-1] if hosts else None)

    @property
    def client(self) -> Any:
        if self._client is None:
            from berth.client.api import Client
            from berth.errors import InvalidArgument
            try:
                self._client = Client(self.host, self._tls())
            except InvalidArgument as e:  # a bad -H / BERTH_HOST: the client's fault, not the daemon's
                raise CliError(str(e), 1) from None
        return self._client

    def _tls(self) -> Any:
        from berth.client.transport import TLSConfig, tls_from_env
        g = self.gopts
        if g.get("tlsverify") or g.get("tls"):
            base = tls_from_env(verify=True)
            assert base is not None
            cert_given = g.get("tlscert") or (base.cert if os.path.exists(base.cert or "") else None)
            key_given = g.get("tlskey") or (base.key if os.path.exists(base.key or "") else None)
            return TLSConfig(bool(g.get("tlsverify")), g.get("tlscacert") or base.ca, cert_given, key_given)
        return tls_from_env()

    def print(self, text: str = "") -> None:
        print(text, file=self.out)

    def error(self, text: str) -> None:
        print(text, file=self.err)

    def write_bytes(self, stream: int, data: bytes) -> None:
        target = self.err if stream == 2 else self.out
        buf = getattr(target, "buffer", None)
        if buf is not None:
            target.flush()
            buf.write(data)
            buf.flush()
        else:
            target.write(data.decode("utf-8", "replace"))

    def run(self, fn: Callable[..., int | None], opts: dict[str, Any], args: list[str]) -> int:
        from berth.client.transport import ConnectionFailed
        try:
            return fn(self, opts, args) or 0
        except CliError as e:
            if str(e):
                self.error(str(e))
            return e.status
        except ConnectionFailed as e:
            self.error(str(e))
            return 1
        except BerthError as e:
            self.error(f"Error response from daemon: {e}")
            return 1
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:
            return 0


def daemon_error(e: BerthError) -> str:
    return f"Error response from daemon: {e}"
