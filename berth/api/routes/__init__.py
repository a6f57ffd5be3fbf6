"""Route tables per resource; ``default_router()`` assembles them."""

from __future__ import annotations

from berth.api.router import Router


def default_router() -> Router:
    from berth.api.routes import build, containers, exec, images, networks, system, volumes
    r = Router()
    for mod in (system, containers, exec, images, networks, volumes, build):
        mod.register(r)
    return r
