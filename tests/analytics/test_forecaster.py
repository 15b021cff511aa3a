"""The learned forecaster on a small synthetic seasonal data set, its persistence and the
promotion rule."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from analytics.backtest import score
from analytics.baselines import last_value
from analytics.forecaster import MODEL_FORMAT, LoadForecaster, split_forecaster, time_split
from analytics.model_store import (
    METADATA_FILE,
    MODEL_FILE,
    ModelLoadError,
    load,
    promote,
    save,
    versions,
)
from tests.analytics.series import seasonal


@pytest.fixture(scope="module")
def data() -> pl.DataFrame:
    return seasonal()


@pytest.fixture(scope="module")
def model(data: pl.DataFrame) -> LoadForecaster:
    return LoadForecaster(max_iter=60, max_train_rows=20_000).fit(data)


def test_the_model_fits_predicts_and_beats_last_value_on_a_seasonal_data_set(
    data: pl.DataFrame, model: LoadForecaster
) -> None:
    out = model.predict(data)
    assert out.columns == ["series", "ts", "mean", "p90"]
    assert out["series"].to_list() == sorted(data["series"].unique().to_list())
    assert set(out["ts"].to_list()) == {int(data["ts"].max())}  # type: ignore[arg-type]
    assert (out["p90"] >= out["mean"]).all()

    forecaster = split_forecaster(lambda f: time_split(f, 0.5), max_iter=60)
    learned = score(data, forecaster, "cpu", 30)
    naive = score(data.filter(pl.col("ts") >= time_split(data, 0.5)), last_value, "cpu", 30)
    assert learned["mae"] < 0.9 * naive["mae"]
    assert learned["pinball"] < naive["pinball"]
    assert 0.8 < learned["coverage"] < 0.97


def test_the_same_data_trains_the_same_model_even_when_rows_are_sampled(
    data: pl.DataFrame,
) -> None:
    fits = [LoadForecaster(max_iter=20, max_train_rows=3_000).fit(data) for _ in range(3)]
    first, *rest = (m.predict(data) for m in fits)
    for other in rest:
        assert_frame_equal(first, other)


@pytest.mark.parametrize("has_column", [True, False], ids=["mem all missing", "no mem column"])
def test_a_model_trains_and_predicts_without_the_other_resource(
    data: pl.DataFrame, has_column: bool
) -> None:
    alone = data.with_columns(pl.lit(None, dtype=pl.Float64).alias("mem"))
    if not has_column:
        alone = alone.drop("mem")
    cpu_only = LoadForecaster(max_iter=20, max_train_rows=3_000).fit(alone)
    out = cpu_only.predict(alone)
    assert out.height == data["series"].n_unique()
    assert out.select(pl.col("mean", "p90").is_finite().all()).row(0) == (True, True)
    # it never learnt from memory, so memory given at prediction time changes nothing
    assert_frame_equal(cpu_only.predict(data), out)


def test_a_frame_not_sorted_by_series_is_refused_rather_than_mispredicted(
    data: pl.DataFrame, model: LoadForecaster
) -> None:
    with pytest.raises(ValueError, match=r"sorted by series, ts; series \['vm0', 'vm1', 'vm2'\]"):
        model.predict(data.sort("ts", "series"))


def test_short_history_series_get_the_fallback(model: LoadForecaster) -> None:
    # five rows: fewer than the one-hour warm-up; EWMA plus trend, p90 >= the last hour's max
    short = pl.DataFrame(
        {"series": ["new"] * 5, "ts": [0, 300, 600, 900, 1200], "cpu": [0.1, 0.2, 0.3, 0.4, 0.5]},
        schema={"series": pl.String, "ts": pl.Int64, "cpu": pl.Float64},
    )
    row = model.predict(short).row(0, named=True)
    assert row["ts"] == 1200
    assert row["mean"] > 0.3  # a rising trend is carried forward, above the plain EWMA
    assert row["p90"] >= row["mean"]
    assert row["p90"] >= 0.5 - 1e-9
    single = model.predict(short.head(1)).row(0, named=True)
    assert single["mean"] == pytest.approx(0.1)
    assert single["p90"] == pytest.approx(0.1)


def test_a_saved_and_loaded_model_round_trips_its_predictions(
    data: pl.DataFrame, model: LoadForecaster, tmp_path: Path
) -> None:
    directory = save(model, tmp_path, validation_scores={"mae": 0.01, "pinball": 0.005})
    loaded = load(directory)
    assert_frame_equal(loaded.predict(data), model.predict(data))
    metadata = json.loads((directory / METADATA_FILE).read_text())
    assert metadata["horizon_min"] == 30
    assert metadata["validation_scores"] == {"mae": 0.01, "pinball": 0.005}
    assert set(metadata["versions"]) >= {"python", "numpy", "polars", "scikit-learn"}
    assert metadata["data_hash"] == model.data_hash_


def edit_metadata(directory: Path, change: Callable[[dict[str, Any]], object]) -> None:
    """Change a saved model's metadata file in place, as another version would have written it."""
    path = directory / METADATA_FILE
    metadata = json.loads(path.read_text())
    change(metadata)
    path.write_text(json.dumps(metadata))


def test_only_the_last_models_are_kept(model: LoadForecaster, tmp_path: Path) -> None:
    made = [save(model, tmp_path, keep=2) for _ in range(3)]
    assert versions(tmp_path) == made[1:]


def test_a_model_whose_metadata_says_another_sklearn_version_is_refused(
    model: LoadForecaster, tmp_path: Path
) -> None:
    directory = save(model, tmp_path)
    edit_metadata(directory, lambda m: m["versions"].update({"scikit-learn": "0.24.2"}))
    with pytest.raises(ModelLoadError, match=r"model\.skops.*scikit-learn 0\.24\.2 \(running"):
        load(directory)


def test_a_model_saved_in_an_older_format_is_refused_because_its_features_differ(
    model: LoadForecaster, tmp_path: Path
) -> None:
    directory = save(model, tmp_path)
    assert json.loads((directory / METADATA_FILE).read_text())["format"] == MODEL_FORMAT
    edit_metadata(directory, lambda m: m.update({"format": MODEL_FORMAT - 1}))
    with pytest.raises(ModelLoadError, match=rf"model format {MODEL_FORMAT - 1}.*retrain"):
        load(directory)


def test_a_corrupted_model_file_is_refused_not_loaded(
    model: LoadForecaster, tmp_path: Path
) -> None:
    directory = save(model, tmp_path)
    path = directory / MODEL_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match=r"model\.skops.*corrupted or was modified"):
        load(directory)


def test_a_truncated_model_file_with_a_matching_hash_still_raises(
    model: LoadForecaster, tmp_path: Path
) -> None:
    directory = save(model, tmp_path)
    path = directory / MODEL_FILE
    path.write_bytes(path.read_bytes()[:1000])
    meta = directory / METADATA_FILE
    metadata = json.loads(meta.read_text())
    import hashlib

    metadata["model_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    meta.write_text(json.dumps(metadata))
    with pytest.raises(ModelLoadError, match=r"model\.skops: not a readable skops model"):
        load(directory)


BASE = {"last value": {"mae": 0.010, "pinball": 0.0040}, "EWMA": {"mae": 0.012, "pinball": 0.0041}}


@pytest.mark.parametrize(
    ("candidate", "current", "expected"),
    [
        ({"mae": 0.008, "pinball": 0.0035}, None, True),  # beats the baselines, no current model
        ({"mae": 0.008, "pinball": 0.0035}, {"mae": 0.009, "pinball": 0.0036}, True),
        ({"mae": 0.008, "pinball": 0.0035}, {"mae": 0.007, "pinball": 0.0030}, False),  # current
        ({"mae": 0.011, "pinball": 0.0035}, None, False),  # worse MAE than last value
        ({"mae": 0.008, "pinball": 0.0040}, None, False),  # a tie on pinball is not a win
        ({"mae": float("nan"), "pinball": 0.0035}, None, False),  # no score, no promotion
        ({"mae": 0.008}, None, False),  # a missing metric never wins
    ],
)
def test_promotion_rule(
    candidate: dict[str, float], current: dict[str, float] | None, expected: bool
) -> None:
    assert promote(candidate, current, BASE) is expected


def test_promotion_needs_baselines_to_compare_with() -> None:
    assert promote({"mae": 0.001, "pinball": 0.001}, None, {}) is False
