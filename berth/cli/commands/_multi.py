"""Shared loop of the commands that act on several containers (rm, stop, kill, wait)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any



def for_each(cli: Any, names: list[str], action: Callable[[str], Any],
             ignore_not_found: bool = False, show: Callable[[str, Any], str] | None = None) -> int:
    """Run action per name; print the name (or show(name, result)) on success, the error otherwise."""
    from berth.client.transport import ConnectionFailed
    from berth.errors import BerthError, NotFound
    failed = False
    for name in names:
        try:
            result = action(name)
        except ConnectionFailed:
            raise
        except NotFound as e:
            cli.error(f"Error response from daemon: {e}")
            failed = failed or not ignore_not_found
            continue
        except BerthError as e:
            cli.error(f"Error response from daemon: {e}")
            failed = True
            continue
        cli.print(show(name, result) if show else name)
    return 1 if failed else 0
