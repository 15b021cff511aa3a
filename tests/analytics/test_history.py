"""The frames the forecaster is fed: a gap-free 5-minute grid, and only densely sampled history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from analytics.history import dense_tail, to_grid

T0 = datetime(2026, 1, 1)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_samples_are_averaged_per_five_minutes_and_gaps_carry_the_last_value() -> None:
    raw = pl.DataFrame(
        {
            "vmid": [7, 7, 7, 7],
            "ts": [at(0), at(1), at(5), at(16)],  # nothing in the 10-15 bucket
            "cpu": [0.2, 0.4, 0.5, 0.9],
        }
    )
    grid = to_grid(raw, "vmid", ("cpu",))
    epoch = [int(at(m).replace(tzinfo=UTC).timestamp()) for m in (0, 5, 10, 15)]
    assert grid["ts"].to_list() == epoch
    # (0.2 + 0.4) / 2 = 0.3 for 0-5; 0.5; the 10-15 gap repeats 0.5; then 0.9
    assert grid["cpu"].to_list() == pytest.approx([0.3, 0.5, 0.5, 0.9])
    assert grid["series"].unique().to_list() == ["7"]


def test_training_keeps_each_series_from_its_last_wide_gap_on() -> None:
    coarse = [at(30 * i) for i in range(4)]  # 30-minute points, as PVE keeps for a week
    fine = [at(120 + 5 * i) for i in range(1, 5)]
    other = [at(5 * i) for i in range(3)]
    frame = pl.DataFrame({"vmid": [1] * 8 + [2] * 3, "ts": coarse + fine + other})
    tail = dense_tail(frame, "vmid")
    assert tail.filter(pl.col("vmid") == 1)["ts"].to_list() == fine
    assert tail.filter(pl.col("vmid") == 2).height == 3


def test_a_short_outage_does_not_cut_the_history() -> None:
    frame = pl.DataFrame({"vmid": [1] * 4, "ts": [at(0), at(5), at(20), at(25)]})  # 15 min gap
    assert dense_tail(frame, "vmid").height == 4
