"""Benchmark of the DuckDB history store at 5,000 guests.

Run with `.venv/bin/python bench/store.py`. Everything is written to a temporary directory that
is removed at the end; the whole run takes well under 2 minutes. It measures, median of
several runs each:

1. appending one snapshot (one sample of each of 5,000 guests) with
   `Store.append_guest_samples`, which derives every guest's disk and network rates from its
   previous sample's counters, on a store already holding 24 h of history (target < 200 ms);
2. reading the last 24 h of raw samples of all 5,000 guests with `Store.guest_window` into a
   polars frame sorted by (vmid, ts) (target < 2 s), whole rows and only the columns the
   forecast features use (`columns=FEATURE_COLUMNS`). The 24 h are built first at **1-minute**
   resolution (PVE's finest RRD step), i.e. 5,000 × 1,440 = 7.2 M rows: the heaviest case;
3. one `Store.maintain` (the pipeline's every 30 minutes) on a store holding
   `MAINTAIN_DAYS` days of 5-minute roll-ups of every guest, their hourly roll-ups and the last
   hour of 1-minute samples: it recomputes only the hours the raw samples reach, so it must not
   grow with the days of 5-minute rows kept (90 by default);
4. the file size after a year of history of 5,000 guests (and 50 nodes) under the default
   `Retention` (raw 3 d, 5-min 90 d, hourly 5 y; a year keeps all hourly rows). Bytes per row
   of each sample table are measured by writing simulated rows into a file of its own through
   the store's own write path (`Store.append`, which merges roll-up rows as `maintain` does, so
   in the same order, types and rounding), checkpointing and dividing the file's growth by the
   rows; then multiplied by the steady-state row counts
   (target < 5 GB). Assumptions, also printed: one raw sample per guest and node per minute
   (the cluster ingest); an rrddata backfill adds at most a day of 1-minute rows per guest,
   inside the raw retention, and coarser points that expire into the roll-ups, so it does not
   change the steady state; metric values are random (CPU fractions and memory bytes of full
   precision, throughput log-normal around 50 kB/s, kept in whole KiB/s), which compresses worse
   than real, smoother series.

Then the machine it ran on.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

# Run as a script, this file's folder comes first on the import path; put the project root there
# instead, so `bench.*` modules import as a package (and bench/pvesim.py cannot shadow `pvesim`).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from analytics.ingest import CPU_DECIMALS  # noqa: E402
from analytics.rollup import Retention  # noqa: E402
from analytics.schema import KIB  # noqa: E402
from analytics.store import Store  # noqa: E402
from bench.machine import print_machine  # noqa: E402

GUESTS = 5_000
NODES = 50
GUESTS_PER_NODE = GUESTS // NODES
NOW = datetime(2026, 6, 1)
DAY_MINUTES = 24 * 60
APPEND_RUNS = 7
READ_RUNS = 5
SIM_ROWS = 500_000  # rows per table in the bytes-per-row simulation
GB = 1e9
# what forecasting reads besides vmid, ts (analytics.history.recent_history), and the sizes
FEATURE_COLUMNS = ("cpu", "cpus", "mem", "maxmem", "disk_kibps", "net_kibps")
MAINTAIN_DAYS = 7  # days of 5-minute roll-ups in the maintain step (10 M rows at 5,000 guests)
MAINTAIN_RUNS = 3
T = TypeVar("T")
# throughput (bytes/s): log-normal around 50 kB/s, a few guests at tens of MB/s, as idle and
# busy guests mix; per guest and counter (netin, netout, diskread, diskwrite) for the raw
# samples, per row for the 5-minute roll-ups' means
MEDIAN_RATE, RATE_SIGMA = 50e3, 2.0
RATES = np.random.default_rng(7).lognormal(np.log(MEDIAN_RATE), RATE_SIGMA, (4, GUESTS))
COUNTING_SINCE = NOW - timedelta(days=MAINTAIN_DAYS + 1)  # before every sample written

KEEP = Retention()
YEAR = timedelta(days=365)
# samples per entity kept after a year under the default retention, 1-minute raw samples
STEADY_SAMPLES = {
    "raw": KEEP.raw // timedelta(minutes=1),
    "5m": KEEP.five_min // timedelta(minutes=5),
    "1h": min(KEEP.hourly, YEAR) // timedelta(hours=1),
}


def guest_snapshot(ts: datetime, rng: np.random.Generator) -> pl.DataFrame:
    """One sample of every guest at `ts`, with PVE-like values (busy fraction, bytes, counters).

    Counters grow at each guest's own `RATES` from `COUNTING_SINCE`, give or take 30 s of it,
    so consecutive samples give rates of half to one and a half times that."""
    vmid = np.arange(100, 100 + GUESTS, dtype=np.int32)
    maxmem = ((vmid % 8 + 1) * 2 * 1024**3).astype(np.int64)
    seconds = (ts - COUNTING_SINCE).total_seconds() + rng.uniform(0, 30, RATES.shape)
    netin, netout, diskread, diskwrite = (RATES * seconds).astype(np.int64)
    return pl.DataFrame(
        {
            "vmid": vmid,
            "ts": [ts] * GUESTS,
            "node": [f"pve{(v - 100) // GUESTS_PER_NODE:02d}" for v in vmid.tolist()],
            "kind": "qemu",
            "cpu": rng.beta(2, 8, GUESTS),
            "cpus": (vmid % 8 + 1).astype(np.float64),
            "mem": (maxmem * rng.uniform(0.3, 0.9, GUESTS)).astype(np.int64),
            "maxmem": maxmem,
            "netin": netin,
            "netout": netout,
            "diskread": diskread,
            "diskwrite": diskwrite,
        }
    )


def guest_minutes(start: datetime, minutes: int, rng: np.random.Generator) -> pl.DataFrame:
    """`minutes` consecutive 1-minute snapshots of all guests, as one frame."""
    return pl.concat([guest_snapshot(start + timedelta(minutes=m), rng) for m in range(minutes)])


def timed(action: Callable[[], T], runs: int) -> tuple[float, list[float], T]:
    """Median seconds over `runs` (at least one), all times, and the last result."""
    times: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def timed_read(title: str, read: Callable[[], pl.DataFrame], note: str = "") -> None:
    """Time `read` `READ_RUNS` times and print the median against the 2 s target."""
    median, times, frame = timed(read, READ_RUNS)
    verdict = "met" if median < 2.0 else "MISSED"
    print(f"\n{title} ({note + '; ' if note else ''}median of {READ_RUNS})")
    print(f"  {median:8.2f} s    target < 2 s: {verdict}   ({frame.height:,} rows)")
    print(f"  runs: {', '.join(f'{t:.2f}' for t in times)} s")


def build_day(store: Store, rng: np.random.Generator) -> float:
    """24 h of 1-minute samples of every guest, in hour-sized appends; returns seconds."""
    start = time.perf_counter()
    first = NOW - timedelta(days=1)
    for hour in range(24):
        store.append_guest_samples(guest_minutes(first + timedelta(hours=hour), 60, rng))
    return time.perf_counter() - start


def build_rolled(path: Path, rng: np.random.Generator) -> Store:
    """A store with `MAINTAIN_DAYS` days of 5-minute and hourly roll-ups of every guest up to
    the last hour, which holds 1-minute samples; rolled up once at `NOW`."""
    store = Store(path)
    start = NOW - timedelta(days=MAINTAIN_DAYS)
    with store.writer() as con:
        con.execute(
            """
            INSERT INTO guest_samples_5m
            SELECT 100 + g, $start + to_minutes(5 * b), 'pve' || (g // $per_node), 5,
                   round(random() * 0.5, 6), round(0.5 + random() * 0.5, 6),
                   (random() * 6e10)::BIGINT, 60_000_000_000,
                   (random() * 1e3)::INTEGER, (random() * 1e3)::INTEGER
            FROM range($buckets) AS t(b), range($guests) AS u(g) ORDER BY b, g
            """,
            {
                "start": start,
                "per_node": GUESTS_PER_NODE,
                "buckets": (MAINTAIN_DAYS * DAY_MINUTES - 60) // 5,
                "guests": GUESTS,
            },
        )
        con.execute(
            """
            INSERT INTO guest_samples_1h
            SELECT vmid, date_trunc('hour', bucket) AS hour, arg_max(node, bucket), sum(n),
                   round(avg(cpu_mean), 6), max(cpu_max), round(avg(mem_mean)), max(mem_max)
            FROM guest_samples_5m GROUP BY vmid, hour ORDER BY hour, vmid
            """
        )
    store.append_guest_samples(guest_minutes(NOW - timedelta(hours=1), 60, rng))
    store.maintain(NOW)
    return store


# --- size projection -------------------------------------------------------------------------


def rollup_rows(entity: str, n: int, step: timedelta, rng: np.random.Generator) -> pl.DataFrame:
    """`n` roll-up rows, bucket by bucket (every entity per bucket), rounded as `maintain`
    rounds them (CPU to six decimals, memory to the byte, guest throughput to the KiB/s)."""
    keys = GUESTS if entity == "guest" else NODES
    buckets = -(-n // keys)
    key = np.tile(np.arange(keys), buckets)[:n]
    bucket = [NOW - step * int(i) for i in np.repeat(np.arange(buckets, 0, -1), keys)[:n]]
    cpu = rng.beta(2, 8, n)
    mem = rng.uniform(1e9, 6e10, n)
    frame = pl.DataFrame(
        {
            "bucket": bucket,
            "n": np.full(n, 5 if step == timedelta(minutes=5) else 60, dtype=np.int32),
            "cpu_mean": cpu.round(CPU_DECIMALS),
            "cpu_max": np.minimum(cpu * rng.uniform(1.0, 2.0, n), 1.0).round(CPU_DECIMALS),
            "mem_mean": mem.round().astype(np.int64),
            "mem_max": (mem * rng.uniform(1.0, 1.1, n)).round().astype(np.int64),
        }
    )
    if entity == "guest":
        frame = frame.with_columns(
            vmid=pl.Series(key + 100, dtype=pl.Int32),
            node=pl.Series([f"pve{k // GUESTS_PER_NODE:02d}" for k in key.tolist()]),
        )
        if step == timedelta(minutes=5):  # hourly buckets keep no throughput
            rate = np.log(MEDIAN_RATE), RATE_SIGMA, n
            frame = frame.with_columns(
                disk_kibps_mean=pl.Series((rng.lognormal(*rate) / KIB).round().astype(np.int64)),
                net_kibps_mean=pl.Series((rng.lognormal(*rate) / KIB).round().astype(np.int64)),
            )
        return frame
    return frame.with_columns(node=pl.Series([f"pve{k:02d}" for k in key.tolist()]))


def node_raw_rows(n: int, rng: np.random.Generator) -> pl.DataFrame:
    """`n` raw node rows, minute by minute (every node per minute), as ingest writes them."""
    minutes = -(-n // NODES)
    key = np.tile(np.arange(NODES), minutes)[:n]
    ts = [NOW - timedelta(minutes=int(i)) for i in np.repeat(np.arange(minutes, 0, -1), NODES)[:n]]
    return pl.DataFrame(
        {
            "node": [f"pve{k:02d}" for k in key.tolist()],
            "ts": ts,
            "cpu": rng.beta(3, 5, n),
            "maxcpu": np.full(n, 64, dtype=np.int32),
            "mem": rng.integers(10**11, 4 * 10**11, n),
            "maxmem": np.full(n, 512 * 1024**3, dtype=np.int64),
        }
    )


def file_bytes(path: Path) -> int:
    with duckdb.connect(str(path)) as con:
        con.execute("CHECKPOINT")
    return path.stat().st_size + sum(p.stat().st_size for p in path.parent.glob(path.name + ".wal"))


def bytes_per_row(folder: Path, table: str, rows: pl.DataFrame) -> float:
    store = Store(folder / f"{table}.duckdb")
    store.migrate()
    empty = file_bytes(store.path)
    for chunk in rows.iter_slices(100_000):
        store.append(table, chunk)
    return (file_bytes(store.path) - empty) / rows.height


def project_size(folder: Path, rng: np.random.Generator) -> list[tuple[str, float, int, float]]:
    """(table, bytes per row, rows kept after a year, projected bytes) for each sample table."""
    minutes = -(-SIM_ROWS // GUESTS)
    simulated = {
        "guest_samples": guest_minutes(NOW - timedelta(minutes=minutes), minutes, rng),
        "guest_samples_5m": rollup_rows("guest", SIM_ROWS, timedelta(minutes=5), rng),
        "guest_samples_1h": rollup_rows("guest", SIM_ROWS, timedelta(hours=1), rng),
        "node_samples": node_raw_rows(SIM_ROWS, rng),
        "node_samples_5m": rollup_rows("node", SIM_ROWS, timedelta(minutes=5), rng),
        "node_samples_1h": rollup_rows("node", SIM_ROWS, timedelta(hours=1), rng),
    }
    out = []
    for table, rows in simulated.items():
        per_row = bytes_per_row(folder, table, rows)
        resolution = table.rsplit("_", 1)[-1] if table.endswith(("5m", "1h")) else "raw"
        kept = STEADY_SAMPLES[resolution] * (GUESTS if table.startswith("guest") else NODES)
        out.append((table, per_row, kept, per_row * kept))
    return out


def main() -> int:
    rng = np.random.default_rng(42)
    wall = time.perf_counter()
    print(f"History-store benchmark: {GUESTS:,} guests, {NODES} nodes, DuckDB {duckdb.__version__}")
    with tempfile.TemporaryDirectory(prefix="proxflow-bench-store-") as tmp:
        folder = Path(tmp)
        store = Store(folder / "history.duckdb")
        store.migrate()
        built = build_day(store, rng)
        print(
            f"\nbuilt 24 h of 1-minute samples: {GUESTS * DAY_MINUTES:,} rows in {built:.1f} s "
            f"({folder / 'history.duckdb'} is {file_bytes(store.path) / 1e6:,.0f} MB)"
        )

        snaps = iter(range(1, APPEND_RUNS + 1))
        median, times, _ = timed(
            lambda: store.append_guest_samples(
                guest_snapshot(NOW + timedelta(minutes=next(snaps)), rng)
            ),
            APPEND_RUNS,
        )
        verdict = "met" if median < 0.2 else "MISSED"
        print(f"\nappend one snapshot of {GUESTS:,} guests (median of {APPEND_RUNS})")
        print(f"  {median * 1000:8.1f} ms   target < 200 ms: {verdict}")
        print(f"  runs: {', '.join(f'{t * 1000:.0f}' for t in times)} ms")

        day = (NOW - timedelta(days=1), NOW)
        timed_read(f"read the last 24 h of all {GUESTS:,} guests", lambda: store.guest_window(*day))
        timed_read(
            f"same 24 h, only vmid, ts and {', '.join(FEATURE_COLUMNS)}",
            lambda: store.guest_window(*day, columns=FEATURE_COLUMNS),
        )

        start = time.perf_counter()
        store.maintain(NOW + timedelta(hours=1))
        rolled = time.perf_counter() - start
        timed_read(
            "same 24 h from the 5-minute roll-up",
            lambda: store.guest_window(*day, resolution="5m"),
            f"`resolution='5m'`, after `maintain`, which took {rolled:.1f} s",
        )

        start = time.perf_counter()
        rolled_store = build_rolled(folder / "rolled.duckdb", rng)
        spent = time.perf_counter() - start
        rolled_store.append_guest_samples(guest_snapshot(NOW, rng))
        median, times, _ = timed(lambda: rolled_store.maintain(NOW), MAINTAIN_RUNS)
        rows_5m = GUESTS * MAINTAIN_DAYS * DAY_MINUTES // 5
        print(
            f"\nmaintain with {MAINTAIN_DAYS} days of 5-minute roll-ups ({rows_5m:,} rows) and "
            f"1 h of raw samples (built in {spent:.1f} s; median of {MAINTAIN_RUNS})"
        )
        print(f"  {median:8.2f} s    runs: {', '.join(f'{t:.2f}' for t in times)} s")

        start = time.perf_counter()
        projection = project_size(folder, rng)
        spent = time.perf_counter() - start
    total = sum(p[3] for p in projection)
    days = {k: v.total_seconds() / 86_400 for k, v in vars(KEEP).items()}
    print(
        f"\nfile size after a year, {GUESTS:,} guests + {NODES} nodes, default retention "
        f"(raw {days['raw']:g} d, 5-min {days['five_min']:g} d, hourly {days['hourly']:g} d)"
    )
    print(
        "  assumptions: one raw sample per guest and node per minute (cluster ingest); an "
        "rrddata backfill\n  adds at most a day of 1-minute rows, inside the raw retention, "
        "and coarser points that expire\n  into the roll-ups; random metric values "
        "(compress worse than real series)"
    )
    print(f"  (bytes per row measured on {SIM_ROWS:,} simulated rows per table, {spent:.1f} s)")
    print(f"  {'table':<18}{'bytes/row':>10}{'rows kept':>16}{'projected':>12}")
    for table, per_row, kept, size in projection:
        print(f"  {table:<18}{per_row:>10.1f}{kept:>16,}{size / GB:>10.2f} GB")
    verdict = "met" if total < 5 * GB else "MISSED"
    print(f"  {'total':<18}{'':>10}{'':>16}{total / GB:>10.2f} GB   target < 5 GB: {verdict}")
    hourly = sum(p[3] for p in projection if p[0].endswith("_1h"))
    years = KEEP.hourly / YEAR
    later = total + hourly * (years - 1)
    print(
        f"  (hourly rows are kept {years:g} years: the file levels off at "
        f"{later / GB:.2f} GB after that long)"
    )

    print(f"\ntotal wall time {time.perf_counter() - wall:.1f} s")
    print_machine("\nmachine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
