"""Scale-free forecasting features over a long trace frame (`series, ts, <column>` and maybe
the column's companion and the guest's disk and network throughput), lazily.

One builder serves training and prediction: `build_features` is the only place features are
defined, `prediction_rows` merely cuts each series to its recent tail first (every feature looks
back at most `LONG` steps, plus an EWMA whose weight beyond `TAIL` steps is below 1e-14), so a
row gets the same features whichever way it is computed.

Every feature of the column itself but one is relative to the recent level L = mean of the
last hour + `EPS` (or a difference of such ratios), clipped to +-`CLIP`, so multiplying a series
by a constant leaves those features unchanged and one model serves guests of every size; the
calendar features (time of day, day of week, as sin/cos of epoch seconds) and the history length
are scale-free by nature. The exception, `log_now` = ln(x + `EPS`), places the series on the
column's absolute scale: for a busy fraction, how close it runs to idle or to saturation, where
it behaves differently (on Bitbrains CPU it cut the validation MAE by about 2 points of the best
naive baseline's). `SCALED` lists it. Quantiles and the minimum of the recent windows describe their
shape beyond mean, max and spread (about half a point more on two validation splits).

The other resource of the same guest (`COMPANION`: memory for CPU, CPU for memory) adds a few
features of its own, relative to its own recent level: where it stands, how it moved over the
last 5 to 60 minutes, its spread and its 6-hour mean. Memory filling or draining often comes
with a change of CPU (a job loading its data, a cache being dropped): on Bitbrains CPU they cut
the validation MAE by about 1.3 points of the best naive baseline's on two splits (CPU's, on
memory, by about 3). They are ratios, so memory in bytes (the store) or as a fraction (the
traces) gives the same values. Where the companion is missing they are null, which the boosting
treats as missing; a training frame without it at all gives a model that ignores them
(`analytics.forecaster`).

Disk and network throughput (`IO_SOURCES`, bytes/s: read plus written, received plus
transmitted) add where each stands against its own last hour, its change over 5 and 30 minutes
and its spread (`IO_FEATURES`), divided by the hour's mean plus `IO_EPS` so an idle disk's
trickle does not read as a surge. A batch job starting or ending shows in its I/O as in its CPU,
often a step earlier (reading its input, writing its results): on Bitbrains CPU they cut the
validation MAE by about 1.5 points of the best naive baseline's on two splits. Like the
companion's, they are null where the frame lacks them.

`targets` gives, per row, what the two models learn, with the definitions of
`analytics.backtest`: the mean of the next h = H / 5 values, and one of those values drawn at
random (`target_draw`), whose 0.9 quantile is what minimises the backtest's pinball loss
averaged over the window.

The input must be sorted by `series, ts` on the regular 5-minute grid, as the loaders return it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import polars as pl

from analytics.backtest import horizon_steps, window_mean

EPS = 1e-6  # added to the level so an idle series divides by something
CLIP = 100.0  # ratio features are clipped to +-CLIP
HOUR = 12  # steps in an hour
LONG = 72  # steps in six hours, the longest window
WARMUP = HOUR  # rows a series needs before the model (not the fallback) forecasts for it
TAIL = 288  # rows per series kept at prediction time (one day, >= LONG and EWMA-safe)
LAGS = (1, 2, 3, 6, 12)
EWM_HALF_LIVES = (2, 6)  # steps: 10 and 30 minutes
OTHER_DIFFS = (1, 3, 6, 12)  # steps over which the companion's change is a feature
IO_SOURCES = ("disk", "net")  # throughputs in bytes/s, optional sources of features
IO_DIFFS = (1, 6)  # steps over which a throughput's change is a feature
IO_EPS = 1024.0  # bytes/s added to a throughput's level: 1 KiB/s counts as idle
DAY = 86_400
WEEK = 7 * DAY


def _movement_names(prefix: str, diffs: Sequence[int]) -> tuple[str, ...]:
    """The names `_movement` gives its features."""
    return (f"{prefix}_now", *(f"{prefix}_diff_{k}" for k in diffs), f"{prefix}_std_1h")


# the companion's features and the throughputs' (see the module docstring), the last of
# `FEATURES`
OTHER_FEATURES: tuple[str, ...] = (*_movement_names("other", OTHER_DIFFS), "other_mean_6h")
IO_FEATURES: tuple[str, ...] = tuple(n for r in IO_SOURCES for n in _movement_names(r, IO_DIFFS))

FEATURES: tuple[str, ...] = (
    "history",
    "now",
    *(f"lag_{k}" for k in LAGS),
    "max_1h",
    "min_1h",
    "std_1h",
    "q25_1h",
    "q75_1h",
    "mean_6h",
    "max_6h",
    "std_6h",
    "q10_6h",
    "q90_6h",
    *(f"ewm_{k}" for k in EWM_HALF_LIVES),
    "slope_1h",
    "tod_sin",
    "tod_cos",
    "dow_sin",
    "dow_cos",
    "log_now",
    *OTHER_FEATURES,
    *IO_FEATURES,
)
SCALED: tuple[str, ...] = ("log_now",)  # the features that are not scale-free
COMPANION = {"cpu": "mem", "mem": "cpu"}  # the other resource of a guest, a source of features


def companion_in(frame: pl.DataFrame | pl.LazyFrame, column: str) -> str | None:
    """The column's companion if the frame has that column, else None."""
    other = COMPANION.get(column)
    return other if other in _lazy(frame).collect_schema().names() else None


def io_in(frame: pl.DataFrame | pl.LazyFrame) -> list[str]:
    """The `IO_SOURCES` the frame has."""
    names = _lazy(frame).collect_schema().names()
    return [r for r in IO_SOURCES if r in names]


def model_columns(frame: pl.DataFrame | pl.LazyFrame, column: str) -> list[str]:
    """`series, ts`, the column, its companion and the throughputs the frame has: what a model
    reads."""
    other = companion_in(frame, column)
    return ["series", "ts", column, *([other] if other else []), *io_in(frame)]


def _lazy(frame: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    return frame.lazy() if isinstance(frame, pl.DataFrame) else frame


def _against_own_hour(v: pl.Expr, eps: float) -> Callable[[pl.Expr], pl.Expr]:
    """A ratio to `v`'s own last-hour mean plus `eps`, per series, clipped to +-`CLIP`."""
    hour = v.rolling_mean(HOUR, min_samples=1) + eps
    return lambda expr: (expr / hour).over("series").clip(-CLIP, CLIP)


def _movement(source: str, prefix: str, eps: float, diffs: Sequence[int]) -> list[pl.Expr]:
    """Where another series of the guest stands against its own last hour, how it moved over
    `diffs` steps and its spread: the features the companion and the throughputs share."""
    v = pl.col(source)
    ratio = _against_own_hour(v, eps)
    return [
        ratio(v).alias(f"{prefix}_now"),
        *(ratio(v - v.shift(k)).alias(f"{prefix}_diff_{k}") for k in diffs),
        ratio(v.rolling_std(HOUR, min_samples=2)).alias(f"{prefix}_std_1h"),
    ]


def _optional(name: str | None, alias: str) -> pl.Expr:
    """Column `name` as floats under `alias`, or nulls when the frame lacks it (None)."""
    source = pl.lit(None, pl.Float64) if name is None else pl.col(name).cast(pl.Float64)
    return source.alias(alias)


def _ewm(x: pl.Expr, half_life: int) -> pl.Expr:
    return x.ewm_mean(half_life=half_life, adjust=True)


def level(column: str) -> pl.Expr:
    """The recent level every feature is relative to: the last hour's mean plus `EPS`."""
    return pl.col(column).rolling_mean(HOUR, min_samples=1).over("series") + EPS


def build_features(frame: pl.DataFrame | pl.LazyFrame, column: str) -> pl.LazyFrame:
    """`series, ts, steps, level` and the `FEATURES`, one row per input row.

    `steps` is the number of rows of the series seen so far (this one included) and `level` the
    divisor of the ratios; neither is a model input. Windows are partial at the start of a series
    (`history` tells the model how much it has seen); lags before the start are null.
    """
    x = pl.col(column)
    lvl = pl.col("level")

    def ratio(expr: pl.Expr) -> pl.Expr:
        return (expr / lvl).clip(-CLIP, CLIP)

    def per_series(expr: pl.Expr) -> pl.Expr:
        return expr.over("series")

    mean_30 = x.rolling_mean(HOUR // 2, min_samples=1)
    o = pl.col("_other")
    present = io_in(frame)

    phase_day = (pl.col("ts") % DAY).cast(pl.Float64) * (2 * math.pi / DAY)
    phase_week = (pl.col("ts") % WEEK).cast(pl.Float64) * (2 * math.pi / WEEK)
    steps = pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("series")
    return (
        _lazy(frame)
        .select(
            "series",
            "ts",
            x,
            _optional(companion_in(frame, column), "_other"),
            *(_optional(r if r in present else None, f"_{r}") for r in IO_SOURCES),
            steps.alias("steps"),
            level(column).alias("level"),
        )
        .select(
            "series",
            "ts",
            "steps",
            "level",
            (pl.col("steps").clip(upper_bound=LONG) / LONG).alias("history"),
            ratio(x).alias("now"),
            *(ratio(per_series(x.shift(k))).alias(f"lag_{k}") for k in LAGS),
            ratio(per_series(x.rolling_max(HOUR, min_samples=1))).alias("max_1h"),
            ratio(per_series(x.rolling_min(HOUR, min_samples=1))).alias("min_1h"),
            ratio(per_series(x.rolling_std(HOUR, min_samples=2))).alias("std_1h"),
            *(
                ratio(per_series(x.rolling_quantile(q, "linear", HOUR, min_samples=1))).alias(
                    f"q{round(100 * q)}_1h"
                )
                for q in (0.25, 0.75)
            ),
            ratio(per_series(x.rolling_mean(LONG, min_samples=1))).alias("mean_6h"),
            ratio(per_series(x.rolling_max(LONG, min_samples=1))).alias("max_6h"),
            ratio(per_series(x.rolling_std(LONG, min_samples=2))).alias("std_6h"),
            *(
                ratio(per_series(x.rolling_quantile(q, "linear", LONG, min_samples=1))).alias(
                    f"q{round(100 * q)}_6h"
                )
                for q in (0.1, 0.9)
            ),
            *(ratio(per_series(_ewm(x, k))).alias(f"ewm_{k}") for k in EWM_HALF_LIVES),
            # the last half hour's mean minus the one before, per step, relative to the level
            ratio(per_series((mean_30 - mean_30.shift(HOUR // 2)) / (HOUR // 2))).alias("slope_1h"),
            phase_day.sin().alias("tod_sin"),
            phase_day.cos().alias("tod_cos"),
            phase_week.sin().alias("dow_sin"),
            phase_week.cos().alias("dow_cos"),
            (x + EPS).log().alias("log_now"),
            *_movement("_other", "other", EPS, OTHER_DIFFS),
            _against_own_hour(o, EPS)(o.rolling_mean(LONG, min_samples=1)).alias("other_mean_6h"),
            *(e for r in IO_SOURCES for e in _movement(f"_{r}", r, IO_EPS, IO_DIFFS)),
        )
    )


def prediction_rows(frame: pl.DataFrame | pl.LazyFrame, column: str) -> pl.LazyFrame:
    """The features of the last row of each series (sorted by series), computed from its last
    `TAIL` rows only.

    `steps` and `history` count the whole series, as `build_features` on all rows does. Only
    the EWMAs need all `TAIL` rows: every other feature looks back at most `LONG` steps, so
    `build_features` runs on the last `LONG` rows and the EWMAs are aggregated over the tail.
    Series are partitioned by the number of their run of rows (the input is sorted by series)
    rather than by name, which costs a fraction of hashing strings; names return at the end.
    A series split over several runs (unsorted input) comes out as several rows.
    """
    x = pl.col(column)
    kept = model_columns(frame, column)[2:]  # the column and the other series the frame has
    runs = _lazy(frame).select(pl.col("series").rle_id().alias("_run"), "series", "ts", *kept)
    names = runs.group_by("_run").agg(
        pl.col("series").first(), pl.len().cast(pl.Int64).alias("_len")
    )
    keyed = runs.select(pl.col("_run").alias("series"), "ts", *kept)
    tail = keyed.group_by("series", maintain_order=True).tail(TAIL)
    ewms = tail.group_by("series").agg(_ewm(x, k).last().alias(f"_ewm_{k}") for k in EWM_HALF_LIVES)
    short = tail.group_by("series", maintain_order=True).tail(LONG)
    last = build_features(short, column).group_by("series", maintain_order=True).last()
    return (
        last.join(ewms, on="series", how="left")
        .join(names.rename({"series": "_name", "_run": "series"}), on="series", how="left")
        .with_columns(
            pl.col("_name").alias("series"),
            pl.col("_len").alias("steps"),
            (pl.col("_len").clip(upper_bound=LONG) / LONG).alias("history"),
            *(
                (pl.col(f"_ewm_{k}") / pl.col("level")).clip(-CLIP, CLIP).alias(f"ewm_{k}")
                for k in EWM_HALF_LIVES
            ),
        )
        .drop("_name", "_len", *(f"_ewm_{k}" for k in EWM_HALF_LIVES))
        .sort("series")
    )


def targets(
    frame: pl.DataFrame | pl.LazyFrame, column: str, horizon_min: int, *, seed: int = 0
) -> pl.LazyFrame:
    """`series, ts, target_mean, target_draw` for the next `horizon_min` minutes.

    `target_mean` is the backtest's mean of x_{t+1}..x_{t+h}; `target_draw` is x_{t+j} for j
    drawn uniformly from 1..h (seeded). Null when the window runs past the end of the series.
    """
    h = horizon_steps(horizon_min)
    lazy = _lazy(frame)
    x = pl.col(column)
    n_rows = lazy.select(pl.len()).collect().item()
    draws = pl.Series("_j", np.random.default_rng(seed).integers(1, h + 1, size=n_rows))
    draw = pl.coalesce(
        pl.when(pl.col("_j") == j).then(x.shift(-j).over("series")) for j in range(1, h + 1)
    )
    return (
        lazy.select("series", "ts", x)
        .with_columns(draws)
        .select("series", "ts", window_mean(x, h).alias("target_mean"), draw.alias("target_draw"))
    )
