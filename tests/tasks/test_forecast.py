"""Training one forecaster the way the train flow does: split, score, promote or keep."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from analytics.model_store import versions
from tasks.forecast import model_root, train_one
from tests.analytics.series import seasonal


def test_an_hour_of_history_is_too_little_to_train_and_nothing_is_saved(tmp_path: Path) -> None:
    hour = seasonal(n_series=8, days=1).filter(pl.col("ts") < 3600)
    result = train_one(hour, tmp_path, "cpu", 30, keep=3)
    assert not result.promoted and result.path is None
    assert "too little history" in result.detail
    assert versions(model_root(tmp_path, "cpu", 30)) == []


def test_a_model_that_beats_the_baselines_is_saved_and_the_next_run_must_beat_it(
    tmp_path: Path,
) -> None:
    data = seasonal(n_series=8, days=4)
    first = train_one(data, tmp_path, "cpu", 30, keep=3)
    assert first.promoted and first.current is None, first.detail
    best_naive = min(s["mae"] for s in first.baselines.values())
    assert first.scores["mae"] < best_naive
    assert versions(model_root(tmp_path, "cpu", 30)) == [Path(str(first.path))]
    # the same data trains the same model: it does not beat itself, so the first one stays
    again = train_one(data, tmp_path, "cpu", 30, keep=3)
    assert again.current == first.scores and not again.promoted
    assert "kept the current model" in again.detail
    assert versions(model_root(tmp_path, "cpu", 30)) == [Path(str(first.path))]
