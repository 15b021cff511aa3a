"""History from rrddata: the store's columns, missing points omitted, bounded concurrency."""

from __future__ import annotations

import contextlib
from pathlib import Path

import polars as pl
import pytest

from analytics import Store
from analytics.schema import KIB
from engine.model import Guest
from tasks import ingest
from tasks.pve.backfill import guest_rows
from tasks.pve.inventory import GUEST_SCHEMA, NODE_SCHEMA, frame
from tests.conftest import Control
from tests.tasks.pve.support import connect, requests_made

START = 1_795_000_000  # the small scenario's simulated epoch


def test_an_hour_of_history_comes_back_in_the_store_s_columns(sim, control: Control):
    gateway = connect(sim)
    inv = gateway.inventory()
    control.delete("requests")
    nodes, guests = gateway.backfill(inv, "hour", workers=3)
    assert nodes.schema == NODE_SCHEMA and guests.schema == GUEST_SCHEMA
    assert sorted(set(nodes["node"])) == ["pve1", "pve2", "pve3"]
    assert nodes["ts"].min() >= START - 3600 and nodes["ts"].max() <= START
    assert nodes["ts"].n_unique() > 50  # 60 s steps
    assert set(guests["vmid"]) == {100, 101, 102, 103, 104, 105, 200, 201}  # 106 is stopped
    assert guests.filter(vmid=200)["kind"].unique().to_list() == ["lxc"]
    assert guests["netin"].null_count() == guests.height  # RRD rates are not the store's counters
    assert guests["disk_kibps"].null_count() == guests["net_kibps"].null_count() == 0
    assert guests["disk_kibps"].min() > 0 and guests["net_kibps"].min() > 0
    made = requests_made(control)
    assert made["GET /nodes/{node}/rrddata"] == 3
    assert made["GET /nodes/{node}/qemu/{vmid}/rrddata"] == 7
    assert made["GET /nodes/{node}/lxc/{vmid}/rrddata"] == 2


def test_guest_cpu_is_kept_as_pve_s_fraction_of_the_guest_s_vcpus(sim):
    gateway = connect(sim)
    _, guests = gateway.backfill(gateway.inventory(), "hour")
    web = guests.filter(vmid=100)
    assert web["cpus"].unique().to_list() == [2.0]
    assert 0 < web["cpu"].mean() < 1


def test_rrd_rates_are_summed_into_disk_and_network_rates_unless_a_part_is_missing():
    g = Guest(100, "web", "pve1", vcpus=2)
    io = {"netin": 10.5 * KIB, "netout": 20.0 * KIB, "diskread": 1.0 * KIB, "diskwrite": 2.25 * KIB}
    point = {"time": 60, "cpu": 0.5} | io
    half = {"time": 120, "cpu": 0.5, "netin": KIB, "diskread": KIB, "diskwrite": None}
    rows = frame(guest_rows(g, [point, half]), GUEST_SCHEMA)
    # bytes/s in the RRD, KiB/s in the store
    assert rows.select("disk_kibps", "net_kibps").rows() == [(3.25, 30.5), (None, None)]
    assert rows.select("netin", "netout", "diskread", "diskwrite").null_count().row(0) == (2,) * 4


def test_points_without_a_cpu_value_are_omitted():
    g = Guest(100, "web", "pve1", vcpus=2)
    rows = guest_rows(g, [{"time": 60, "cpu": 0.5, "maxcpu": 2, "mem": 5}, {"time": 120}, "x"])
    assert [r[1] for r in rows] == [60]


def test_an_unknown_timeframe_is_refused_naming_the_allowed_ones_before_any_call(sim):
    gateway = connect(sim)
    inv = gateway.inventory()
    before = gateway.calls
    with pytest.raises(ValueError, match="timeframe 'fortnight' is not one of hour, day, week"):
        gateway.backfill(inv, "fortnight")
    assert gateway.calls == before


def test_history_of_guests_on_an_offline_node_is_skipped_without_calls(sim, control: Control):
    gateway = connect(sim)
    control.post("nodes/pve2/offline")
    inv = gateway.inventory()
    control.delete("requests")
    nodes, guests = gateway.backfill(inv, "hour")
    assert requests_made(control)["GET /nodes/{node}/qemu/{vmid}/rrddata"] == 5  # 102, 103 out
    assert 102 not in set(guests["vmid"]) and 100 in set(guests["vmid"])
    assert "pve2" in set(nodes["node"])  # node rrddata is not proxied: the cluster still has it


# -- the ingest task's backfill: every timeframe up to the one asked for -------------------------


def test_a_backfill_of_several_timeframes_reads_one_inventory_and_reports_one_progress(
    sim, control: Control, tmp_path: Path
):
    gateway = connect(sim)
    store = Store(tmp_path / "history.duckdb")
    control.delete("requests")
    seen: list[tuple[int, int]] = []
    nodes, guests = ingest.backfill(
        gateway, store, "week", lambda d, t: seen.append((d, t)), slot=contextlib.nullcontext
    )
    made = requests_made(control)
    assert made["GET /cluster/resources"] == 1
    assert made["GET /nodes/{node}/rrddata"] == 3 * 3  # hour, day and week of three nodes
    series = 3 * (3 + 9)  # three timeframes of 3 nodes and 9 guests
    assert seen == [(i, series) for i in range(1, series + 1)]
    assert nodes > 0 and guests > 0


def test_an_unknown_backfill_timeframe_is_refused_before_the_cluster_is_read(sim, tmp_path):
    gateway = connect(sim)
    before = gateway.calls
    with pytest.raises(ValueError, match="timeframe 'fortnight'"):
        ingest.backfill(gateway, Store(tmp_path / "h.duckdb"), "fortnight")
    assert gateway.calls == before


def test_after_a_backfill_live_ingests_get_their_rates_from_the_counters_a_minute_apart(
    sim, control: Control, tmp_path: Path
):
    gateway = connect(sim)
    store = Store(tmp_path / "history.duckdb")
    ingest.backfill(gateway, store, "hour", slot=contextlib.nullcontext)
    first = ingest.collect(gateway, store, slot=contextlib.nullcontext).inventory.taken_at
    control.advance(60)
    second = ingest.collect(gateway, store, slot=contextlib.nullcontext).inventory.taken_at
    rows = store.read(
        "SELECT epoch(ts) AS ts, disk_kibps, net_kibps, netin FROM guest_samples ORDER BY ts"
    )
    rrd = rows.filter(pl.col("netin").is_null() & (pl.col("ts") < first))
    assert rrd["disk_kibps"].null_count() == 0 and rrd["net_kibps"].null_count() == 0
    # the first live sample's previous one is a backfilled point, which has no counters
    live = rows.filter(pl.col("ts") == first)
    assert live.height == 8 and live["disk_kibps"].null_count() == live.height
    after = rows.filter(pl.col("ts") == second)
    assert after.height == 8 and (after["disk_kibps"] > 0).all() and (after["net_kibps"] > 0).all()
