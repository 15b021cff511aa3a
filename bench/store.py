"""Benchmark of the DuckDB history store at 5,000 guests.

Run with `.venv/bin/python bench/store.py`. Everything is written to a temporary directory that
is removed at the end; the whole run takes well under 2 minutes. It measures, median of
several runs each:

1. appending one snapshot (one sample of each of 5,000 guests) with
   `Store.append_guest_samples`, on a store already holding 24 h of history (target < 200 ms);
2. reading the last 24 h of raw samples of all 5,000 guests with `Store.guest_window` into a
   polars frame (target < 2 s). The 24 h are built first at **1-minute** resolution (PVE's
   finest RRD step), i.e. 5,000 × 1,440 = 7.2 M rows: the heaviest case;
3. the file size after a year of history of 5,000 guests (and 50 nodes) at 1-minute raw
   samples under the default retention (raw 7 d, 5-min 90 d, hourly 5 y; a year keeps all
   hourly rows): bytes per row of each sample table are measured by writing a smaller simulated
   table (with its primary key) into a file of its own, checkpointing and dividing the growth
   of the file by the rows, then multiplied by the steady-state row counts (target < 5 GB).

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

# Run as a script, this file's folder comes first on the import path; put the project root there
# instead, so `bench.*` modules import as a package (and bench/pvesim.py cannot shadow `pvesim`).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from analytics.ingest import TABLES, ArrowStream  # noqa: E402
from analytics.store import Store  # noqa: E402
from bench.machine import print_machine  # noqa: E402

GUESTS = 5_000
NODES = 50
GUESTS_PER_NODE = GUESTS // NODES
NOW = datetime(2026, 6, 1)
DAY_MINUTES = 24 * 60
APPEND_RUNS = 7
READ_RUNS = 5
SIM_ROWS = 400_000  # rows per table in the bytes-per-row simulation
GB = 1e9

# rows kept at steady state after a year (default retention, 1-minute raw samples)
STEADY_SAMPLES = {"raw": 7 * DAY_MINUTES, "5m": 90 * 24 * 12, "1h": 365 * 24}


def guest_snapshot(ts: datetime, rng: np.random.Generator, minute: int = 0) -> pl.DataFrame:
    """One sample of every guest at `ts`, with PVE-like values (busy fraction, bytes, counters)."""
    vmid = np.arange(100, 100 + GUESTS, dtype=np.int32)
    maxmem = ((vmid % 8 + 1) * 2 * 1024**3).astype(np.int64)
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
            "netin": (vmid.astype(np.int64) * 10_000 + minute * 120_000),
            "netout": (vmid.astype(np.int64) * 5_000 + minute * 60_000),
            "diskread": (vmid.astype(np.int64) * 3_000 + minute * 40_000),
            "diskwrite": (vmid.astype(np.int64) * 7_000 + minute * 90_000),
        }
    )


def guest_minutes(start: datetime, minutes: int, rng: np.random.Generator) -> pl.DataFrame:
    """`minutes` consecutive 1-minute snapshots of all guests, as one frame."""
    return pl.concat([guest_snapshot(start + timedelta(minutes=m), rng, m) for m in range(minutes)])


def timed(action: Callable[[], object], runs: int) -> tuple[float, list[float], object]:
    """Median seconds over `runs`, all times, and the last result."""
    times: list[float] = []
    result: object = None
    for _ in range(runs):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def build_day(store: Store, rng: np.random.Generator) -> float:
    """24 h of 1-minute samples of every guest, in hour-sized appends; returns seconds."""
    start = time.perf_counter()
    first = NOW - timedelta(days=1)
    for hour in range(24):
        store.append_guest_samples(guest_minutes(first + timedelta(hours=hour), 60, rng))
    return time.perf_counter() - start


# --- size projection -------------------------------------------------------------------------


def rollup_rows(entity: str, n: int, step: timedelta, rng: np.random.Generator) -> pl.DataFrame:
    keys = GUESTS if entity == "guest" else NODES
    per_key = -(-n // keys)
    key = np.repeat(np.arange(keys), per_key)[:n]
    bucket = [NOW - step * int(i) for i in np.tile(np.arange(per_key), keys)[:n]]
    cpu = rng.beta(2, 8, n)
    mem = rng.uniform(1e9, 6e10, n)
    frame = pl.DataFrame(
        {
            "bucket": bucket,
            "n": np.full(n, 5 if step == timedelta(minutes=5) else 60, dtype=np.int64),
            "cpu_mean": cpu,
            "cpu_max": np.minimum(cpu * rng.uniform(1.0, 2.0, n), 1.0),
            "mem_mean": mem,
            "mem_max": mem * rng.uniform(1.0, 1.1, n),
        }
    )
    if entity == "guest":
        return frame.with_columns(
            vmid=pl.Series(key + 100, dtype=pl.Int32),
            node=pl.Series([f"pve{k // GUESTS_PER_NODE:02d}" for k in key.tolist()]),
        )
    return frame.with_columns(node=pl.Series([f"pve{k:02d}" for k in key.tolist()]))


def node_raw_rows(n: int, rng: np.random.Generator) -> pl.DataFrame:
    per_node = -(-n // NODES)
    key = np.repeat(np.arange(NODES), per_node)[:n]
    ts = [NOW - timedelta(minutes=int(i)) for i in np.tile(np.arange(per_node), NODES)[:n]]
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
        if table in TABLES:
            store.append(table, chunk)
        else:  # roll-up tables are written by `maintain`, not `append`: insert them directly
            with store.writer() as con:
                con.register("incoming", ArrowStream(chunk))
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming")
                con.unregister("incoming")
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

        def read_day() -> pl.DataFrame:
            return store.guest_window(NOW - timedelta(days=1), NOW)

        median, times, frame = timed(read_day, READ_RUNS)
        assert isinstance(frame, pl.DataFrame)
        verdict = "met" if median < 2.0 else "MISSED"
        print(f"\nread the last 24 h of all {GUESTS:,} guests (median of {READ_RUNS})")
        print(f"  {median:8.2f} s    target < 2 s: {verdict}   ({frame.height:,} rows)")
        print(f"  runs: {', '.join(f'{t:.2f}' for t in times)} s")

        start = time.perf_counter()
        store.maintain(NOW + timedelta(hours=1))
        rolled = time.perf_counter() - start

        def read_day_5m() -> pl.DataFrame:
            return store.guest_window(NOW - timedelta(days=1), NOW, resolution="5m")

        median, times, frame = timed(read_day_5m, READ_RUNS)
        assert isinstance(frame, pl.DataFrame)
        verdict = "met" if median < 2.0 else "MISSED"
        print(
            f"\nsame 24 h from the 5-minute roll-up (`resolution='5m'`, after `maintain`, which "
            f"took {rolled:.1f} s; median of {READ_RUNS})"
        )
        print(f"  {median:8.2f} s    target < 2 s: {verdict}   ({frame.height:,} rows)")
        print(f"  runs: {', '.join(f'{t:.2f}' for t in times)} s")

        start = time.perf_counter()
        projection = project_size(folder, rng)
        spent = time.perf_counter() - start
    total = sum(p[3] for p in projection)
    print(
        f"\nfile size after a year, {GUESTS:,} guests + {NODES} nodes, 1-minute raw samples, "
        "default retention"
    )
    print(f"  (bytes per row measured on {SIM_ROWS:,} simulated rows per table, {spent:.1f} s)")
    print(f"  {'table':<18}{'bytes/row':>10}{'rows kept':>16}{'projected':>12}")
    for table, per_row, kept, size in projection:
        print(f"  {table:<18}{per_row:>10.1f}{kept:>16,}{size / GB:>10.2f} GB")
    verdict = "met" if total < 5 * GB else "MISSED"
    print(f"  {'total':<18}{'':>10}{'':>16}{total / GB:>10.2f} GB   target < 5 GB: {verdict}")

    print(f"\ntotal wall time {time.perf_counter() - wall:.1f} s")
    print_machine("\nmachine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
