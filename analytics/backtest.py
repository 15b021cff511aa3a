"""Rolling-origin backtest of a forecaster (`analytics.baselines.Forecaster`) on a trace frame.

For each series (sorted by `series, ts` on the 5-minute grid) let x_i be the column at step i
and h = H / 5 the horizon in steps. An origin is a step t from which a forecast is made, having
seen x_0..x_t:

* origins are t = w - 1, w - 1 + k, w - 1 + 2k, ... (`warmup` w steps seen, then every `every`
  = k steps) as long as the whole window t+1..t+h lies inside the series;
* target_mean = mean(x_{t+1}..x_{t+h});
* target_p90 = 90th percentile of x_{t+1}..x_{t+h} (linear interpolation between order
  statistics, as numpy's default).

Per origin, with m the mean forecast and q the p90 forecast:

* abs_error = |m - target_mean|;
* pinball = (1/h) sum_j L(x_{t+j}, q), L(y, q) = 0.9 (y - q) if y >= q else 0.1 (q - y): the
  pinball loss at 0.9 of q against each realised value of the window (minimised by the 90th
  percentile of the values), averaged;
* coverage = share of x_{t+1}..x_{t+h} that are <= q (0.9 when q is calibrated);
* p90_abs_error = |q - target_p90|, for reference.

`summarise` averages them over all origins of all series (every origin weighs the same):
`mae`, `pinball`, `coverage`, `p90_mae`, plus `origins`. Rows where the column is null (PlanetLab
memory) give no origins. Everything is computed with shifts and rolling windows per series; no
Python loop runs over rows (only over the h <= 12 steps of the horizon).
"""

from __future__ import annotations

import polars as pl

from analytics.baselines import STEP_MIN, Forecaster

QUANTILE = 0.9
DEFAULT_WARMUP = 12  # one hour of history before the first origin
DEFAULT_EVERY = 1


def horizon_steps(horizon_min: int) -> int:
    """The horizon in 5-minute steps; it must be a positive multiple of 5 minutes."""
    if horizon_min <= 0 or horizon_min % STEP_MIN:
        raise ValueError(f"horizon {horizon_min} min: use a positive multiple of {STEP_MIN} min")
    return horizon_min // STEP_MIN


def window_mean(x: pl.Expr, h: int) -> pl.Expr:
    """mean(x_{t+1}..x_{t+h}) per series: the window ending at t+h, shifted back by h."""
    return x.rolling_mean(h).shift(-h).over("series")


def window_p90(x: pl.Expr, h: int) -> pl.Expr:
    """The linear 90th percentile of x_{t+1}..x_{t+h} per series."""
    return x.rolling_quantile(QUANTILE, "linear", h).shift(-h).over("series")


def pinball(y: pl.Expr, q: pl.Expr, quantile: float = QUANTILE) -> pl.Expr:
    """Pinball (quantile) loss of forecast q against realised y at this quantile."""
    return pl.when(y >= q).then(quantile * (y - q)).otherwise((1.0 - quantile) * (q - y))


def backtest(
    frame: pl.DataFrame,
    forecaster: Forecaster,
    column: str = "cpu",
    horizon_min: int = 30,
    *,
    warmup: int = DEFAULT_WARMUP,
    every: int = DEFAULT_EVERY,
) -> pl.DataFrame:
    """One row per origin: `series, ts, mean, p90, target_mean, target_p90` and the metrics.

    The forecaster is run once over the whole frame; it may only use each row's past (the
    baselines do), so the forecast at an origin never sees the window it is scored on.
    """
    h = horizon_steps(horizon_min)
    if warmup < 1 or every < 1:
        raise ValueError("warmup and every must be at least 1")
    forecasts = forecaster(frame, column, horizon_min)
    x = pl.col(column)
    future = [x.shift(-j).over("series") for j in range(1, h + 1)]
    step = pl.int_range(pl.len(), dtype=pl.Int64).over("series")
    n = pl.len().over("series")
    data = frame.select(
        "series",
        "ts",
        x.alias("_x"),
        step.alias("_step"),
        n.alias("_n"),
        window_mean(x, h).alias("target_mean"),
        window_p90(x, h).alias("target_p90"),
        *(f.alias(f"_y{j}") for j, f in enumerate(future, start=1)),
    ).join(forecasts, on=["series", "ts"], how="left")
    ys = [pl.col(f"_y{j}") for j in range(1, h + 1)]
    q = pl.col("p90")
    origins = data.filter(
        (pl.col("_step") >= warmup - 1)
        & ((pl.col("_step") - (warmup - 1)) % every == 0)
        & (pl.col("_step") + h < pl.col("_n"))
        & pl.col("_x").is_not_null()
        & pl.col("target_mean").is_not_null()
        & pl.col("mean").is_not_null()
        & q.is_not_null()
    )
    return origins.select(
        "series",
        "ts",
        "mean",
        "p90",
        "target_mean",
        "target_p90",
        (pl.col("mean") - pl.col("target_mean")).abs().alias("abs_error"),
        (pl.sum_horizontal(pinball(y, q) for y in ys) / h).alias("pinball"),
        (pl.sum_horizontal((y <= q).cast(pl.Float64) for y in ys) / h).alias("coverage"),
        (q - pl.col("target_p90")).abs().alias("p90_abs_error"),
    )


def summarise(per_origin: pl.DataFrame) -> dict[str, float]:
    """Mean of each metric over all origins, and the number of origins."""
    if per_origin.is_empty():
        nan = float("nan")
        return {"mae": nan, "pinball": nan, "coverage": nan, "p90_mae": nan, "origins": 0.0}
    row = per_origin.select(
        pl.col("abs_error").mean().alias("mae"),
        pl.col("pinball").mean(),
        pl.col("coverage").mean(),
        pl.col("p90_abs_error").mean().alias("p90_mae"),
        pl.len().cast(pl.Float64).alias("origins"),
    ).row(0, named=True)
    return {key: float(value) for key, value in row.items()}


def score(
    frame: pl.DataFrame,
    forecaster: Forecaster,
    column: str = "cpu",
    horizon_min: int = 30,
    *,
    warmup: int = DEFAULT_WARMUP,
    every: int = DEFAULT_EVERY,
) -> dict[str, float]:
    """`summarise(backtest(...))`."""
    return summarise(backtest(frame, forecaster, column, horizon_min, warmup=warmup, every=every))
