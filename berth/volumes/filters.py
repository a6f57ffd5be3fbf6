"""Engine API filters for volume list and prune (pure)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from berth.errors import InvalidArgument

LIST_FILTERS = ("name", "label", "dangling", "driver")
PRUNE_FILTERS = ("label", "label!", "all")


def normalize(filters: Mapping | str | None, accepted: tuple[str, ...]) -> dict[str, list[str]]:
    """``{"k": ["v"]}``, legacy ``{"k": {"v": true}}`` or their JSON → ``{"k": ["v"]}``."""
    if not filters:
        return {}
    if isinstance(filters, str):
        try:
            filters = json.loads(filters)
        except ValueError:
            raise InvalidArgument(f"invalid filters: {filters[:80]}") from None
        if not isinstance(filters, Mapping):
            raise InvalidArgument("invalid filters: must be an object")
    out: dict[str, list[str]] = {}
    for key, val in filters.items():
        if key not in accepted:
            raise InvalidArgument(f"invalid filter '{key}'")
        if isinstance(val, Mapping):
            vals = [str(k) for k, on in val.items() if on]
        elif isinstance(val, (list, tuple)):
            vals = [str(v) for v in val]
        else:
            vals = [str(val)]
        out[key] = vals
    return out


def parse_bool(filters: dict[str, list[str]], key: str) -> bool | None:
    """A boolean filter's value (``true/1`` or ``false/0``); None when absent."""
    vals = filters.get(key)
    if not vals:
        return None
    result = None
    for v in vals:
        low = v.lower()
        if low in ("true", "1"):
            b = True
        elif low in ("false", "0"):
            b = False
        else:
            raise InvalidArgument(f"invalid filter '{key}={v}'")
        result = b if result is None else (result or b)
    return result


def _label_matches(labels: Mapping[str, str], term: str) -> bool:
    key, sep, val = term.partition("=")
    if key not in labels:
        return False
    return not sep or labels[key] == val


def match_labels(labels: Mapping[str, str], terms: list[str]) -> bool:
    """Every ``key`` / ``key=value`` term matches (Docker's MatchKVList)."""
    return all(_label_matches(labels, t) for t in terms)


def match_no_labels(labels: Mapping[str, str], terms: list[str]) -> bool:
    """No ``label!`` term matches."""
    return not any(_label_matches(labels, t) for t in terms)


def match_name(name: str, terms: list[str]) -> bool:
    """Any term equals the name or matches it as a regular expression (Docker's Match)."""
    for t in terms:
        if t == name:
            return True
        try:
            if re.search(t, name):
                return True
        except re.error:
            if t in name:
                return True
    return False
