"""One learned load forecaster for all guests, on the scale-free features of `analytics.features`.

`LoadForecaster` fits two `HistGradientBoostingRegressor`s across all series: one for the mean
of the column over the next `horizon_min` minutes, one (quantile loss at 0.9) for its p90. Both
predict ratios to the recent level L (the features' divisor) and are trained with sample weight
L, so their losses are the backtest's losses in the column's own units (absolute error and
pinball loss are both homogeneous of degree one). The mean model learns the correction to the
last value (`now`, in the same ratio units), the naive forecast that is hardest to beat at
these horizons: trees would otherwise spend most of their splits re-building the identity
`mean ~ now` in steps. The absolute-error minimiser is the same either way (a median shifts
with its data), but on Bitbrains CPU the residual target cut the validation MAE by several
points. The mean model's boosting (300 rounds of up to 63 leaves, at least 200 rows each) was
chosen on time-ordered splits inside the training range; the p90 model keeps the smaller one
(`P90_BOOSTING`), which is calibrated. The p90 model is trained on one realised value
of the window drawn at random per row: the 0.9 quantile of those values is what minimises the
backtest's pinball loss averaged over the window (the 0.9 quantile of the window's p90 would
over-cover).

Series with fewer than `WARMUP` rows get the fallback, EWMA plus trend: mean = EWMA (half-life
30 min) + last-hour slope x (h + 1) / 2 steps (at least 0), p90 = max(mean, last-hour maximum).

The frame may hold the other resource too (`analytics.features.COMPANION`) and the guest's disk
and network throughput (`analytics.features.IO_SOURCES`); the model then uses their movement as
well, and should be given them at prediction time as at training time
(`analytics.features.model_columns` names them).

`predict(frame)` forecasts from the last row of each series; `forecast(frame, column, horizon)`
from every row, with the signature of `analytics.baselines.Forecaster`; `split_forecaster` makes
a backtest forecaster that trains only on rows before a validation start and forecasts only
after it. Persistence and the promotion rule are in `analytics.model_store`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Self

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from analytics.backtest import QUANTILE, horizon_steps
from analytics.baselines import Forecaster
from analytics.features import (
    FEATURES,
    WARMUP,
    build_features,
    model_columns,
    prediction_rows,
    targets,
)

# the feature set and target definitions a fitted model depends on; a saved model of another
# format is refused at load (analytics.model_store)
MODEL_FORMAT = 4
P90_BOOSTING: dict[str, Any] = {"max_iter": 200, "max_leaf_nodes": 31, "min_samples_leaf": 100}
OUTPUT = {"series": pl.String(), "ts": pl.Int64(), "mean": pl.Float64(), "p90": pl.Float64()}


def data_hash(frame: pl.DataFrame) -> str:
    """A SHA-256 of the frame's rows (polars row hashes, fixed seed), for the model metadata."""
    hashes = frame.hash_rows(seed=0).to_numpy()
    return hashlib.sha256(hashes.tobytes()).hexdigest()


class LoadForecaster(BaseEstimator):  # type: ignore[misc]
    """Mean and p90 of `column` over the next `horizon_min` minutes, for every guest at once.

    `max_train_rows` caps the training rows (a seeded random sample of the usable rows); the
    other parameters are the mean model's boosting (the p90 model's is `P90_BOOSTING`, with
    `max_iter` capped at this one's so a small test model stays small). `n_threads` caps the
    boosting's OpenMP threads (None: one per core). It defaults to 1: OpenMP threads wait for
    each other at every step, and on the shared 2-core machine, busy with other work, a
    two-thread fit ran about ten times slower than a one-thread fit.
    """

    def __init__(
        self,
        column: str = "cpu",
        horizon_min: int = 30,
        *,
        loss: str = "absolute_error",
        max_iter: int = 300,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 63,
        min_samples_leaf: int = 200,
        max_train_rows: int = 300_000,
        random_state: int = 0,
        n_threads: int | None = 1,
    ) -> None:
        self.column = column
        self.horizon_min = horizon_min
        self.loss = loss
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.max_train_rows = max_train_rows
        self.random_state = random_state
        self.n_threads = n_threads

    def _booster(self, **params: Any) -> HistGradientBoostingRegressor:
        settings: dict[str, Any] = {
            "max_iter": self.max_iter,
            "learning_rate": self.learning_rate,
            "max_leaf_nodes": self.max_leaf_nodes,
            "min_samples_leaf": self.min_samples_leaf,
            **params,
        }
        return HistGradientBoostingRegressor(
            early_stopping=False, random_state=self.random_state, **settings
        )

    def _threads(self) -> AbstractContextManager[object]:
        if self.n_threads is None:
            return nullcontext()
        return threadpool_limits(limits=self.n_threads, user_api="openmp")  # type: ignore[no-any-return]

    def fit(self, frame: pl.DataFrame, y: None = None) -> Self:
        """Train both models on every usable row of every series (`y` is ignored)."""
        del y
        horizon_steps(self.horizon_min)  # validates the horizon
        rows = (
            build_features(frame, self.column)
            .join(
                targets(frame, self.column, self.horizon_min, seed=self.random_state),
                on=["series", "ts"],
            )
            .filter(
                (pl.col("steps") >= WARMUP)
                & pl.col("now").is_not_null()
                & pl.col("target_mean").is_not_null()
                & pl.col("target_draw").is_not_null()
            )
            .sort("series", "ts")  # a join's row order varies from run to run; the sample must not
            .collect()
        )
        if rows.height == 0:
            raise ValueError(
                f"no training rows: every series needs at least {WARMUP} rows of "
                f"{self.column!r} followed by a {self.horizon_min}-minute window"
            )
        if rows.height > self.max_train_rows:
            rows = rows.sample(self.max_train_rows, seed=self.random_state)
        x = rows.select(FEATURES).to_numpy()
        # a feature without a single value (a frame without the companion resource) cannot be
        # binned; as a constant it is never split on, so prediction ignores it whatever it gets
        x[:, np.isnan(x).all(axis=0)] = 0.0
        weight = rows["level"].to_numpy()
        y_mean = (rows["target_mean"] / rows["level"] - rows["now"]).to_numpy()
        y_draw = (rows["target_draw"] / rows["level"]).to_numpy()
        p90 = {**P90_BOOSTING, "max_iter": min(P90_BOOSTING["max_iter"], self.max_iter)}
        with self._threads():
            self.mean_model_ = self._booster(loss=self.loss).fit(x, y_mean, sample_weight=weight)
            self.p90_model_ = self._booster(loss="quantile", quantile=QUANTILE, **p90).fit(
                x, y_draw, sample_weight=weight
            )
        self.format_ = MODEL_FORMAT
        self.n_features_in_ = len(FEATURES)
        self.feature_names_ = list(FEATURES)
        self.train_window_ = (int(frame["ts"].min()), int(frame["ts"].max()))  # type: ignore[arg-type]
        self.n_series_ = int(frame["series"].n_unique())
        self.n_train_rows_ = rows.height
        self.data_hash_ = data_hash(frame.select(model_columns(frame, self.column)))
        return self

    def _forecast_rows(self, feats: pl.DataFrame) -> pl.DataFrame:
        """`series, ts, mean, p90` from feature rows: the model, or the fallback when short."""
        if not hasattr(self, "mean_model_"):
            raise RuntimeError("this LoadForecaster is not fitted yet; call fit first")
        h = horizon_steps(self.horizon_min)
        lvl = pl.col("level")
        usable = (pl.col("steps") >= WARMUP) & pl.col("now").is_not_null()
        model = np.zeros((feats.height, 2))
        mask = feats.select(usable.fill_null(False)).to_series().to_numpy()
        if mask.any():
            x = feats.filter(mask).select(FEATURES).to_numpy()
            now = feats.filter(mask)["now"].to_numpy()
            with self._threads():
                model[mask, 0] = now + self.mean_model_.predict(x)
                model[mask, 1] = self.p90_model_.predict(x)
        # the slope needs an hour; before that, the change per step over what there is
        trend = pl.coalesce(
            "slope_1h",
            (pl.col("now") - pl.col("lag_3")) / 3,
            pl.col("now") - pl.col("lag_1"),
            pl.lit(0.0),
        )
        fallback_mean = ((pl.col("ewm_6") + trend * ((h + 1) / 2)) * lvl).clip(lower_bound=0.0)
        fallback_p90 = pl.max_horizontal(fallback_mean, pl.col("max_1h") * lvl)
        mean = pl.when(usable).then((pl.col("_m") * lvl).clip(lower_bound=0.0))
        return (
            feats.with_columns(pl.Series("_m", model[:, 0]), pl.Series("_q", model[:, 1]))
            .with_columns(mean.otherwise(fallback_mean).alias("mean"))
            .select(
                "series",
                "ts",
                "mean",
                pl.when(usable)
                .then(pl.max_horizontal(pl.col("_q") * lvl, "mean"))
                .otherwise(fallback_p90)
                .alias("p90"),
            )
            .cast(OUTPUT)  # type: ignore[arg-type]
        )

    def predict(self, frame: pl.DataFrame) -> pl.DataFrame:
        """`series, ts, mean, p90` from the last row of each series (its `ts`)."""
        feats = prediction_rows(frame, self.column).collect()
        twice = feats.filter(pl.col("series").is_duplicated())["series"].unique().sort()
        if twice.len():
            raise ValueError(
                f"predict needs the frame sorted by series, ts; series {twice.head(3).to_list()} "
                "come in several separate runs of rows"
            )
        return self._forecast_rows(feats)

    def forecast(self, frame: pl.DataFrame, column: str, horizon_min: int) -> pl.DataFrame:
        """A forecast from every row, with the baselines' signature (column and horizon must be
        the fitted ones)."""
        if column != self.column or horizon_min != self.horizon_min:
            raise ValueError(
                f"this model forecasts {self.column!r} {self.horizon_min} min ahead, "
                f"not {column!r} {horizon_min} min"
            )
        return self._forecast_rows(build_features(frame, column).collect())


def time_split(frame: pl.DataFrame, fraction: float) -> int:
    """The validation start: `fraction` of the way through the frame's time range, on the grid."""
    first, last = int(frame["ts"].min()), int(frame["ts"].max())  # type: ignore[arg-type]
    return first + int((last - first) * fraction) // 300 * 300


def day_split(frame: pl.DataFrame, fraction: float) -> int:
    """The validation start for day-long series: midnight of the first validation day, the days
    before it (`fraction` of the distinct days, at least one) being for training."""
    days = (frame["ts"] // 86_400).unique().sort().to_list()
    if len(days) < 2:
        raise ValueError("a split by day needs at least two days")
    index = min(max(1, round(len(days) * fraction)), len(days) - 1)
    return int(days[index]) * 86_400


def only_after(forecaster: Forecaster, start_ts: int) -> Forecaster:
    """`forecaster` with its forecasts nulled before `start_ts`, so a backtest scores only the
    validation origins."""

    def forecast(frame: pl.DataFrame, column: str, horizon_min: int) -> pl.DataFrame:
        out = forecaster(frame, column, horizon_min)
        valid = pl.col("ts") >= start_ts
        return out.with_columns(
            pl.when(valid).then("mean").alias("mean"), pl.when(valid).then("p90").alias("p90")
        )

    return forecast


def split_forecaster(
    split: Callable[[pl.DataFrame], int],
    on_fit: Callable[[LoadForecaster, float], None] | None = None,
    **params: Any,
) -> Forecaster:
    """A backtest forecaster: trains a `LoadForecaster(**params)` on the rows before
    `split(frame)` and forecasts from the rows at or after it (null before, so the backtest
    scores only validation origins). `on_fit(model, seconds)` is told of each fit."""

    def forecast(frame: pl.DataFrame, column: str, horizon_min: int) -> pl.DataFrame:
        start_ts = split(frame)
        started = time.perf_counter()
        model = LoadForecaster(column, horizon_min, **params).fit(
            frame.filter(pl.col("ts") < start_ts)
        )
        if on_fit is not None:
            on_fit(model, time.perf_counter() - started)
        return only_after(model.forecast, start_ts)(frame, column, horizon_min)

    return forecast
