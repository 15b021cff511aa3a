"""The scale-free feature builder and the forecast targets, on small synthetic series."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from analytics.backtest import backtest
from analytics.baselines import last_value
from analytics.features import (
    FEATURES,
    IO_FEATURES,
    LONG,
    OTHER_FEATURES,
    SCALED,
    TAIL,
    build_features,
    model_columns,
    prediction_rows,
    targets,
)

SCHEMA = {
    "series": pl.String,
    "ts": pl.Int64,
    "cpu": pl.Float64,
    "mem": pl.Float64,
    "disk": pl.Float64,
    "net": pl.Float64,
}


def noisy(n: int = 400, seed: int = 0, names: tuple[str, ...] = ("a", "b")) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for name in names:
        t = np.arange(n)
        x = np.clip(0.3 + 0.2 * np.sin(2 * np.pi * t / 288) + 0.05 * rng.standard_normal(n), 0, 1)
        io = {"disk": 4e6 * x * rng.uniform(0.5, 1.5, n), "net": 1e7 * (1.2 - x)}  # bytes/s
        parts.append(
            pl.DataFrame(
                {"series": [name] * n, "ts": 300 * t, "cpu": x, "mem": x / 2, **io}, schema=SCHEMA
            )
        )
    return pl.concat(parts)


def test_features_are_identical_whether_computed_for_training_or_prediction() -> None:
    frame = noisy(n=TAIL + 150)
    training = build_features(frame, "cpu").collect().group_by("series").last().sort("series")
    prediction = prediction_rows(frame, "cpu").collect()
    assert_frame_equal(
        training.select("series", "ts", "steps", *FEATURES),
        prediction.select("series", "ts", "steps", *FEATURES),
        rel_tol=1e-9,
        abs_tol=1e-12,
    )


def test_prediction_features_match_for_series_shorter_than_the_windows() -> None:
    frame = pl.concat(
        [
            noisy(n=20, names=("short",)),  # under LONG rows
            noisy(n=LONG + 30, names=("medium",)),  # under TAIL rows
            noisy(n=TAIL + 40, names=("long",)),
        ]
    )
    training = build_features(frame, "cpu").collect().group_by("series").last().sort("series")
    prediction = prediction_rows(frame, "cpu").collect()
    assert_frame_equal(
        training.select("series", "ts", "steps", "level", *FEATURES),
        prediction.select("series", "ts", "steps", "level", *FEATURES),
        rel_tol=1e-9,
        abs_tol=1e-12,
    )


def test_features_are_scale_free_but_the_one_that_places_the_absolute_level() -> None:
    frame = noisy()
    scaled = frame.with_columns(pl.col("cpu") * 10)
    free = [f for f in FEATURES if f not in SCALED]
    plain = build_features(frame, "cpu").collect()
    tenfold = build_features(scaled, "cpu").collect()
    assert_frame_equal(plain.select(free), tenfold.select(free), rel_tol=1e-4, abs_tol=1e-6)
    busy = (frame["cpu"] > 0.01).to_numpy()  # EPS is negligible there
    shift = (tenfold["log_now"] - plain["log_now"]).to_numpy()[busy]
    assert busy.sum() > 100 and np.allclose(shift, np.log(10), atol=1e-3)


def test_the_other_resource_gives_the_same_features_in_bytes_as_in_fractions() -> None:
    frame = noisy()
    in_bytes = frame.with_columns(pl.col("mem") * 8 * 2**30)  # an 8 GiB guest, as the store has it
    companion = list(OTHER_FEATURES)
    plain = build_features(frame, "cpu").collect()
    assert companion and plain.tail(100).select(companion).null_count().sum_horizontal().item() == 0
    assert_frame_equal(
        plain.select(companion),
        build_features(in_bytes, "cpu").collect().select(companion),
        rel_tol=1e-4,
        abs_tol=1e-6,
    )


def test_without_the_other_resource_its_features_are_missing_and_the_rest_unchanged() -> None:
    frame = noisy()
    companion = list(OTHER_FEATURES)
    alone = build_features(frame.drop("mem"), "cpu").collect()
    both = build_features(frame, "cpu").collect()
    assert alone.select(pl.col(companion).is_null().all()).row(0) == (True,) * len(companion)
    own = [f for f in FEATURES if f not in companion]
    assert_frame_equal(alone.select(own), both.select(own))
    assert model_columns(frame, "cpu") == ["series", "ts", "cpu", "mem", "disk", "net"]
    assert model_columns(frame, "mem") == ["series", "ts", "mem", "cpu", "disk", "net"]
    assert model_columns(frame.drop("mem"), "cpu") == ["series", "ts", "cpu", "disk", "net"]


def test_throughput_features_are_relative_to_their_own_level_and_missing_without_them() -> None:
    frame = noisy()
    plain = build_features(frame, "cpu").collect()
    assert plain.tail(100).select(IO_FEATURES).null_count().sum_horizontal().item() == 0
    # a thousand times busier, the same features: only the idle allowance differs, which a busy
    # disk barely feels
    busier = build_features(frame.with_columns(pl.col("disk", "net") * 1000), "cpu").collect()
    assert_frame_equal(
        plain.select(IO_FEATURES), busier.select(IO_FEATURES), rel_tol=1e-2, abs_tol=1e-3
    )
    without = build_features(frame.drop("disk", "net"), "cpu").collect()
    assert without.select(pl.col(IO_FEATURES).is_null().all()).row(0) == (True,) * len(IO_FEATURES)
    own = [f for f in FEATURES if f not in IO_FEATURES]
    assert_frame_equal(without.select(own), plain.select(own))
    assert model_columns(frame.drop("net"), "cpu") == ["series", "ts", "cpu", "mem", "disk"]


def test_targets_use_the_backtest_definitions() -> None:
    frame = noisy(n=100)
    mine = targets(frame, "cpu", 30).collect()
    scored = backtest(frame, last_value, "cpu", 30, warmup=1).select("series", "ts", "target_mean")
    joined = scored.join(mine, on=["series", "ts"], suffix="_mine")
    assert joined.height == scored.height
    assert joined["target_mean"].to_list() == pytest.approx(joined["target_mean_mine"].to_list())
    # the drawn value is one of the next six
    x = frame.filter(pl.col("series") == "a")["cpu"].to_list()
    draws = mine.filter(pl.col("series") == "a")["target_draw"].to_list()
    for t in range(len(x) - 6):
        assert draws[t] in x[t + 1 : t + 7]
    assert draws[-1] is None
