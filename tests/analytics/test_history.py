"""History as its readers want it: the forecaster's gap-free 5-minute grid of densely sampled
history, and node load as 30-minute means for capacity trends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from analytics import Store
from analytics.history import dense_tail, node_history, recent_history, to_grid, training_frame
from analytics.schema import KIB
from engine import ClusterSnapshot, Node

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


def test_node_history_is_thirty_minute_means_with_roll_ups_before_the_raw_samples(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "history.duckdb")
    raw = pl.DataFrame(
        {
            "node": "pve1",
            "ts": [at(120 + m) for m in range(60)],
            "cpu": [0.4 if m < 30 else 0.6 for m in range(60)],
            "maxcpu": 8,
            "mem": 10,
            "maxmem": 64,
        }
    )
    store.append_node_samples(raw)
    with store.writer() as con:  # 5-minute means over three hours, some beside the raw samples
        for node in ("pve1", "gone"):
            con.execute(
                "INSERT INTO node_samples_5m SELECT $node, $t0 + to_minutes(5 * b), 5, 0.1, 0.2, "
                "5, 6 FROM range(36) AS t(b)",
                {"node": node, "t0": T0},
            )
    snapshot = ClusterSnapshot(
        nodes=(Node("pve1", cpus=16, memory=128),),
        guests=(),
        now=at(180).replace(tzinfo=UTC).timestamp(),
    )
    history = node_history(store, snapshot, days=1)
    assert history.columns == ["node", "ts", "cpu", "maxcpu", "mem", "maxmem"]
    assert history["node"].unique().to_list() == ["pve1"]  # a node the snapshot lacks is left out
    assert history["ts"].to_list() == [at(30 * i) for i in range(6)]
    # before the raw samples: the roll-up's means at the snapshot's sizes; then the raw samples
    assert history["cpu"].to_list() == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.4, 0.6])
    assert history["maxcpu"].to_list() == [16, 16, 16, 16, 8, 8]
    assert history["maxmem"].to_list() == [128, 128, 128, 128, 64, 64]
    assert history["mem"].to_list() == pytest.approx([5, 5, 5, 5, 10, 10])


def test_node_history_of_an_empty_store_is_empty(tmp_path: Path) -> None:
    snapshot = ClusterSnapshot(nodes=(Node("pve1", cpus=16, memory=128),), guests=(), now=0.0)
    assert node_history(Store(tmp_path / "history.duckdb"), snapshot, days=1).is_empty()


def test_recent_history_can_read_only_some_guests(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.duckdb")
    rows = [
        {"vmid": v, "ts": at(m), "node": "pve1", "kind": "qemu", "cpu": 0.1 * v, "cpus": 2}
        for v in (1, 2, 3)
        for m in range(0, 60, 5)
    ]
    store.append_guest_samples(pl.DataFrame(rows))
    now = at(60).replace(tzinfo=UTC).timestamp()
    every = recent_history(store, now)
    assert every.columns == ["series", "ts", "cpu", "mem", "cpus", "disk", "net"]
    assert every["series"].unique().sort().to_list() == ["1", "2", "3"]
    some = recent_history(store, now, vmids=[1, 3])
    assert some["series"].unique().sort().to_list() == ["1", "3"]
    assert some.filter(series="3")["cpu"].to_list() == pytest.approx([0.3] * 12)


def counters(vmid: int, minutes: range, node: str = "pve1") -> list[dict[str, object]]:
    """Live samples whose disk counters grow 600 KiB and network ones 60 KiB a minute."""
    return [
        {"vmid": vmid, "ts": at(m), "node": node, "kind": "qemu", "cpu": 0.5, "mem": 100}
        | {"diskread": 600 * KIB * m, "diskwrite": 0, "netin": 30 * KIB * m, "netout": 30 * KIB * m}
        for m in minutes
    ]


def test_recent_history_has_each_guest_s_throughput_in_bytes_per_second(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.duckdb")
    store.append_guest_samples(pl.DataFrame(counters(1, range(0, 20))))
    now = at(20).replace(tzinfo=UTC).timestamp()
    history = recent_history(store, now)
    assert history.schema["disk"] == history.schema["net"] == pl.Float64
    # the first sample has no previous one: its bucket's mean is of the four after it
    assert history["disk"].to_list() == [10.0 * KIB] * 4
    assert history["net"].to_list() == [1.0 * KIB] * 4


def test_training_frame_has_throughput_from_the_roll_up_then_the_raw_samples(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "h.duckdb")
    with store.writer() as con:  # an hour of 5-minute roll-ups; the first two have no rates
        con.execute(
            "INSERT INTO guest_samples_5m SELECT 1, $t0 + to_minutes(5 * b), 'pve1', 5, 0.5, "
            "0.5, 100, 100, CASE WHEN b >= 2 THEN 40 END, CASE WHEN b >= 2 THEN 4 END "
            "FROM range(12) AS t(b)",
            {"t0": T0},
        )
    store.append_guest_samples(pl.DataFrame(counters(1, range(60, 70))))
    frame = training_frame(store, at(70).replace(tzinfo=UTC).timestamp(), days=1)
    assert frame.columns == ["series", "ts", "cpu", "mem", "disk", "net"]
    # roll-up: unknown, then 40 KiB/s; raw: 10 KiB/s (the first raw sample's bucket has the
    # four rates after it); both come out in bytes/s
    assert frame["disk"].to_list() == [None, None] + [40.0 * KIB] * 10 + [10.0 * KIB] * 2
    assert frame["net"].to_list() == [None, None] + [4.0 * KIB] * 10 + [1.0 * KIB] * 2
