"""Reading history out of the store in the shapes its users want, in one place.

The store hands back rows as they were kept: raw samples at whatever step the collector or a
backfill had, and 5-minute roll-ups (means) where the raw samples have expired. Forecasting wants
each guest's series on a regular 5-minute grid; capacity trends want node load at one coarse,
uniform step. The flows, tasks and notebooks all read history through these helpers, so they
agree on how the resolutions are stitched together.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from analytics.schema import KIB
from analytics.store import Store
from engine import ClusterSnapshot

GRID = 300  # seconds per step of the forecasting grid
# history comes at several resolutions (PVE's RRD keeps 1-minute points for a day, 30-minute
# points for a week; the store rolls up to 5 minutes and hours), and daily peaks of finer data
# are higher, which would read as growth; so every trend looks at 30-minute means
TREND_BUCKET = "30m"
# guest throughput as the readers name it (bytes/s, as the trace loaders give it), from the
# raw and the roll-up columns (KiB/s); null where the store has no rate (history from before it
# kept them, a counter reset)
IO = ("disk", "net")
RAW_IO = {"disk_kibps": "disk", "net_kibps": "net"}
ROLLED_IO = {"disk_kibps_mean": "disk", "net_kibps_mean": "net"}


def _io_named(frame: pl.DataFrame, names: dict[str, str]) -> pl.DataFrame:
    """The frame with its throughput columns renamed to `IO` and in bytes/s."""
    return frame.rename(names).with_columns(pl.col(IO).cast(pl.Float64) * KIB)


def to_grid(frame: pl.DataFrame, key: str, value_cols: Sequence[str]) -> pl.DataFrame:
    """`series, ts, <cols>`: per-5-minute means on a gap-free grid, gaps forward-filled.

    The forecaster's features count steps, not seconds, so every series needs one row per step;
    a missed ingest repeats the last value, which is what the naive baselines assume too.
    """
    if frame.is_empty():
        schema: dict[str, Any] = {"series": pl.String, "ts": pl.Int64}
        schema.update({c: pl.Float64 for c in value_cols})
        return pl.DataFrame(schema=schema)
    ts = pl.col("ts")
    if isinstance(frame.schema["ts"], pl.Datetime):
        ts = ts.dt.epoch("s")
    buckets = (
        frame.select(
            pl.col(key).cast(pl.String).alias("series"),
            (ts.cast(pl.Int64) // GRID * GRID).alias("ts"),
            *(pl.col(c).cast(pl.Float64) for c in value_cols),
        )
        .group_by("series", "ts")
        .agg(pl.col(c).mean() for c in value_cols)
    )
    spans = buckets.group_by("series").agg(
        pl.int_ranges(pl.col("ts").min(), pl.col("ts").max() + GRID, GRID).alias("ts")
    )
    grid = spans.explode("ts")
    return (
        grid.join(buckets, on=["series", "ts"], how="left")
        .sort("series", "ts")
        .with_columns(pl.col(c).forward_fill().over("series") for c in value_cols)
    )


def recent_history(
    store: Store, now: float, hours: float = 24.0, vmids: Sequence[int] | None = None
) -> pl.DataFrame:
    """The last `hours` of raw guest samples on the 5-minute grid
    (`series, ts, cpu, mem, cpus, disk, net`), of every guest or only of `vmids`.

    What a forecast is made from: a day of raw samples covers the features' longest lag.
    """
    end = datetime.fromtimestamp(now, UTC) + timedelta(seconds=1)
    start = end - timedelta(hours=hours)
    raw = store.guest_window(start, end, vmids, columns=("cpu", "mem", "cpus", *RAW_IO))
    return to_grid(_io_named(raw, RAW_IO), "vmid", ("cpu", "mem", "cpus", *IO))


def dense_tail(frame: pl.DataFrame, key: str, gap: int = 4 * GRID) -> pl.DataFrame:
    """Each series from its last gap wider than `gap` seconds on: the stretch sampled at least
    every few minutes. Older backfilled history is coarser (PVE keeps 30-minute points for a
    week); filled onto the 5-minute grid it would teach the model flat steps that never occur.
    """
    if frame.is_empty():
        return frame
    ts = pl.col("ts").dt.epoch("s") if isinstance(frame.schema["ts"], pl.Datetime) else pl.col("ts")
    wide = (ts.diff().over(key) > gap).cast(pl.Int32).cum_sum().over(key)
    return (
        frame.sort(key, "ts")
        .with_columns(wide.fill_null(0).alias("_stretch"))
        .filter(pl.col("_stretch") == pl.col("_stretch").max().over(key))
        .drop("_stretch")
    )


def training_frame(store: Store, now: float, days: float) -> pl.DataFrame:
    """`days` of guest CPU, memory and throughput on the 5-minute grid
    (`series, ts, cpu, mem, disk, net`), densely sampled stretches only.

    The 5-minute roll-up reaches further back than the raw samples, so it supplies the history
    up to its newest bucket and the raw samples the rest.
    """
    end = datetime.fromtimestamp(now, UTC)
    values = ("cpu", "mem", *IO)
    rolled = store.guest_window(
        end - timedelta(days=days),
        end,
        resolution="5m",
        columns=("cpu_mean", "mem_mean", *ROLLED_IO),
    )
    rolled = _io_named(rolled, ROLLED_IO).rename(
        {"bucket": "ts", "cpu_mean": "cpu", "mem_mean": "mem"}
    )
    raw_since = end - timedelta(days=days)
    newest = rolled["ts"].max() if not rolled.is_empty() else None
    if isinstance(newest, datetime):
        raw_since = newest + timedelta(minutes=5)
    raw = store.guest_window(raw_since, end + timedelta(seconds=1), columns=("cpu", "mem", *RAW_IO))
    raw = _io_named(raw, RAW_IO)
    parts = [f.select("vmid", "ts", *values) for f in (rolled, raw) if not f.is_empty()]
    if not parts:
        return to_grid(pl.DataFrame(), "vmid", values)
    combined = pl.concat(parts, how="vertical_relaxed").sort("vmid", "ts")
    return to_grid(dense_tail(combined, "vmid"), "vmid", values)


def node_history(store: Store, snapshot: ClusterSnapshot, days: float) -> pl.DataFrame:
    """The last `days` of node load up to the snapshot, as 30-minute means
    (`node, ts, cpu, maxcpu, mem, maxmem`), sorted by node then time.

    Raw samples where they are kept, the 5-minute roll-up before them (it keeps no node sizes,
    so rolled rows take the snapshot's, and nodes no longer in the snapshot are left out).
    """
    end = datetime.fromtimestamp(snapshot.now, UTC) + timedelta(seconds=1)
    start = end - timedelta(days=days)
    raw = store.node_window(start, end, columns=("cpu", "maxcpu", "mem", "maxmem"))
    first = raw["ts"].min()
    first_raw = first if isinstance(first, datetime) else end
    rolled = store.node_window(start, first_raw, resolution="5m", columns=("cpu_mean", "mem_mean"))
    if rolled.height:
        caps = pl.DataFrame(
            {
                "node": [n.name for n in snapshot.nodes],
                "maxcpu": [n.cpus for n in snapshot.nodes],
                "maxmem": [n.memory for n in snapshot.nodes],
            }
        )
        rolled = (
            rolled.rename({"bucket": "ts", "cpu_mean": "cpu", "mem_mean": "mem"})
            .join(caps, on="node", how="inner")
            .select("node", "ts", "cpu", "maxcpu", "mem", "maxmem")
        )
        raw = pl.concat([rolled, raw], how="vertical_relaxed")
    return _uniform(raw)


def _uniform(history: pl.DataFrame) -> pl.DataFrame:
    """Node rows as `TREND_BUCKET` means: one step for every resolution, and every node at the
    same instants (which the imbalance over time compares)."""
    if history.is_empty():
        return history
    return (
        history.with_columns(pl.col("ts").dt.truncate(TREND_BUCKET))
        .group_by("node", "ts")
        .agg(
            pl.col("cpu").mean(),
            pl.col("maxcpu").max(),
            pl.col("mem").mean(),
            pl.col("maxmem").max(),
        )
        .select("node", "ts", "cpu", "maxcpu", "mem", "maxmem")
        .sort("node", "ts")
    )


__all__ = [
    "GRID",
    "TREND_BUCKET",
    "dense_tail",
    "node_history",
    "recent_history",
    "to_grid",
    "training_frame",
]
