"""Guest load over time: pure functions of simulated time, seeded per guest.

`cpu(t)` is the busy fraction of the guest's own vCPUs and `mem(t)` the fraction of its
configured memory in use, the two quantities PVE reports. Rates are bytes per second.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

from pvesim.noise import normal, stream_key, uniform
from pvesim.scenario import SyntheticLoad, TraceLoad
from pvesim.traces import TraceSeries, load_series, segment_area

DAY = 86_400.0
WEEK = 7 * DAY
NOISE_STEP = 10.0  # new noise value every pvestatd refresh
_EPOCH_THURSDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


class LoadSource(Protocol):
    def cpu(self, t: float) -> float: ...
    def mem(self, t: float) -> float: ...
    def net_rate(self, t: float) -> float: ...
    def disk_rate(self, t: float) -> float: ...
    def net_bytes(self, t0: float, t1: float) -> float: ...
    def disk_bytes(self, t0: float, t1: float) -> float: ...


def _clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


class SyntheticSource:
    """Daily cycle × weekend dip × trend + bursts + noise, around a mean load."""

    def __init__(self, spec: SyntheticLoad, seed: int, vmid: int, origin: float) -> None:
        self.spec = spec
        self.origin = origin  # trends are measured from the scenario start
        self._noise = stream_key(seed, vmid, "cpu-noise")
        self._mem_noise = stream_key(seed, vmid, "mem-noise")
        self._bursts = stream_key(seed, vmid, "bursts")
        self._burst_len = spec.burst_minutes * 60.0
        self._burst_p = spec.bursts_per_day / 24.0  # chance of a burst starting in an hour
        self._windows_back = int(self._burst_len // 3600.0) + 1
        # One-entry memos of pure functions of time: a refresh asks for the same instant several
        # times (node sum, guest entry, rates), bursts are drawn per hour and memory noise per
        # minute. Each memo is one tuple, replaced whole, so a reader never sees a torn pair.
        self._cycle_memo: tuple[float, float] = (math.nan, 0.0)
        self._cpu_memo: tuple[float, float] = (math.nan, 0.0)
        self._mem_memo: tuple[float, float] = (math.nan, 0.0)
        self._bursts_memo: tuple[int | None, tuple[float, ...]] = (None, ())
        self._mem_noise_memo: tuple[int | None, float] = (None, 0.0)
        self._area_memo: tuple[float, float, float, float] = (math.nan, math.nan, 0.0, 0.0)

    def _cycle(self, t: float) -> float:
        memo = self._cycle_memo
        if memo[0] == t:
            return memo[1]
        s = self.spec
        hour = (t % DAY) / 3600.0
        daily = 1.0 + s.daily * math.cos(2.0 * math.pi * (hour - s.peak_hour) / 24.0)
        weekday = (int(t // DAY) + _EPOCH_THURSDAY) % 7
        weekly = 1.0 - s.weekly if weekday >= 5 else 1.0
        trend = max(0.0, 1.0 + s.trend * (t - self.origin) / DAY)
        value = daily * weekly * trend
        self._cycle_memo = (t, value)
        return value

    def _burst_starts(self, hour: int) -> tuple[float, ...]:
        """Start instants of the bursts that may still run during `hour`, earliest first."""
        memo = self._bursts_memo
        if memo[0] == hour:
            return memo[1]
        starts = tuple(
            h * 3600.0 + uniform(self._bursts, 2 * h + 1) * 3600.0
            for h in range(hour - self._windows_back, hour + 1)
            if uniform(self._bursts, 2 * h) < self._burst_p
        )
        self._bursts_memo = (hour, starts)
        return starts

    def _burst(self, t: float) -> float:
        if self._burst_p <= 0.0:
            return 0.0
        for start in self._burst_starts(int(t // 3600.0)):
            if start <= t < start + self._burst_len:
                return self.spec.burst_height
        return 0.0

    def cpu(self, t: float) -> float:
        memo = self._cpu_memo
        if memo[0] == t:
            return memo[1]
        s = self.spec
        step = int(t // NOISE_STEP)
        level = s.cpu * (self._cycle(t) + self._burst(t) + s.noise * normal(self._noise, step))
        value = _clamp(level, 0.0, 1.0)
        self._cpu_memo = (t, value)
        return value

    def _mem_wobble(self, step: int) -> float:
        memo = self._mem_noise_memo
        if memo[0] == step:
            return memo[1]
        value = normal(self._mem_noise, step)
        self._mem_noise_memo = (step, value)
        return value

    def mem(self, t: float) -> float:
        memo = self._mem_memo
        if memo[0] == t:
            return memo[1]
        s = self.spec
        step = int(t // 60.0)
        days = (t - self.origin) / DAY
        level = s.mem + s.mem_trend * days + s.mem_noise * self._mem_wobble(step)
        # memory follows the daily cycle a little: caches grow with traffic
        level += 0.1 * s.mem * (self._cycle(t) - 1.0)
        value = _clamp(level, 0.01, 0.99)
        self._mem_memo = (t, value)
        return value

    def _rate(self, base_kbps: float, t: float) -> float:
        return base_kbps * 1024.0 * self._cycle(t)

    def net_rate(self, t: float) -> float:
        return self._rate(self.spec.net_kbps, t)

    def disk_rate(self, t: float) -> float:
        return self._rate(self.spec.disk_kbps, t)

    def _integral(self, base_kbps: float, t0: float, t1: float) -> float:
        # integral of the daily cosine in closed form; weekend dip and trend ignored (counters
        # only need to grow plausibly, the rates carry the detail)
        if t1 <= t0:
            return 0.0
        return base_kbps * 1024.0 * self._cycle_area(t0, t1)

    def _prim(self, t: float) -> float:
        """An antiderivative of the daily cycle (without weekend dip and trend)."""
        s = self.spec
        w = 2.0 * math.pi / DAY
        phase = s.peak_hour * 3600.0
        return t + s.daily * math.sin(w * (t - phase)) / w

    def _cycle_area(self, t0: float, t1: float) -> float:
        """prim(t1) - prim(t0), shared by the net and disk counters; t0 (the start) rarely moves."""
        t0_memo, t1_memo, prim0, area = self._area_memo
        if t0_memo == t0 and t1_memo == t1:
            return area
        if t0_memo != t0:
            prim0 = self._prim(t0)
        area = self._prim(t1) - prim0
        self._area_memo = (t0, t1, prim0, area)
        return area

    def net_bytes(self, t0: float, t1: float) -> float:
        return self._integral(self.spec.net_kbps, t0, t1)

    def disk_bytes(self, t0: float, t1: float) -> float:
        return self._integral(self.spec.disk_kbps, t0, t1)


# Traces carry CPU (and maybe memory) only, so traffic is derived from CPU: an idle floor plus a
# part proportional to CPU. The slopes are rough fits to the Bitbrains Rnd means (about 0.8 MiB/s
# of network and 2 MiB/s of disk traffic each way per fully busy VM); the floors keep idle
# guests' counters moving, as real ones do.
TRACE_NET_IDLE = 2.0 * 1024.0  # bytes/s each way
TRACE_NET_PER_CPU = 800.0 * 1024.0  # bytes/s each way at cpu = 1
TRACE_DISK_IDLE = 4.0 * 1024.0
TRACE_DISK_PER_CPU = 2048.0 * 1024.0
TRACE_MEM_NOISE = 0.02  # sd of the memory wobble when the trace has no memory
_MEM_NOISE_STEP = 60.0


class TraceSource:
    """Replays a real utilisation trace, looping forever in both directions of time.

    Time `origin` (the scenario start) maps to point `offset_hours` of the series, so guests
    sharing a series can be shifted apart; values between points are linearly interpolated and
    the series wraps around (last point runs into the first), so any instant has a value,
    including history before the start. The trace's CPU is used as is, without noise: it is
    real data. Memory comes from the trace when it has memory, else it is `spec.mem` plus a
    small seeded wobble. Network and disk traffic follow CPU (see TRACE_NET_* / TRACE_DISK_*).
    """

    def __init__(
        self, spec: TraceLoad, series: TraceSeries, seed: int, vmid: int, origin: float
    ) -> None:
        self.spec = spec
        self.series = series
        self.origin = origin
        self._step = series.step
        self._offset = spec.offset_hours * 3600.0 / series.step
        self._n = len(series.cpu)
        self._mem_noise = stream_key(seed, vmid, "trace-mem-noise")
        self._cpu_memo: tuple[float, float] = (math.nan, 0.0)  # cpu, net and disk rates share it

    def _position(self, t: float) -> float:
        return (t - self.origin) / self._step + self._offset

    def _locate(self, t: float) -> tuple[int, int, float]:
        """For time t: completed passes of the series, the point at or before, fraction past it."""
        p = self._position(t)
        loops = math.floor(p / self._n)
        r = p - loops * self._n
        if r < 0.0:  # rounding, when p is a hair below a multiple of n
            r = 0.0
        elif r >= self._n:  # rounding, when p is a hair below the next multiple
            loops, r = loops + 1, 0.0
        i = min(int(r), self._n - 1)
        return loops, i, r - i

    def _at(self, values: tuple[float, ...], t: float) -> float:
        _, i, f = self._locate(t)
        a = values[i]
        return a + (values[(i + 1) % self._n] - a) * f

    def cpu(self, t: float) -> float:
        memo = self._cpu_memo
        if memo[0] == t:
            return memo[1]
        value = self._at(self.series.cpu, t)
        self._cpu_memo = (t, value)
        return value

    def mem(self, t: float) -> float:
        if self.series.mem is not None:
            return self._at(self.series.mem, t)
        step = int(t // _MEM_NOISE_STEP)
        level = self.spec.mem + TRACE_MEM_NOISE * normal(self._mem_noise, step)
        return _clamp(level, 0.01, 0.99)

    def net_rate(self, t: float) -> float:
        return TRACE_NET_IDLE + TRACE_NET_PER_CPU * self.cpu(t)

    def disk_rate(self, t: float) -> float:
        return TRACE_DISK_IDLE + TRACE_DISK_PER_CPU * self.cpu(t)

    def _cpu_seconds(self, t0: float, t1: float) -> float:
        """Integral of cpu(t) dt from t0 to t1, exact for the interpolated curve."""

        def prim(t: float) -> float:
            loops, i, f = self._locate(t)
            cpu, area = self.series.cpu, self.series.cpu_area
            part = segment_area(cpu[i], cpu[(i + 1) % self._n], f)
            return (loops * area[-1] + area[i] + part) * self._step

        return max(0.0, prim(t1) - prim(t0))

    def _bytes(self, idle: float, per_cpu: float, t0: float, t1: float) -> float:
        if t1 <= t0:
            return 0.0
        return idle * (t1 - t0) + per_cpu * self._cpu_seconds(t0, t1)

    def net_bytes(self, t0: float, t1: float) -> float:
        return self._bytes(TRACE_NET_IDLE, TRACE_NET_PER_CPU, t0, t1)

    def disk_bytes(self, t0: float, t1: float) -> float:
        return self._bytes(TRACE_DISK_IDLE, TRACE_DISK_PER_CPU, t0, t1)


def make_source(
    spec: SyntheticLoad | TraceLoad,
    seed: int,
    vmid: int,
    origin: float,
    traces_dir: Path | None,
) -> LoadSource:
    """The load source for one guest's load spec; traces are read from `traces_dir`."""
    if isinstance(spec, SyntheticLoad):
        return SyntheticSource(spec, seed, vmid, origin)
    if traces_dir is None:
        raise ValueError(
            f"guest {vmid} replays the {spec.dataset} trace {spec.series!r} but no traces "
            "directory was given; pass one with --traces DIR"
        )
    series = load_series(traces_dir, spec.dataset, spec.series)
    return TraceSource(spec, series, seed, vmid, origin)
