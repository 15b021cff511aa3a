"""Capacity maths: headroom, days until exhaustion, N+1 and imbalance over time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pytest

from analytics.capacity import (
    CLUSTER,
    days_until_exhausted,
    fit_exhaustion,
    headroom,
    imbalance_over_time,
    largest_node,
    n_plus_one,
)
from engine import ClusterSnapshot, Policy
from engine.plan import Reason
from tests.engine.builders import GIB, gib, guest, node

T0 = datetime(2026, 1, 1)


def row(frame: pl.DataFrame, name: str) -> dict[str, Any]:
    return frame.filter(pl.col("node") == name).row(0, named=True)


# --- headroom --------------------------------------------------------------------------------


def test_headroom_subtracts_usage_and_reserve_per_node_and_sums_the_cluster() -> None:
    nodes = pl.DataFrame(
        {"node": ["a", "b"], "cpus": [16, 8], "memory": [64 * GIB, 32 * GIB], "reserve": [None, 0]}
    )
    # two guests on a now (3 + 1 cores, 10 + 6 GiB); b idle now
    now = pl.DataFrame({"node": ["a", "a"], "cpu": [3.0, 1.0], "mem": [10 * GIB, 6 * GIB]})
    later = pl.DataFrame({"node": ["a", "b"], "cpu": [6.0, 10.0], "mem": [20 * GIB, 4 * GIB]})
    out = headroom(nodes, now, later, default_reserve=2 * GIB)

    a = row(out, "a")
    assert a["cpu_free_now"] == 12.0  # 16 - (3 + 1)
    assert a["mem_free_now"] == 46 * GIB  # 64 - 2 reserve - (10 + 6)
    assert a["cpu_free_horizon"] == 10.0  # 16 - 6
    assert a["mem_free_horizon"] == 42 * GIB  # 64 - 2 - 20
    b = row(out, "b")
    assert b["cpu_free_now"] == 8.0  # absent from `now`: idle
    assert b["mem_free_now"] == 32 * GIB  # reserve 0
    assert b["cpu_free_horizon"] == -2.0  # 8 - 10: over capacity shows as negative
    assert b["mem_free_horizon"] == 28 * GIB  # 32 - 0 - 4
    cluster = row(out, CLUSTER)
    assert cluster["cpu_free_now"] == 20.0  # 12 + 8
    assert cluster["mem_free_horizon"] == 70 * GIB  # 42 + 28
    assert out["node"].to_list() == ["a", "b", CLUSTER]


def test_headroom_with_no_loads_is_capacity_minus_reserve() -> None:
    nodes = pl.DataFrame({"node": ["a"], "cpus": [4], "memory": [8 * GIB]})
    empty = pl.DataFrame({"node": [], "cpu": [], "mem": []})
    a = row(headroom(nodes, empty, empty), "a")
    assert a["cpu_free_horizon"] == 4.0
    assert a["mem_free_now"] == 6 * GIB  # 8 - the policy's default 2 GiB reserve


# --- days until exhausted --------------------------------------------------------------------


def linear_history(per_day: dict[str, tuple[float, float]], days: int) -> pl.DataFrame:
    """Hourly samples; each node's daily peak is `start + slope·day` (the hour-23 sample),
    earlier hours of the day are lower."""
    rows = []
    for name, (start, slope) in per_day.items():
        for d in range(days):
            for h in range(24):
                peak = start + slope * d
                rows.append((name, T0 + timedelta(days=d, hours=h), peak - (23 - h) * 0.01))
    return pl.DataFrame(rows, schema=["node", "ts", "mem"], orient="row")


def test_days_until_exhausted_on_a_linear_trend_is_the_analytic_answer() -> None:
    # a: peak 40 + 2·day over 10 days; last day (9) at 58, capacity 100 → (100 - 58) / 2 = 21
    # b: peak 10 + 1·day; last day at 19, capacity 50 → (50 - 19) / 1 = 31
    history = linear_history({"a": (40.0, 2.0), "b": (10.0, 1.0)}, days=10)
    out = days_until_exhausted(history, {"a": 100.0, "b": 50.0}, "mem")

    a = row(out, "a")
    assert a["days"] == pytest.approx(21.0)
    assert a["slope_per_day"] == pytest.approx(2.0)
    assert a["days_pessimistic"] <= 21.0 + 1e-6 <= a["days_optimistic"] + 2e-6
    assert row(out, "b")["days"] == pytest.approx(31.0)
    # cluster: same hours summed, peak 50 + 3·day, last 77, capacity 150 → (150 - 77) / 3
    assert row(out, CLUSTER)["days"] == pytest.approx(73 / 3)


def test_the_band_of_a_noisy_linear_trend_contains_the_true_answer() -> None:
    rng = np.random.default_rng(7)
    x = np.arange(30, dtype=np.float64)
    y = 100.0 + 5.0 * x + rng.normal(0.0, 3.0, x.size)
    fit = fit_exhaustion(x, y, capacity=500.0)
    # truth: level on day 29 is 100 + 5·29 = 245, (500 - 245) / 5 = 51 days
    assert fit is not None
    assert fit.pessimistic <= 51.0 <= fit.optimistic
    assert fit.pessimistic < fit.days < fit.optimistic


def test_a_flat_trend_never_runs_out() -> None:
    history = linear_history({"a": (40.0, 0.0)}, days=10)
    out = days_until_exhausted(history, 100.0, "mem")
    assert row(out, "a")["days"] is None
    assert row(out, CLUSTER)["days"] is None
    assert fit_exhaustion([0, 1, 2, 3], [5.0, 4.0, 3.0, 2.0], 10.0) is None  # falling
    assert fit_exhaustion([0, 1], [1.0, 2.0], 10.0) is None  # two days: no standard error


def test_usage_already_above_capacity_has_zero_days_left() -> None:
    fit = fit_exhaustion([0, 1, 2, 3], [8.0, 9.0, 10.0, 11.0], 10.0)
    assert fit is not None and fit.days == 0.0


# --- N+1 -------------------------------------------------------------------------------------


def test_n_plus_one_holds_on_a_roomy_cluster() -> None:
    snap = ClusterSnapshot(
        (node("big", 32, 128), node("s1", 16, 64), node("s2", 16, 64)),
        (guest(1, "big", 1, 8), guest(2, "big", 1, 8), guest(3, "s1", 1, 8)),
    )
    verdict = n_plus_one(snap, Policy())
    assert verdict.node == "big"  # most memory
    assert verdict.survivable and verdict.stranded == ()
    loads = verdict.loads.filter(pl.col("node") != "big")
    # all three guests (8 GiB each) now on s1 and s2: 24 GiB in total
    assert loads["mem"].sum() == pytest.approx(gib(24))
    assert not verdict.loads.filter(pl.col("node") == "big")["eligible"].item()


def test_n_plus_one_fails_and_names_the_guests_that_cannot_fit() -> None:
    # big holds a 60 GiB guest; each small node has 64 - 2 reserve - 8 used = 54 GiB free
    snap = ClusterSnapshot(
        (node("big", 32, 128), node("s1", 16, 64), node("s2", 16, 64)),
        (
            guest(1, "big", 1, 60, name="db"),
            guest(2, "big", 1, 4, name="web"),
            guest(3, "s1", 1, 8),
            guest(4, "s2", 1, 8),
        ),
    )
    verdict = n_plus_one(snap, Policy())
    assert verdict.node == "big"
    assert not verdict.survivable
    assert [(s.vmid, s.name, s.reason) for s in verdict.stranded] == [(1, "db", Reason.NO_TARGET)]
    assert verdict.stranded[0].detail  # a human reason


def test_the_largest_node_is_chosen_by_memory_then_cpus() -> None:
    snap = ClusterSnapshot((node("a", 16, 64), node("b", 32, 64), node("c", 64, 32)), ())
    assert largest_node(snap) == "b"  # a and b tie on 64 GiB, b has more CPUs


# --- imbalance over time ---------------------------------------------------------------------


def test_imbalance_over_time_is_the_mad_of_weighted_node_loads() -> None:
    t1, t2 = T0, T0 + timedelta(minutes=1)
    history = pl.DataFrame(
        {
            "node": ["a", "b", "a", "b", "c"],
            "ts": [t1, t1, t2, t2, t2],
            "cpu": [0.8, 0.2, 0.5, 0.5, 0.9],
            "mem": [60, 20, 50, 50, 90],
            "maxmem": [100, 100, 100, 100, 100],
            "online": [True, True, True, True, False],
        }
    )
    out = imbalance_over_time(history, (1.0, 1.0))
    # t1: a = 0.5·0.8 + 0.5·0.6 = 0.7, b = 0.5·0.2 + 0.5·0.2 = 0.2; mean 0.45, MAD 0.25
    # t2: a = b = 0.5 (c offline, left out); MAD 0
    assert out["nodes"].to_list() == [2, 2]
    assert out["mean_load"].to_list() == pytest.approx([0.45, 0.5])
    assert out["imbalance"].to_list() == pytest.approx([0.25, 0.0])
    # cpu only (Policy weights 1, 0): t1 loads 0.8 and 0.2, MAD 0.3
    cpu_only = imbalance_over_time(history, Policy(cpu_weight=1.0, memory_weight=0.0))
    assert cpu_only["imbalance"].to_list() == pytest.approx([0.3, 0.0])
