"""Days until a resource runs out: a linear trend through daily peaks, with a band.

Each series (a node, and the cluster as the sum of its nodes) is reduced to one value per UTC
day, the peak (``max``) or the 95th percentile (``p95``), and a straight line
``usage = a + b·day`` is fitted by least squares (numpy). The days left are counted from the
last observed day's fitted level: ``(capacity − level) / b``. The band is where the confidence
band of the fitted line, ``ŷ(t) ± z·σ·√(1/n + (t − x̄)²/Sxx)``, meets capacity: the upper edge
first (pessimistic), the lower edge last (optimistic). It widens with the slope's standard
error ``se = σ/√Sxx`` and with the uncertainty of the level, and collapses to the point
estimate on an exact line. A trend that is flat or falling, or whose rise is within ``z·se``
of zero, has no exhaustion date (``None``): the optimistic edge would never get there. Fewer
than three days (no standard error) also give ``None``.

Pure functions, polars in and out; units are whatever the caller's column holds (host cores or
bytes), with ``capacity`` in the same units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

CLUSTER = "cluster"  # the key of the whole-cluster row in per-node results
Stat = Literal["max", "p95"]


@dataclass(frozen=True)
class Exhaustion:
    slope: float  # usage units per day
    slope_se: float  # standard error of the slope
    level: float  # fitted usage on the last observed day
    capacity: float
    days: float  # from the last observed day until the fitted line meets capacity
    optimistic: float  # where the band's lower edge meets capacity (>= days)
    pessimistic: float  # where its upper edge does (<= days)


def fit_exhaustion(
    days: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    capacity: float,
    *,
    z: float = 1.96,
) -> Exhaustion | None:
    """Fit ``values ≈ a + b·days`` and say when it reaches ``capacity``; None if it does not."""
    x = np.asarray(days, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"days and values must be equal-length 1-d, got {x.shape}, {y.shape}")
    if x.size < 3 or np.ptp(x) == 0:
        return None
    design = np.column_stack([np.ones_like(x), x])
    (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
    residuals = y - (a + b * x)
    sigma2 = float(residuals @ residuals) / (x.size - 2)
    se = float(np.sqrt(sigma2 / float(((x - x.mean()) ** 2).sum())))
    scale = max(abs(capacity), float(np.abs(y).max()), 1.0)
    if b <= 1e-12 * scale or b - z * se <= 0:
        return None
    last = float(x.max())
    level = float(a + b * last)
    # band edges: (D − b·u)² = z²σ²(1/n + u²/Sxx) with u = t − x̄ and D = capacity − ȳ; the
    # quadratic's smaller root is where the upper edge meets capacity, the larger the lower
    mean_x, gap = float(x.mean()), capacity - float(y.mean())
    quad = b * b - (z * se) ** 2
    root = np.sqrt((z * se * gap) ** 2 + quad * z * z * sigma2 / x.size)
    early, late = ((b * gap + sign * root) / quad + mean_x - last for sign in (-1.0, 1.0))
    return Exhaustion(
        slope=float(b),
        slope_se=se,
        level=level,
        capacity=float(capacity),
        days=max(capacity - level, 0.0) / float(b),
        optimistic=max(float(late), 0.0),
        pessimistic=max(float(early), 0.0),
    )


def daily(history: pl.DataFrame, column: str, *, key: str, ts: str, stat: Stat) -> pl.DataFrame:
    """One row per key and UTC day: ``key``, ``day`` (date), ``value`` (the day's max or p95),
    plus the ``cluster`` series, the per-timestamp sum over keys reduced the same way."""
    if stat not in ("max", "p95"):
        raise ValueError(f"stat must be 'max' or 'p95', got {stat!r}")
    reduce = pl.col("value").max() if stat == "max" else pl.col("value").quantile(0.95, "linear")
    rows = history.select(
        pl.col(key).cast(pl.String).alias("key"),
        pl.col(ts).alias("ts"),
        pl.col(column).cast(pl.Float64).alias("value"),
    ).drop_nulls()
    cluster = (
        rows.group_by("ts")
        .agg(pl.col("value").sum())
        .select(pl.lit(CLUSTER).alias("key"), "ts", "value")
    )
    both = pl.concat([rows, cluster])
    return (
        both.with_columns(pl.col("ts").dt.date().alias("day"))
        .group_by("key", "day")
        .agg(reduce)
        .sort("key", "day")
    )


def days_until_exhausted(
    history: pl.DataFrame,
    capacity: Mapping[str, float] | float,
    column: str,
    *,
    key: str = "node",
    ts: str = "ts",
    stat: Stat = "max",
    z: float = 1.96,
) -> pl.DataFrame:
    """Per ``key`` (default: node) and for the cluster, days until ``column`` reaches capacity.

    ``history``: rows of ``key``, ``ts`` (datetime) and ``column`` in absolute units, e.g.
    node CPU in cores (``cpu * maxcpu`` of node samples) or memory in bytes (``mem``).
    ``capacity``: per key (a mapping) or one value for every key; the cluster's is the sum over
    the keys in ``history``. Pass whole days: a partial first or last day has a lower peak
    and drags the trend.

    Returns one row per key (sorted) and then ``cluster``: ``node`` (named after ``key``),
    ``capacity``, ``n_days``, ``slope_per_day``, ``slope_se``, ``level``, ``days``,
    ``days_optimistic``, ``days_pessimistic`` (the last five null when the trend never gets
    there, see the module docstring), and ``last_day``.
    """
    per_day = daily(history, column, key=key, ts=ts, stat=stat)
    keys = sorted(k for k in per_day["key"].unique().to_list() if k != CLUSTER)
    if isinstance(capacity, Mapping):
        missing = [k for k in keys if k not in capacity]
        if missing:
            raise ValueError(f"no capacity given for {missing}")
        caps = {k: float(capacity[k]) for k in keys}
    else:
        caps = dict.fromkeys(keys, float(capacity))
    caps[CLUSTER] = sum(caps.values())
    rows = []
    for name in [*keys, CLUSTER] if keys else []:
        series = per_day.filter(pl.col("key") == name)
        first = series["day"].min()
        x = (series["day"] - first).dt.total_days().to_numpy().astype(np.float64)
        fit = fit_exhaustion(x, series["value"].to_numpy(), caps[name], z=z)
        rows.append(
            {
                key: name,
                "capacity": caps[name],
                "n_days": series.height,
                "slope_per_day": fit.slope if fit else None,
                "slope_se": fit.slope_se if fit else None,
                "level": fit.level if fit else None,
                "days": fit.days if fit else None,
                "days_optimistic": fit.optimistic if fit else None,
                "days_pessimistic": fit.pessimistic if fit else None,
                "last_day": series["day"].max(),
            }
        )
    schema = {key: pl.String, "capacity": pl.Float64, "n_days": pl.Int64}
    schema.update(
        dict.fromkeys(
            (
                "slope_per_day",
                "slope_se",
                "level",
                "days",
                "days_optimistic",
                "days_pessimistic",
            ),
            pl.Float64,
        )
    )
    schema["last_day"] = pl.Date
    return pl.DataFrame(rows, schema=schema)


__all__ = ["CLUSTER", "Exhaustion", "Stat", "daily", "days_until_exhausted", "fit_exhaustion"]
