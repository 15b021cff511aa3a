"""Sizes as people write them in scenario files ("8GiB", "512M", 4096) turned into bytes."""

from __future__ import annotations

import re

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

GIB = 1024**3
MIB = 1024**2


def parse_size(value: int | float | str) -> int:
    """Bytes from an int (already bytes) or a string with a binary/decimal unit suffix."""
    if isinstance(value, bool):
        raise ValueError(f"size must be a number or a string like '8GiB', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"size must not be negative, got {value}")
        return int(value)
    match = _SIZE.match(value)
    if not match or match.group(2).lower() not in _UNITS:
        allowed = "B, K/KiB, M/MiB, G/GiB, T/TiB (KB/MB/GB/TB are decimal)"
        raise ValueError(f"size {value!r} is not understood; use a number with one of {allowed}")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])
