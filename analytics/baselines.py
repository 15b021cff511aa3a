"""Naive forecasters over a long trace frame (`series, ts, <column>`, see `analytics.traces`).

A forecaster takes the frame, the column to forecast (`"cpu"` or `"mem"`) and the horizon in
minutes, and returns `series, ts, mean, p90`, one row per input row: standing at `ts`, having
seen that row and every earlier row of the same series (never a later one),

* `mean` forecasts the mean of the column over the next H minutes;
* `p90` forecasts the level that 90 % of the column's 5-minute values over the next H minutes
  stay at or below (scored in `analytics.backtest`).

The baselines ignore the horizon. Their p90 is, for all three, the larger of the point forecast
and the maximum of the last hour (12 steps, fewer at the start of a series): simple, needs no
error history (PlanetLab series are only a day long) and uses nothing from the future. The
alternative, point forecast plus a recent empirical error quantile, would need errors whose
windows have closed, i.e. a lag of H plus a window of history per series.

The input must be sorted by `series, ts` on a regular 5-minute grid, as the loaders return it.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

STEP_MIN = 5  # minutes per grid step
HOUR_STEPS = 60 // STEP_MIN

Forecaster = Callable[[pl.DataFrame, str, int], pl.DataFrame]


def _with_p90(frame: pl.DataFrame, column: str, mean: pl.Expr) -> pl.DataFrame:
    """`series, ts, mean, p90` with p90 = max(mean, max of the last hour of `column`)."""
    last_hour_max = pl.col(column).rolling_max(HOUR_STEPS, min_samples=1).over("series")
    return (
        frame.select("series", "ts", mean.alias("mean"), last_hour_max.alias("_hour_max"))
        .with_columns(pl.max_horizontal("mean", "_hour_max").alias("p90"))
        .drop("_hour_max")
    )


def last_value(frame: pl.DataFrame, column: str, horizon_min: int) -> pl.DataFrame:
    """The last observed value, held flat over the horizon."""
    del horizon_min  # a naive forecast does not depend on the horizon
    return _with_p90(frame, column, pl.col(column))


def mean_last_hour(frame: pl.DataFrame, column: str, horizon_min: int) -> pl.DataFrame:
    """The mean of the last hour (12 steps, fewer at the start of a series)."""
    del horizon_min
    mean = pl.col(column).rolling_mean(HOUR_STEPS, min_samples=1).over("series")
    return _with_p90(frame, column, mean)


def ewma(halflife_min: float = 30.0) -> Forecaster:
    """An exponentially weighted mean of the whole history with this half-life in minutes."""
    if halflife_min <= 0:
        raise ValueError("the EWMA half-life must be positive")
    half_life = halflife_min / STEP_MIN

    def forecast(frame: pl.DataFrame, column: str, horizon_min: int) -> pl.DataFrame:
        del horizon_min
        mean = pl.col(column).ewm_mean(half_life=half_life, adjust=True).over("series")
        return _with_p90(frame, column, mean)

    forecast.__name__ = f"ewma_{halflife_min:g}min"
    return forecast


BASELINES: dict[str, Forecaster] = {
    "last value": last_value,
    "mean of last hour": mean_last_hour,
    "EWMA (half-life 30 min)": ewma(30.0),
}
