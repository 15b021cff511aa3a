"""Counter-based randomness: the same (seed, stream, index) always gives the same number.

Load at any instant is a pure function of time, so the simulator can answer for any moment in
any order (live metrics, a year of rrddata) and a seed reproduces a run exactly.
"""

from __future__ import annotations

import math
import zlib

_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    # splitmix64 finaliser: a well-tested 64-bit avalanche.
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def stream_key(seed: int, *parts: str | int) -> int:
    """A 64-bit key for one named stream (e.g. seed, vmid, "noise")."""
    key = _mix(seed & _MASK)
    for part in parts:
        value = zlib.crc32(part.encode()) if isinstance(part, str) else part
        key = _mix(key ^ (value & _MASK))
    return key


def uniform(key: int, index: int) -> float:
    """Uniform in [0, 1) for position `index` of the stream `key`."""
    return (_mix(key ^ _mix(index & _MASK)) >> 11) / float(1 << 53)


def normal(key: int, index: int) -> float:
    """Standard normal (Box-Muller) for position `index` of the stream `key`."""
    u1 = uniform(key, 2 * index) or 1e-12
    u2 = uniform(key, 2 * index + 1)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
