"""What a build carries between steps: the stage state, its limits, its failure type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from berth.errors import BerthError

DEFAULT_SHELL = ["/bin/sh", "-c"]


@dataclass
class BuildLimits:
    """Bounds on what one RUN may do (beyond the isolation every container has)."""

    pids: int = 1024                 # pids cgroup limit of build containers (fork bombs)
    max_output: int = 32 << 20       # bytes of RUN output before the step is stopped
    min_free: int = 256 << 20        # stop a RUN when the data root has less free space than this
    max_layer: int = 0               # stop a RUN whose changes exceed this many bytes (0: no limit)
    run_timeout: float = 0.0         # seconds (0: none)
    poll: float = 0.25               # how often the watchdog looks
    max_download: int = 1 << 30      # ADD <url>


class BuildFailed(BerthError):
    """A step failed; ``code`` is a RUN's exit code when there is one."""

    http_status = 500

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Stage:
    """The state of one build stage between steps."""

    index: int
    name: str
    image_id: str | None          # None: scratch, nothing committed yet
    raw: dict                     # the image config document
    layers: list                  # berth.images.blobs.Layer
    args: dict[str, str | None] = field(default_factory=dict)
    shell: list[str] = field(default_factory=lambda: list(DEFAULT_SHELL))
    cmd_set: bool = False


class BuildEngine(Protocol):
    """What the builder uses of ``berth.engine.Engine`` (passed in; build sits below engine)."""

    cfg: Any            # .data_root
    db: Any             # berth.metadata.db.Database (the build_cache table lives there)
    images: Any         # berth.images.store.ImageStore (with its content store and snapshotter)
    containers: Any     # .get(cid).snapshot_key

    def create_container(self, name: str | None, config: dict, platform: str | None = None) -> dict: ...
    async def start(self, id: str) -> None: ...
    async def attach(self, id: str, io: Any, *, stdin: bool, stdout: bool, stderr: bool, logs: bool,
                     stream: bool) -> None: ...
    async def wait(self, id: str, condition: str = "not-running") -> Any: ...
    async def kill(self, id: str, signal: str | None = None) -> None: ...
    async def remove(self, id: str, force: bool = False, volumes: bool = False,
                     link: bool = False) -> None: ...
