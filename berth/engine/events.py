"""The engine's event bus: a bounded history plus live subscribers (``/events``)."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator


class EventBus:
    """Keeps the last ``history`` events; each subscriber gets a bounded queue (slow readers drop)."""

    def __init__(self, history: int = 1000, queue_size: int = 1024) -> None:
        self._history: collections.deque[dict] = collections.deque(maxlen=history)
        self._subs: set[asyncio.Queue] = set()
        self._queue_size = queue_size

    def emit(self, type_: str, action: str, actor_id: str, attributes: dict | None = None) -> dict:
        now = time.time_ns()
        ev = {"Type": type_, "Action": action,
              "Actor": {"ID": actor_id, "Attributes": dict(attributes or {})},
              "scope": "local", "time": now // 1_000_000_000, "timeNano": now}
        if type_ == "container":  # legacy fields the old clients read
            ev.update({"status": action, "id": actor_id, "from": (attributes or {}).get("image", "")})
        elif type_ == "image":
            ev.update({"status": action, "id": actor_id})
        self._history.append(ev)
        for q in list(self._subs):
            try:
                q.put_nowait(ev)
            except asyncio.QueueFull:
                pass  # a subscriber that never reads loses events; memory stays bounded
        return ev

    async def subscribe(self, since: float | None, until: float | None,
                        filters: dict[str, list[str]] | None = None) -> AsyncIterator[dict]:
        q: asyncio.Queue = asyncio.Queue(self._queue_size)
        self._subs.add(q)
        try:
            if since is not None:
                for ev in list(self._history):
                    if ev["timeNano"] >= since * 1e9 and (until is None or ev["timeNano"] <= until * 1e9) \
                            and match(ev, filters):
                        yield ev
            if until is not None and until <= time.time():
                return
            while True:
                timeout = None if until is None else max(0.0, until - time.time())
                try:
                    ev = await asyncio.wait_for(q.get(), timeout)
                except TimeoutError:
                    return
                if match(ev, filters):
                    yield ev
        finally:
            self._subs.discard(q)


def match(ev: dict, filters: dict[str, list[str]] | None) -> bool:
    """Docker's event filters: type, event/action, container, image, label, id-or-name."""
    if not filters:
        return True
    attrs = ev["Actor"]["Attributes"]
    for key, values in filters.items():
        if not values:
            continue
        if key == "type" and ev["Type"] not in values:
            return False
        action = ev["Action"]
        if key in ("event", "action") and action.split(":")[0] not in values and action not in values:
            return False
        if key == "container" and not (ev["Type"] == "container" and any(
                ev["Actor"]["ID"].startswith(v) or attrs.get("name") == v for v in values)):
            return False
        if key == "image" and not any(attrs.get("image") == v or ev["Actor"]["ID"] == v for v in values):
            return False
        if key == "label":
            for v in values:
                k, _, val = v.partition("=")
                if k not in attrs or (val and attrs[k] != val):
                    return False
    return True
