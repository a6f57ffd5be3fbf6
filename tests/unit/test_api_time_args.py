"""since/until arguments: exact nanoseconds (time_arg_ns) next to the float form (time_arg)."""

from __future__ import annotations

import pytest

from berth.api.routes.system import time_arg, time_arg_ns
from berth.errors import InvalidArgument


@pytest.mark.parametrize("value, ns", [
    ("1795874488.612432079", 1795874488612432079),  # as the docker CLI sends a timestamp
    ("1795874488", 1795874488000000000),
    ("1795874488.5", 1795874488500000000),
    ("2026-11-28T14:01:28.612432079Z", 1795874488612432079),
    ("2026-11-28T14:01:28.999999999Z", 1795874488999999999),
    ("2026-11-28T14:01:28Z", 1795874488000000000),
    ("2026-11-28T15:01:28.5+01:00", 1795874488500000000),
])
def test_time_arg_ns_is_exact(value, ns):
    assert time_arg_ns(value, "since") == ns


def test_a_float_cannot_hold_it():
    exact = time_arg_ns("1795874488.612432079", "since")
    assert int(time_arg("1795874488.612432079", "since") * 1e9) != exact  # why time_arg_ns exists


def test_empty_and_invalid():
    assert time_arg_ns(None, "since") is None and time_arg_ns("", "until") is None
    with pytest.raises(InvalidArgument, match="invalid until value"):
        time_arg_ns("yesterday", "until")
