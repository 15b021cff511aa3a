"""Bounded exponential back-off with jitter, for reads that hit a transient failure.

Jitter spreads the retries of several workers that failed at the same instant (a node reboot,
a pveproxy restart), so they do not come back in lock-step.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tasks.pve.errors import TransientError

T = TypeVar("T")
_RNG = random.Random()


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # calls in all, the first included
    base_delay: float = 0.5  # seconds before the first retry
    max_delay: float = 8.0
    jitter: float = 0.25  # each delay is scaled by a random factor in [1 - jitter, 1 + jitter]
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be >= 1, got {self.attempts}")
        for name in ("base_delay", "max_delay"):
            if getattr(self, name) < 0:
                raise ValueError(f"RetryPolicy.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"RetryPolicy.jitter must be within 0..1, got {self.jitter}")

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `retry` (1 for the first retry)."""
        raw = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        spread = (rng or _RNG).uniform(-self.jitter, self.jitter)
        return max(0.0, raw * (1.0 + spread))

    def run(self, call: Callable[[], T]) -> T:
        """`call()`, retried while it raises `TransientError`; the last one propagates."""
        for retry in range(1, self.attempts):
            try:
                return call()
            except TransientError:
                self.sleep(self.delay(retry))
        return call()
