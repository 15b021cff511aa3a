"""Virtual clock: simulated epoch seconds that run at a speed factor of real time.

Everything time-dependent in the simulator (metrics, migrations, task timestamps) reads this
clock, so a test can pause it and step it exactly, and a demo can replay a day in seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class VirtualClock:
    """Simulated time = start + (real elapsed × speed) + manual advances."""

    def __init__(
        self,
        start: float,
        speed: float = 1.0,
        real: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed < 0:
            raise ValueError(f"clock speed must be >= 0, got {speed}")
        self._real = real
        self._lock = threading.Lock()
        self._base_sim = float(start)
        self._base_real = real()
        self._speed = float(speed)

    def now(self) -> float:
        with self._lock:
            return self._base_sim + (self._real() - self._base_real) * self._speed

    @property
    def speed(self) -> float:
        with self._lock:
            return self._speed

    def set_speed(self, speed: float) -> None:
        """Change the rate from now on; 0 pauses the clock."""
        if speed < 0:
            raise ValueError(f"clock speed must be >= 0, got {speed}")
        with self._lock:
            self._rebase()
            self._speed = float(speed)

    def advance(self, seconds: float) -> float:
        """Jump forward; time never runs backwards, so negative steps are refused."""
        if seconds < 0:
            raise ValueError(f"the clock only moves forward, got {seconds} s")
        with self._lock:
            self._rebase()
            self._base_sim += seconds
            return self._base_sim

    def _rebase(self) -> None:
        real_now = self._real()
        self._base_sim += (real_now - self._base_real) * self._speed
        self._base_real = real_now
