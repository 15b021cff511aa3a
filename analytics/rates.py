"""Guest disk and network throughput (KiB/s) from PVE's cumulative byte counters.

`/cluster/resources` gives each guest's ``netin``, ``netout``, ``diskread`` and ``diskwrite`` as
bytes since the guest's process started, not as rates. A sample's ``disk_kibps`` is therefore
the growth of diskread + diskwrite since the same guest's previous sample, in KiB per second, and
``net_kibps`` that of netin + netout. The previous sample is the latest earlier one of the guest,
stored already or earlier in the same frame, at most `LOOKBACK` before it: over a longer gap
the mean rate says little about the sample's own minute.

A rate is NULL where it cannot be trusted:

- either counter of its sum, or of the previous sample's sum, is missing;
- either sum went down, or the guest is on another node than before: its process restarted
  or moved, which starts all four counters from zero, so neither sum grew by the bytes moved
  in between (a guest that had moved little before may not show the reset in both sums);
- there is no previous sample within `LOOKBACK`.

Rates a frame brings (an RRD backfill's) are kept as they are. Only incoming rows get rates:
an upsert that changes a stored sample's counters leaves the rate of the stored sample after it
as it was (the pipeline only appends samples). The lookup reads only the stored rows from
`LOOKBACK` before the frame's first sample up to its last, bounded by literals so DuckDB skips
the other row groups by their zone maps.
"""

from __future__ import annotations

from datetime import timedelta

import duckdb
import polars as pl

from analytics.append import time_literal
from analytics.connect import fetch_frame
from analytics.ingest import WHOLE
from analytics.schema import KIB

LOOKBACK = timedelta(minutes=15)
# rate column: the counters whose sum it is the growth of
COUNTERS: dict[str, tuple[str, str]] = {
    "disk_kibps": ("diskread", "diskwrite"),
    "net_kibps": ("netin", "netout"),
}
_SUMS = {rate: f"_{rate}_sum" for rate in COUNTERS}


def _sums(frame: pl.DataFrame) -> list[pl.Expr]:
    """Each rate's counter sum, NULL where a counter is missing or the frame lacks one."""
    exprs = []
    for rate, (a, b) in COUNTERS.items():
        if a in frame.columns and b in frame.columns:
            exprs.append((pl.col(a).cast(pl.Int64) + pl.col(b).cast(pl.Int64)).alias(_SUMS[rate]))
        else:
            exprs.append(pl.lit(None, pl.Int64).alias(_SUMS[rate]))
    return exprs


def _wanted() -> pl.Expr:
    """Rows that lack a rate their counters could give."""
    return pl.any_horizontal(
        pl.col(rate).is_null() & pl.col(_SUMS[rate]).is_not_null() for rate in COUNTERS
    )


def _stored(con: duckdb.DuckDBPyConnection, rows: pl.DataFrame) -> pl.DataFrame:
    """Stored samples that may be the previous sample of one of `rows`, with counter sums."""
    first, last = rows.select(pl.col("ts").min(), pl.col("ts").max().alias("last")).row(0)
    sums = ", ".join(f"{a} + {b} AS {_SUMS[rate]}" for rate, (a, b) in COUNTERS.items())
    return fetch_frame(
        con,
        f"SELECT vmid, ts, node, {sums} FROM guest_samples "
        f"WHERE ts >= {time_literal(first - LOOKBACK)} AND ts < {time_literal(last)}",
    )


def _previous(rows: pl.DataFrame, stored: pl.DataFrame, *, update: bool) -> pl.DataFrame:
    """Each of `rows` (in their order) with its previous sample's columns, suffixed _before.

    Of a stored and an incoming row with the same key, the one the write keeps counts: the
    stored one in an append, the incoming one in an update.
    """
    keep: list[pl.Expr | str] = [
        pl.col("vmid").cast(pl.Int64),
        pl.col("ts").cast(pl.Datetime("us")),
        "node",
        *_SUMS.values(),
    ]
    candidates = (
        pl.concat(
            [rows.select(keep), stored.select(keep)][:: 1 if update else -1],
            how="vertical_relaxed",
        )
        .unique(subset=["vmid", "ts"], keep="first", maintain_order=True)
        .with_columns(pl.col("ts").alias("ts_before"))  # the join keeps only the left's ts
        .sort("ts")
    )
    return (
        rows.select(*keep, *COUNTERS)
        .with_row_index("_row")
        .sort("ts")
        .join_asof(
            candidates,
            on="ts",
            by="vmid",
            strategy="backward",
            tolerance=LOOKBACK,
            allow_exact_matches=False,
            suffix="_before",
            check_sortedness=False,
        )
        .sort("_row")
    )


def _rate(rate: str) -> pl.Expr:
    """`rate` where the row has none and its counters give one (see the module docstring)."""
    now, before = pl.col(_SUMS[rate]), pl.col(f"{_SUMS[rate]}_before")
    reset = pl.any_horizontal(
        *(pl.col(s) < pl.col(f"{s}_before") for s in _SUMS.values()),
        pl.col("node") != pl.col("node_before"),
    ).fill_null(False)
    seconds = (pl.col("ts") - pl.col("ts_before")).dt.total_microseconds() / 1e6
    grown = ((now - before) / (seconds * KIB)).round(mode=WHOLE).cast(pl.Int64)
    return pl.coalesce(pl.col(rate), pl.when(reset).then(None).otherwise(grown)).alias(rate)


def with_rates(
    con: duckdb.DuckDBPyConnection, rows: pl.DataFrame, *, update: bool = False
) -> pl.DataFrame:
    """Normalised guest sample `rows` with ``disk_kibps`` and ``net_kibps`` filled in where the
    counters give them; reads the stored samples on `con`, inside the caller's transaction.
    `update`: the rows will overwrite stored ones of the same key (an upsert)."""
    rows = rows.with_columns(
        pl.lit(None, pl.Int64).alias(rate) for rate in COUNTERS if rate not in rows.columns
    )
    columns = rows.columns
    rows = rows.with_columns(_sums(rows))
    if rows.is_empty() or not rows.select(_wanted().any()).item():
        return rows.select(columns)
    joined = _previous(rows, _stored(con, rows), update=update)
    return rows.select(columns).with_columns(joined.select(_rate(rate) for rate in COUNTERS))
