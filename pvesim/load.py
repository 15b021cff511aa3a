"""Guest load over time: pure functions of simulated time, seeded per guest.

`cpu(t)` is the busy fraction of the guest's own vCPUs and `mem(t)` the fraction of its
configured memory in use, the two quantities PVE reports. Rates are bytes per second.

The synthetic model is evaluated with numpy, many (guest, instant) pairs at once
(`SyntheticTable`, `LoadBatch`): a refresh of thousands of guests is one pass. A single
guest's scalar methods are one-element passes of the same code, so every caller gets the very
same numbers. Trace replay stays scalar (plain interpolation, no batching needed for it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from pvesim.noise import (
    FloatArray,
    IntArray,
    KeyArray,
    normal,
    normal_array,
    stream_key,
    uniform_array,
)
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


class Loads(NamedTuple):
    """Load of several (source, instant) pairs, elementwise: fractions and bytes per second."""

    cpu: FloatArray
    mem: FloatArray
    net_rate: FloatArray
    disk_rate: FloatArray


def _clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


class _Params(NamedTuple):
    """The columns of a SyntheticTable (one row per source), as arrays."""

    cpu: FloatArray
    daily: FloatArray
    weekly: FloatArray
    peak_hour: FloatArray
    phase: FloatArray  # peak hour in seconds, for the cycle's antiderivative
    trend: FloatArray
    origin: FloatArray
    burst_p: FloatArray
    burst_len: FloatArray
    burst_height: FloatArray
    windows_back: IntArray
    noise: FloatArray
    mem: FloatArray
    mem_trend: FloatArray
    mem_noise: FloatArray
    net: FloatArray  # bytes/s each way at cycle 1
    disk: FloatArray
    noise_key: KeyArray
    mem_noise_key: KeyArray
    bursts_key: KeyArray

    def take(self, rows: IntArray) -> _Params:
        return _Params._make(np.take(col, rows) for col in self)


class SyntheticTable:
    """The synthetic load model of many guests, evaluated for many (guest, instant) pairs at once.

    Each guest is one row of parameters; `loads` and `bytes` take a row and an instant per
    element and work on whole arrays, so a refresh of every guest costs a few dozen numpy
    operations instead of a Python loop. It is the one implementation of the model: a single
    guest's scalar `SyntheticSource.cpu(t)` is a one-element call, so every endpoint reports
    the same values, bit for bit, however the pairs were grouped.
    """

    def __init__(self) -> None:
        self._rows: list[tuple[SyntheticLoad, int, int, int, float]] = []
        self._params: _Params | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, spec: SyntheticLoad, seed: int, vmid: int, origin: float) -> int:
        """Add a guest's row and return its index; trends are measured from `origin`."""
        keys = (
            stream_key(seed, vmid, "cpu-noise"),
            stream_key(seed, vmid, "mem-noise"),
            stream_key(seed, vmid, "bursts"),
        )
        self._rows.append((spec, *keys, origin))
        self._params = None
        return len(self._rows) - 1

    def _columns(self) -> _Params:
        params = self._params
        if params is not None:
            return params
        specs = [r[0] for r in self._rows]

        def col(values: list[float]) -> FloatArray:
            return np.array(values, dtype=np.float64)

        burst_len = col([s.burst_minutes * 60.0 for s in specs])
        windows_back = (burst_len // 3600.0).astype(np.int64) + 1
        params = _Params(
            cpu=col([s.cpu for s in specs]),
            daily=col([s.daily for s in specs]),
            weekly=col([s.weekly for s in specs]),
            peak_hour=col([s.peak_hour for s in specs]),
            phase=col([s.peak_hour * 3600.0 for s in specs]),
            trend=col([s.trend for s in specs]),
            origin=col([r[4] for r in self._rows]),
            burst_p=col([s.bursts_per_day / 24.0 for s in specs]),  # chance per hour
            burst_len=burst_len,
            burst_height=col([s.burst_height for s in specs]),
            windows_back=windows_back,
            noise=col([s.noise for s in specs]),
            mem=col([s.mem for s in specs]),
            mem_trend=col([s.mem_trend for s in specs]),
            mem_noise=col([s.mem_noise for s in specs]),
            net=col([s.net_kbps * 1024.0 for s in specs]),
            disk=col([s.disk_kbps * 1024.0 for s in specs]),
            noise_key=np.array([r[1] for r in self._rows], dtype=np.uint64),
            mem_noise_key=np.array([r[2] for r in self._rows], dtype=np.uint64),
            bursts_key=np.array([r[3] for r in self._rows], dtype=np.uint64),
        )
        self._params = params
        return params

    def loads(self, rows: IntArray, ts: FloatArray) -> Loads:
        """cpu, mem, net and disk rates of guest `rows[i]` at instant `ts[i]`, for every i."""
        if not len(rows):
            return Loads(*(np.empty(0) for _ in Loads._fields))
        p = self._columns().take(rows)
        cycle = self._cycle(p, ts)
        step = (ts // NOISE_STEP).astype(np.int64)  # new noise every pvestatd refresh
        level = p.cpu * (cycle + self._burst(p, ts) + p.noise * normal_array(p.noise_key, step))
        cpu = np.clip(level, 0.0, 1.0)
        wobble = normal_array(p.mem_noise_key, (ts // 60.0).astype(np.int64))  # per minute
        days = (ts - p.origin) / DAY
        level = p.mem + p.mem_trend * days + p.mem_noise * wobble
        # memory follows the daily cycle a little: caches grow with traffic
        level += 0.1 * p.mem * (cycle - 1.0)
        mem = np.clip(level, 0.01, 0.99)
        return Loads(cpu, mem, p.net * cycle, p.disk * cycle)

    def bytes(
        self, rows: IntArray, t0: FloatArray, t1: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Network and disk bytes (each way) of guest `rows[i]` from `t0[i]` to `t1[i]`."""
        # integral of the daily cosine in closed form; weekend dip and trend ignored (counters
        # only need to grow plausibly, the rates carry the detail)
        p = self._columns().take(rows)
        area = np.where(t1 > t0, self._prim(p, t1) - self._prim(p, t0), 0.0)
        return p.net * area, p.disk * area

    @staticmethod
    def _cycle(p: _Params, ts: FloatArray) -> FloatArray:
        """Daily cycle × weekend dip × trend."""
        hour = (ts % DAY) / 3600.0
        daily = 1.0 + p.daily * np.cos(2.0 * math.pi * (hour - p.peak_hour) / 24.0)
        weekday = ((ts // DAY).astype(np.int64) + _EPOCH_THURSDAY) % 7
        weekly = np.where(weekday >= 5, 1.0 - p.weekly, 1.0)
        trend = np.maximum(0.0, 1.0 + p.trend * (ts - p.origin) / DAY)
        out: FloatArray = daily * weekly * trend
        return out

    def _burst(self, p: _Params, ts: FloatArray) -> FloatArray:
        """burst_height while a burst runs, else 0. A burst starts in hour h with chance burst_p,
        at a uniform instant of that hour, and lasts burst_len: it may still run `windows_back`
        hours later."""
        hour = (ts // 3600.0).astype(np.int64)
        active = np.zeros(ts.shape, dtype=np.bool_)
        for back in range(int(p.windows_back.max()) + 1):
            h = hour - back
            starts = h.astype(np.float64) * 3600.0 + uniform_array(p.bursts_key, 2 * h + 1) * 3600.0
            active |= (
                (back <= p.windows_back)
                & (uniform_array(p.bursts_key, 2 * h) < p.burst_p)
                & (starts <= ts)
                & (ts < starts + p.burst_len)
            )
        return np.where(active, p.burst_height, 0.0)

    @staticmethod
    def _prim(p: _Params, ts: FloatArray) -> FloatArray:
        """An antiderivative of the daily cycle (without weekend dip and trend)."""
        w = 2.0 * math.pi / DAY
        out: FloatArray = ts + p.daily * np.sin(w * (ts - p.phase)) / w
        return out


class SyntheticSource:
    """Daily cycle × weekend dip × trend + bursts + noise, around a mean load.

    One guest's row of a SyntheticTable (its own table unless one is given): scalar questions
    are one-element evaluations of the table, so they match the batched ones exactly.
    """

    def __init__(
        self,
        spec: SyntheticLoad,
        seed: int,
        vmid: int,
        origin: float,
        table: SyntheticTable | None = None,
    ) -> None:
        self.spec = spec
        self.origin = origin  # trends are measured from the scenario start
        self.table = table if table is not None else SyntheticTable()
        self.row = self.table.add(spec, seed, vmid, origin)
        self._rows = np.array([self.row], dtype=np.int64)
        # A refresh asks for the same instant several times (cpu, mem, rates): one-entry memo,
        # one tuple replaced whole, so a reader never sees a torn pair.
        self._memo: tuple[float, tuple[float, float, float, float]] = (
            math.nan,
            (0.0, 0.0, 0.0, 0.0),
        )

    def _at(self, t: float) -> tuple[float, float, float, float]:
        memo = self._memo
        if memo[0] == t:
            return memo[1]
        loads = self.table.loads(self._rows, np.array([t], dtype=np.float64))
        value = (
            float(loads.cpu[0]),
            float(loads.mem[0]),
            float(loads.net_rate[0]),
            float(loads.disk_rate[0]),
        )
        self._memo = (t, value)
        return value

    def cpu(self, t: float) -> float:
        return self._at(t)[0]

    def mem(self, t: float) -> float:
        return self._at(t)[1]

    def net_rate(self, t: float) -> float:
        return self._at(t)[2]

    def disk_rate(self, t: float) -> float:
        return self._at(t)[3]

    def _bytes(self, t0: float, t1: float) -> tuple[float, float]:
        net, disk = self.table.bytes(
            self._rows, np.array([t0], dtype=np.float64), np.array([t1], dtype=np.float64)
        )
        return float(net[0]), float(disk[0])

    def net_bytes(self, t0: float, t1: float) -> float:
        return self._bytes(t0, t1)[0]

    def disk_bytes(self, t0: float, t1: float) -> float:
        return self._bytes(t0, t1)[1]


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
    table: SyntheticTable | None = None,
) -> LoadSource:
    """The load source for one guest's load spec; traces are read from `traces_dir`.

    Synthetic sources become rows of `table` when given (a cluster shares one, so that
    `sample_loads` evaluates all its guests in one pass).
    """
    if isinstance(spec, SyntheticLoad):
        return SyntheticSource(spec, seed, vmid, origin, table)
    if traces_dir is None:
        raise ValueError(
            f"guest {vmid} replays the {spec.dataset} trace {spec.series!r} but no traces "
            "directory was given; pass one with --traces DIR"
        )
    series = load_series(traces_dir, spec.dataset, spec.series)
    return TraceSource(spec, series, seed, vmid, origin)


class LoadBatch:
    """A fixed list of sources evaluated together: `loads(ts)[i]` is `sources[i]` at `ts[i]`.

    Synthetic sources are grouped by table once, so each evaluation is one pass per table;
    the others (traces) are asked one by one.
    """

    def __init__(self, sources: Sequence[LoadSource]) -> None:
        self.sources = list(sources)
        groups: dict[int, tuple[SyntheticTable, list[int], list[int]]] = {}
        self._others: list[int] = []
        for i, src in enumerate(self.sources):
            if isinstance(src, SyntheticSource):
                group = groups.get(id(src.table))
                if group is None:
                    group = groups[id(src.table)] = (src.table, [], [])
                group[1].append(i)
                group[2].append(src.row)
            else:
                self._others.append(i)
        self._groups = [
            (table, np.array(pos, dtype=np.int64), np.array(rows, dtype=np.int64))
            for table, pos, rows in groups.values()
        ]

    def __len__(self) -> int:
        return len(self.sources)

    def loads(self, ts: FloatArray) -> Loads:
        n = len(self.sources)
        out = Loads(np.empty(n), np.empty(n), np.empty(n), np.empty(n))
        for table, pos, rows in self._groups:
            part = table.loads(rows, ts[pos])
            for column, values in zip(out, part, strict=True):
                column[pos] = values
        for i in self._others:
            src, t = self.sources[i], float(ts[i])
            out.cpu[i], out.mem[i] = src.cpu(t), src.mem(t)
            out.net_rate[i], out.disk_rate[i] = src.net_rate(t), src.disk_rate(t)
        return out

    def bytes(self, t0: FloatArray, t1: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Network and disk bytes (each way) of `sources[i]` from `t0[i]` to `t1[i]`."""
        n = len(self.sources)
        net, disk = np.empty(n), np.empty(n)
        for table, pos, rows in self._groups:
            net[pos], disk[pos] = table.bytes(rows, t0[pos], t1[pos])
        for i in self._others:
            src, a, b = self.sources[i], float(t0[i]), float(t1[i])
            net[i], disk[i] = src.net_bytes(a, b), src.disk_bytes(a, b)
        return net, disk


def sample_loads(sources: Sequence[LoadSource], ts: FloatArray) -> Loads:
    """The load of `sources[i]` at `ts[i]`, for every i, in one pass per synthetic table."""
    return LoadBatch(sources).loads(ts)


def sample_bytes(
    sources: Sequence[LoadSource], t0: FloatArray, t1: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Network and disk bytes (each way) of `sources[i]` from `t0[i]` to `t1[i]`, for every i."""
    return LoadBatch(sources).bytes(t0, t1)
