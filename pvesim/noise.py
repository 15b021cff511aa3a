"""Counter-based randomness: the same (seed, stream, index) always gives the same number.

Load at any instant is a pure function of time, so the simulator can answer for any moment in
any order (live metrics, a year of rrddata) and a seed reproduces a run exactly.

Each draw comes in two forms: scalar (`uniform`, `normal`) and elementwise over numpy arrays
(`uniform_array`, `normal_array`), for evaluating many guests or instants in one pass. The
integer part (splitmix64) is bit-identical in both; the float part of `normal` goes through
libm in one and numpy's log/cos in the other, which may differ in the last bit, so a model
must use one form for every value it reports (the synthetic load model uses the array form).
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import numpy.typing as npt

_MASK = (1 << 64) - 1

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
KeyArray = npt.NDArray[np.uint64]

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_TWO53 = float(1 << 53)


def _mix(x: int) -> int:
    # splitmix64 finaliser: a well-tested 64-bit avalanche.
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _mix_array(x: KeyArray) -> KeyArray:
    """`_mix` elementwise: uint64 arithmetic wraps modulo 2**64, so the integers are the same."""
    x = x + _GAMMA
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


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


def uniform_array(keys: KeyArray, index: IntArray) -> FloatArray:
    """`uniform` elementwise over streams `keys` at positions `index`: the very same numbers."""
    bits = _mix_array(keys ^ _mix_array(index.astype(np.uint64))) >> _S11
    return bits.astype(np.float64) / _TWO53


def normal_array(keys: KeyArray, index: IntArray) -> FloatArray:
    """`normal` elementwise (Box-Muller with numpy's log and cos)."""
    u1 = uniform_array(keys, 2 * index)
    u1[u1 == 0.0] = 1e-12
    u2 = uniform_array(keys, 2 * index + 1)
    out: FloatArray = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)
    return out
