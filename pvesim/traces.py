"""Readers for the real VM utilisation traces that `TraceLoad` replays.

Two public data sets are supported, each turned into the same shape, a `TraceSeries` of
fractions on a regular 5-minute grid, so the simulator never sees the quirks of the raw files:

* **bitbrains**: GWA-T-12 "Rnd", one gzipped CSV per VM per month, CPU and memory.
  Laid out as `<traces>/bitbrains-rnd/<month>/<id>.csv.gz`, named by the series `'2013-8/1'`.
* **planetlab**: CloudSim's PlanetLab workload, one file per VM per day of 288 CPU percentages,
  no memory. Laid out as `<traces>/planetlab/<day>/<vm-name>`, named `'20110303/<vm-name>'`.

The trace directory is always given at run time; no trace data ships with the project.
Parsed series are cached per path, so many guests replaying one series parse it once.
"""

from __future__ import annotations

import csv
import gzip
import math
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Literal

Dataset = Literal["bitbrains", "planetlab"]

STEP = 300.0  # both data sets sample every 5 minutes
PLANETLAB_POINTS = 288  # one day of 5-minute samples

_BITBRAINS_DIR = "bitbrains-rnd"
_PLANETLAB_DIR = "planetlab"
_TIME = "Timestamp [ms]"  # the values are epoch seconds despite the header
_CPU_CAPACITY = "CPU capacity provisioned [MHZ]"
_CPU_PCT = "CPU usage [%]"
_MEM_CAPACITY = "Memory capacity provisioned [KB]"
_MEM_USAGE = "Memory usage [KB]"
_CACHE_SIZE = 1024


@dataclass(frozen=True)
class TraceSeries:
    """One VM's load on a regular grid: CPU (a little above 1 when flat out) and memory (in
    [0, 1]) as fractions of what the VM was given.

    `cpu` is the busy fraction of the VM's own vCPUs and `mem` the fraction of its memory in
    use, the quantities PVE reports; `mem` is None when the data set has no memory.
    """

    step: float
    cpu: tuple[float, ...]
    mem: tuple[float, ...] | None

    def __post_init__(self) -> None:
        if not self.cpu:
            raise ValueError("a trace series needs at least one point")
        if self.mem is not None and len(self.mem) != len(self.cpu):
            raise ValueError("cpu and mem of a trace series must have the same length")
        if self.step <= 0:
            raise ValueError("a trace series needs a positive step")

    @property
    def duration(self) -> float:
        """Seconds covered by one pass of the series (replay wraps around after this)."""
        return self.step * len(self.cpu)

    @cached_property
    def cpu_area(self) -> tuple[float, ...]:
        """Area under the CPU curve from point 0 to point k (k = 0..n), in steps.

        The curve is linear between points and the last point runs into the first, as replay
        plays it; computed once per series so the many guests sharing it integrate for free.
        """
        n = len(self.cpu)
        area = [0.0]
        for i in range(n):
            area.append(area[-1] + segment_area(self.cpu[i], self.cpu[(i + 1) % n], 1.0))
        return tuple(area)


def segment_area(a: float, b: float, f: float) -> float:
    """Area under the line from a to b over the first fraction f of one step, in steps."""
    return f * (a + (b - a) * f / 2.0)


def _clamp01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def _floor0(x: float) -> float:
    return 0.0 if x < 0.0 else x


def read_bitbrains(path: Path | str) -> TraceSeries:
    """One Bitbrains Rnd file (`<id>.csv.gz`) as a clean 5-minute series.

    Cleaning rule, applied in this order and nothing else:

    1. Sort rows by timestamp (epoch seconds) and keep only the first row of each timestamp.
    2. A row whose CPU capacity or memory capacity is 0 is *missing*, not zero usage: the VM
       was off or not reporting. (Nearly all such rows have both at 0; the few with only one
       at 0 have no usable value for that resource either.)
    3. Per remaining row, CPU = `CPU usage [%]` / 100, floored at 0 but not capped: a VM
       running flat out reports a few per cent above 100, as a PVE guest's `cpu` exceeds 1.0
       a little (it counts the emulator's own threads). Memory = usage KB / capacity KB,
       clamped to [0, 1]: a guest cannot use more memory than it was given.
    4. Resample onto a 5-minute grid aligned to epoch multiples of 300 s, spanning the first
       to the last row of the file: a bucket is the mean of its rows; an empty bucket repeats
       the previous bucket, and buckets before the first sample take the first sample.
    """
    return _read_bitbrains_cached(Path(path))


def read_planetlab(path: Path | str) -> TraceSeries:
    """One PlanetLab file: 288 integer CPU percentages at 5-minute steps, no memory."""
    return _read_planetlab_cached(Path(path))


@lru_cache(maxsize=_CACHE_SIZE)
def _read_bitbrains_cached(path: Path) -> TraceSeries:
    with gzip.open(path, "rt", encoding="ascii", newline="") as fh:
        # the separator is ";\t": split on ";" and let float() drop the tab
        rows = csv.reader(fh, delimiter=";")
        header = [name.strip() for name in next(rows, [])]
        try:
            col = [header.index(n) for n in (_TIME, _CPU_CAPACITY, _CPU_PCT, _MEM_CAPACITY)]
            col.append(header.index(_MEM_USAGE))
        except ValueError:
            raise ValueError(f"{path}: not a Bitbrains trace (header {header})") from None
        samples: list[tuple[float, float, float, float, float]] = []
        for line_no, row in enumerate(rows, start=2):
            if not row:
                continue
            try:
                t, cpu_cap, cpu_pct, mem_cap, mem_use = (float(row[i]) for i in col)
            except (ValueError, IndexError):
                raise ValueError(f"{path}:{line_no}: unreadable row {row!r}") from None
            samples.append((t, cpu_cap, cpu_pct, mem_cap, mem_use))
    if not samples:
        raise ValueError(f"{path}: no samples")

    samples.sort(key=lambda s: s[0])  # stable: the first row of a repeated timestamp wins
    start = math.floor(samples[0][0] / STEP) * STEP
    n = int((samples[-1][0] - start) // STEP) + 1
    cpu_sum = [0.0] * n
    mem_sum = [0.0] * n
    count = [0] * n
    last_t: float | None = None
    for t, cpu_cap, cpu_pct, mem_cap, mem_use in samples:
        if t == last_t:
            continue
        last_t = t
        if cpu_cap == 0.0 or mem_cap == 0.0:
            continue
        i = int((t - start) // STEP)
        cpu_sum[i] += _floor0(cpu_pct / 100.0)
        mem_sum[i] += _clamp01(mem_use / mem_cap)
        count[i] += 1
    first = next((i for i, c in enumerate(count) if c), None)
    if first is None:
        raise ValueError(f"{path}: every row has zero capacity; nothing to replay")

    cpu: list[float] = []
    mem: list[float] = []
    prev_cpu = cpu_sum[first] / count[first]
    prev_mem = mem_sum[first] / count[first]
    for i in range(n):
        if count[i]:
            prev_cpu = cpu_sum[i] / count[i]
            prev_mem = mem_sum[i] / count[i]
        cpu.append(prev_cpu)
        mem.append(prev_mem)
    return TraceSeries(step=STEP, cpu=tuple(cpu), mem=tuple(mem))


@lru_cache(maxsize=_CACHE_SIZE)
def _read_planetlab_cached(path: Path) -> TraceSeries:
    text = path.read_text(encoding="ascii")
    try:
        values = [int(line) for line in text.split()]
    except ValueError:
        raise ValueError(f"{path}: not a PlanetLab trace (expected integers)") from None
    if len(values) != PLANETLAB_POINTS:
        raise ValueError(f"{path}: {len(values)} values, a PlanetLab day has {PLANETLAB_POINTS}")
    return TraceSeries(step=STEP, cpu=tuple(_floor0(v / 100.0) for v in values), mem=None)


def resolve_series(traces_dir: Path, dataset: Dataset, series: str) -> Path:
    """The file holding `series` of `dataset` under `traces_dir`, or a FileNotFoundError."""
    parts = series.split("/")
    if len(parts) != 2 or any(p in {"", ".", ".."} for p in parts):
        form = "<month>/<id>" if dataset == "bitbrains" else "<day>/<vm-name>"
        raise ValueError(f"{dataset} series {series!r}: write it as '{form}'")
    folder, name = parts
    if dataset == "bitbrains":
        path = traces_dir / _BITBRAINS_DIR / folder / f"{name}.csv.gz"
    elif dataset == "planetlab":
        path = traces_dir / _PLANETLAB_DIR / folder / name
    else:
        raise ValueError(f"unknown trace dataset {dataset!r}; use 'bitbrains' or 'planetlab'")
    if not path.is_file():
        where = (
            f"in the traces directory {traces_dir}"
            if traces_dir.is_dir()
            else f"because the traces directory {traces_dir} does not exist"
        )
        raise FileNotFoundError(
            f"{dataset} series {series!r} not found {where} (looked for {path})"
        )
    return path


def load_series(traces_dir: Path, dataset: Dataset, series: str) -> TraceSeries:
    """Resolve and read one series (cached), whatever its data set."""
    path = resolve_series(traces_dir, dataset, series)
    return read_bitbrains(path) if dataset == "bitbrains" else read_planetlab(path)
