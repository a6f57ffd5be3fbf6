"""The Dockerfile builder: parser, one class per instruction, cache keys, context + .dockerignore.

Entry point: ``berth.build.builder.build(engine, context, ...)`` (an async generator of Docker's
JSON progress messages).
"""


def __getattr__(name: str):
    if name in ("build", "BuildLimits", "Builder", "BuildFailed"):
        from berth.build import builder

        return getattr(builder, name)
    if name == "prune_cache":
        from berth.build.cache import prune_cache

        return prune_cache
    raise AttributeError(name)


__all__ = ["BuildFailed", "BuildLimits", "Builder", "build", "prune_cache"]
