"""The DuckDB history store: migrations, idempotent appends, roll-ups, retention, locking."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from analytics.connect import Backoff
from analytics.schema import LATEST, MIGRATIONS, migrate
from analytics.snapshot import snapshot_from_store
from analytics.store import (
    Retention,
    SchemaTooNewError,
    Store,
    StoreLockedError,
    StoreSummary,
    read_frame,
    to_json,
)

T0 = datetime(2026, 2, 15)


def count(path: Path, table: str) -> int:
    return int(read_frame(path, f"SELECT count(*) AS n FROM {table}")["n"][0])


def guest_frame(vmid: int, start: datetime, minutes: int) -> pl.DataFrame:
    """One sample a minute; cpu = minute-of-hour / 100, mem = 1000 * hour-of-day + minute;
    on pve1 in the first half of each hour, on pve2 in the second; byte counters that grow by
    60 (disk) and 120 (network) KiB a minute, so rates of 1 and 2 KiB/s except after a move."""
    ts = pl.datetime_range(
        start, start + timedelta(minutes=minutes - 1), "1m", eager=True, time_unit="us"
    )
    minute = ts.dt.minute().cast(pl.Int64)
    since = (ts - datetime(2026, 1, 1)).dt.total_minutes()  # the same in overlapping frames
    return pl.DataFrame(
        {
            "vmid": vmid,
            "ts": ts,
            "node": pl.Series(["pve1" if m < 30 else "pve2" for m in minute]),
            "kind": "qemu",
            "cpu": minute / 100,
            "cpus": 2,
            "mem": ts.dt.hour().cast(pl.Int64) * 1000 + minute,
            "maxmem": 1 << 30,
            "netin": since * 100 * 1024,
            "netout": since * 20 * 1024,
            "diskread": since * 60 * 1024,
            "diskwrite": 0,
        }
    )


def node_frame(start: datetime, minutes: int) -> pl.DataFrame:
    g = guest_frame(0, start, minutes)
    return g.select("ts", "cpu", "mem", node=pl.lit("pve1"), maxcpu=pl.lit(8), maxmem=pl.lit(64))


# --- migrations ------------------------------------------------------------------------------


def test_migrations_apply_once_and_reopening_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "h.duckdb"
    with duckdb.connect(str(path)) as con:
        assert migrate(con) == [m.version for m in MIGRATIONS]
        assert migrate(con) == []
    assert Store(path).migrate() == LATEST
    assert Store(path).migrate() == LATEST
    versions = read_frame(path, "SELECT version FROM schema_version ORDER BY version")
    assert versions["version"].to_list() == [m.version for m in MIGRATIONS]


OPENERS: dict[str, Callable[[Store], object]] = {
    "migrate": Store.migrate,
    "schema_version": Store.schema_version,
    "read": lambda store: store.read("SELECT 1"),
    "write": lambda store: store.append_node_samples(node_frame(T0, 1)),
    "snapshot": snapshot_from_store,
}


@pytest.mark.parametrize("opener", OPENERS)
def test_a_file_from_a_newer_schema_version_is_refused_naming_the_file_and_both_versions(
    tmp_path: Path, opener: str
) -> None:
    path = tmp_path / "h.duckdb"
    Store(path).migrate()
    with duckdb.connect(str(path)) as con:
        con.execute("INSERT INTO schema_version VALUES (?, 'from the future', now())", [LATEST + 1])
    with pytest.raises(SchemaTooNewError) as refused:
        OPENERS[opener](Store(path))
    assert str(refused.value).startswith(
        f"{path} has history-store schema version {LATEST + 1}, but this proxflow only knows "
        f"versions up to {LATEST}; it was written by a newer proxflow. Upgrade proxflow"
    )


# --- idempotent appends ----------------------------------------------------------------------


def test_re_ingesting_the_same_frame_leaves_the_row_count_unchanged(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.duckdb")
    frame = guest_frame(100, T0, 10)
    assert store.append_guest_samples(frame) == 10
    assert store.append_guest_samples(frame) == 0
    assert count(store.path, "guest_samples") == 10
    nodes = node_frame(T0, 10)
    assert store.append_node_samples(nodes) == 10
    assert store.append_node_samples(nodes) == 0
    assert count(store.path, "node_samples") == 10


def test_overlapping_frames_add_only_the_new_rows(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.duckdb")
    assert store.append_guest_samples(guest_frame(100, T0, 10)) == 10
    # minutes 5..14 overlap 5..9 with the first frame: 5 new rows
    assert store.append_guest_samples(guest_frame(100, T0 + timedelta(minutes=5), 10)) == 5
    assert count(store.path, "guest_samples") == 15


def test_a_key_repeated_inside_one_frame_is_stored_once_with_its_first_values(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "h.duckdb")
    first = guest_frame(100, T0, 2)
    again = first.head(1).with_columns(cpu=pl.lit(0.99))
    assert store.append_guest_samples(pl.concat([first, again])) == 2
    assert store.guest_window(T0, T0 + timedelta(minutes=2))["cpu"].to_list() == [0.0, 0.01]


def test_upserting_samples_changes_the_stored_values_and_adds_the_new_rows(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "h.duckdb")
    store.append_guest_samples(guest_frame(100, T0, 3))
    fixed = guest_frame(100, T0 + timedelta(minutes=2), 2).with_columns(cpu=pl.lit(0.5))
    assert store.upsert("guest_samples", fixed) == 2  # minute 2 changed, minute 3 added
    assert store.upsert("guest_samples", fixed) == 0  # nothing differs any more
    window = store.guest_window(T0, T0 + timedelta(hours=1))
    assert window["cpu"].to_list() == [0.0, 0.01, 0.5, 0.5]


def test_cpu_fractions_are_kept_to_six_decimals(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.duckdb")
    store.append_guest_samples(guest_frame(100, T0, 1).with_columns(cpu=pl.lit(0.123456789)))
    assert store.guest_window(T0, T0 + timedelta(minutes=1))["cpu"].to_list() == [0.123457]


def test_roll_up_rows_append_once_per_bucket_with_cpu_rounded_as_maintain_rounds(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "h.duckdb")
    rows = pl.DataFrame(
        {
            "node": ["pve1", "pve1", "pve2"],
            "bucket": [T0, T0 + timedelta(minutes=5), T0],
            "n": [5, 5, 5],
            "cpu_mean": [0.123456789, 0.2, 0.3],
            "cpu_max": [0.5, 0.6, 0.7],
            "mem_mean": [10, 20, 30],
            "mem_max": [11, 21, 31],
        }
    )
    assert store.append("node_samples_5m", rows) == 3
    assert store.append("node_samples_5m", rows) == 0
    stored = store.node_window(T0, T0 + timedelta(hours=1), resolution="5m")
    assert stored.select("node", "bucket", "cpu_mean").rows() == [
        ("pve1", T0, 0.123457),
        ("pve1", T0 + timedelta(minutes=5), 0.2),
        ("pve2", T0, 0.3),
    ]


def test_a_writer_that_fails_commits_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.duckdb")
    with pytest.raises(RuntimeError, match="boom"), store.writer() as con:
        con.execute("INSERT INTO runs (run_id, flow) VALUES ('r1', 'balance')")
        raise RuntimeError("boom")
    assert count(store.path, "runs") == 0


def test_a_frame_without_its_key_columns_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"guest_samples: frame lacks .*'kind'"):
        Store(tmp_path / "h.duckdb").append_guest_samples(guest_frame(100, T0, 1).drop("kind"))


def test_a_column_of_only_nulls_is_stored_as_nulls_of_the_table_s_type(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.duckdb")
    # polars types such columns Null, which DuckDB cannot read from Arrow
    no_memory = guest_frame(100, T0, 3).with_columns(mem=None, maxmem=None)
    assert no_memory.schema["mem"] == pl.Null
    assert store.append_guest_samples(no_memory) == 3
    assert store.upsert("guest_samples", no_memory.with_columns(cpus=4)) == 3
    stored = store.guest_window(T0, T0 + timedelta(minutes=3))
    assert stored["mem"].null_count() == 3 and stored["cpus"].to_list() == [4, 4, 4]
    skipped = pl.DataFrame(
        {"id": ["m1"], "vmid": [100], "source": ["pve1"], "target": ["pve2"], "upid": [None]}
    )
    assert store.append("migrations", skipped.with_columns(started=None, finished=None)) == 1
    assert store.migrations()["upid"].to_list() == [None]


def test_a_column_of_only_nulls_that_is_rounded_json_or_a_list_is_stored_as_nulls_too(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "h.duckdb")
    no_cpu = guest_frame(100, T0, 2).with_columns(cpu=None)  # rounded to six decimals
    assert store.append_guest_samples(no_cpu) == 2
    assert store.guest_window(T0, T0 + timedelta(minutes=2))["cpu"].null_count() == 2
    run = pl.DataFrame({"run_id": ["r1"], "flow": ["balance"], "parameters": [None]})  # JSON
    assert store.append("runs", run) == 1
    assert store.read("SELECT parameters FROM runs")["parameters"].to_list() == [None]
    unknown = config_frame([100], "pve1", [[]]).with_columns(local_resources=None)  # a list
    assert store.upsert("guest_config", unknown) == 1
    assert store.guest_configs()["local_resources"].to_list() == [None]


def test_epoch_seconds_and_aware_datetimes_land_as_naive_utc(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.duckdb")
    epoch = int(T0.replace(tzinfo=UTC).timestamp())
    store.append_node_samples(node_frame(T0, 1).with_columns(ts=pl.lit(epoch)))
    aware = node_frame(T0, 1).with_columns(
        pl.col("ts").dt.replace_time_zone("UTC").dt.convert_time_zone("Europe/Vienna")
    )
    assert store.append_node_samples(aware) == 0  # same instant, so already there
    assert store.node_window(T0, T0 + timedelta(minutes=1))["ts"].to_list() == [T0]


def test_json_payloads_never_keep_secrets(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.duckdb")
    params = {"dry_run": True, "pve": {"token_secret": "s3cret", "password": "pw"}}
    store.upsert(
        "runs",
        pl.DataFrame({"run_id": ["r1"], "flow": ["balance"], "parameters": [json.dumps(params)]}),
    )
    store.upsert(
        "runs", pl.DataFrame({"run_id": ["r1"], "flow": ["balance"], "status": ["COMPLETED"]})
    )
    row = read_frame(store.path, "SELECT * FROM runs").row(0, named=True)
    assert row["status"] == "COMPLETED"
    assert "s3cret" not in row["parameters"] and "pw" not in row["parameters"]
    assert json.loads(row["parameters"])["dry_run"] is True
    assert "s3cret" not in to_json({"api_key": "s3cret"})


def test_readers_select_by_window_and_entity(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.duckdb")
    store.append_guest_samples(pl.concat([guest_frame(100, T0, 10), guest_frame(101, T0, 5)]))
    window = store.guest_window(T0 + timedelta(minutes=2), T0 + timedelta(minutes=4), vmids=[101])
    # half-open [00:02, 00:04): minutes 2 and 3 of vmid 101 only
    assert window.select("vmid", "ts").rows() == [
        (101, T0 + timedelta(minutes=2)),
        (101, T0 + timedelta(minutes=3)),
    ]
    whole = store.guest_window(T0, T0 + timedelta(hours=1))
    assert whole.group_by("vmid").agg(pl.col("ts").max()).sort("vmid").rows() == [
        (100, T0 + timedelta(minutes=9)),
        (101, T0 + timedelta(minutes=4)),
    ]
    assert store.node_window(T0, T0 + timedelta(days=1)).is_empty()


def test_a_window_is_sorted_by_guest_then_time_even_after_a_backfill_of_older_rows(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "h.duckdb")
    later = T0 + timedelta(minutes=3)
    store.append_guest_samples(pl.concat([guest_frame(101, later, 2), guest_frame(100, later, 2)]))
    store.append_guest_samples(pl.concat([guest_frame(101, T0, 3), guest_frame(100, T0, 3)]))
    rows = store.guest_window(T0, T0 + timedelta(hours=1)).select("vmid", "ts").rows()
    expected = [(v, T0 + timedelta(minutes=m)) for v in (100, 101) for m in range(5)]
    assert rows == expected


def test_a_window_can_read_only_the_columns_it_needs(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.duckdb")
    store.append_guest_samples(pl.concat([guest_frame(101, T0, 2), guest_frame(100, T0, 2)]))
    window = store.guest_window(T0, T0 + timedelta(hours=1), columns=["cpu", "vmid"])
    assert window.columns == ["vmid", "ts", "cpu"]
    assert window["vmid"].to_list() == [100, 100, 101, 101]
    with pytest.raises(ValueError, match=r"guest_samples has no column\(s\) \['load'\]; it has"):
        store.guest_window(T0, T0 + timedelta(hours=1), columns=["load"])


# --- what the pipeline asks the store --------------------------------------------------------


def epoch(when: datetime) -> float:
    return when.replace(tzinfo=UTC).timestamp()


def record(id: str, status: str, started: datetime, finished: datetime | None) -> dict[str, Any]:
    return {
        "id": id,
        "plan_id": "p1",
        "vmid": int(id[1:]),
        "source": "pve1",
        "target": "pve2",
        "upid": f"UPID:pve1:{id}",
        "status": status,
        "started": epoch(started),
        "finished": None if finished is None else epoch(finished),
        "result": "",
    }


def with_migrations(path: Path) -> Store:
    store = Store(path)
    hour = timedelta(hours=1)
    rows = [
        record("m104", "intent", T0 + 4 * hour, None),
        record("m101", "ok", T0 + hour, T0 + hour + timedelta(minutes=2)),
        record("m103", "running", T0 + 3 * hour, None),
        record("m102", "failed", T0 + 2 * hour, T0 + 2 * hour + timedelta(minutes=1)),
        record("m100", "ok", T0, T0 + timedelta(minutes=3)),
    ]
    store.upsert("migrations", pl.DataFrame(rows))
    return store


def test_migrations_are_every_record_in_the_order_they_started(tmp_path: Path) -> None:
    store = with_migrations(tmp_path / "h.duckdb")
    assert store.migrations()["id"].to_list() == ["m100", "m101", "m102", "m103", "m104"]


def test_completed_migrations_are_the_ok_ones_finished_since_a_time_oldest_first(
    tmp_path: Path,
) -> None:
    store = with_migrations(tmp_path / "h.duckdb")
    done = store.completed_migrations(T0.replace(tzinfo=UTC))
    assert done.rows() == [
        (100, "pve1", "pve2", epoch(T0 + timedelta(minutes=3))),
        (101, "pve1", "pve2", epoch(T0 + timedelta(hours=1, minutes=2))),
    ]
    later = store.completed_migrations(T0 + timedelta(minutes=30))  # naive is UTC
    assert later["vmid"].to_list() == [101]


def test_migrations_that_finished_at_the_same_second_come_back_in_vmid_order(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "h.duckdb")
    done = T0 + timedelta(minutes=5)
    rows = [record(f"m{vmid}", "ok", T0, done) for vmid in (107, 105, 106)]  # not in vmid order
    store.upsert("migrations", pl.DataFrame(rows))
    assert store.completed_migrations(T0)["vmid"].to_list() == [105, 106, 107]


def test_unfinished_migrations_are_the_records_with_an_intent_but_no_outcome(
    tmp_path: Path,
) -> None:
    store = with_migrations(tmp_path / "h.duckdb")
    open_ = store.unfinished_migrations()
    assert open_.select("id", "status", "started").rows() == [
        ("m103", "running", epoch(T0 + timedelta(hours=3))),
        ("m104", "intent", epoch(T0 + timedelta(hours=4))),
    ]
    assert store.unfinished_migrations(only="m104")["id"].to_list() == ["m104"]
    assert store.unfinished_migrations(only="m100").is_empty()  # finished


def test_an_empty_store_has_no_samples_no_roll_up_and_says_so_in_its_summary(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "h.duckdb")
    assert not store.has_guest_samples()
    assert store.newest_rollup() is None
    assert store.summary() == StoreSummary(0, None, 0)


def test_after_an_ingest_and_a_roll_up_the_store_reports_what_it_holds(tmp_path: Path) -> None:
    store = with_migrations(tmp_path / "h.duckdb")
    store.append_guest_samples(guest_frame(100, T0, 12))
    assert store.has_guest_samples()
    assert store.newest_rollup() is None
    store.maintain(T0 + timedelta(hours=1))
    assert store.newest_rollup() == T0 + timedelta(minutes=10)
    assert store.summary() == StoreSummary(12, T0 + timedelta(minutes=11), 2)


# --- roll-ups and retention ------------------------------------------------------------------

NOW = datetime(2026, 3, 1, 0, 30)  # hour-aligned cutoffs are counted from 2026-03-01 00:00
KEEP = Retention(raw=timedelta(days=1), five_min=timedelta(days=3), hourly=timedelta(days=10))
# cutoffs: raw < 02-28 00:00, 5-min < 02-26 00:00, hourly < 02-19 00:00 are deleted


def snapshot(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    tables = ["guest_samples", "node_samples"]
    tables += [f"{e}_samples_{r}" for e in ("guest", "node") for r in ("5m", "1h")]
    return {t: read_frame(path, f"SELECT * FROM {t} ORDER BY ALL").rows() for t in tables}


@pytest.fixture
def maintained(tmp_path: Path) -> Store:
    """Samples every minute from 02-15 00:00 to 03-01 00:29, then one maintain at NOW."""
    store = Store(tmp_path / "h.duckdb")
    minutes = 14 * 24 * 60 + 30  # 20190 samples per entity
    store.append_guest_samples(guest_frame(100, T0, minutes))
    store.append_node_samples(node_frame(T0, minutes))
    store.maintain(NOW, KEEP)
    return store


def test_maintain_keeps_only_the_rows_inside_each_retention(maintained: Store) -> None:
    for entity in ("guest", "node"):
        # raw: 02-28 00:00 .. 03-01 00:29 = 24 * 60 + 30 samples
        assert count(maintained.path, f"{entity}_samples") == 1470
        # 5-min: 02-26 00:00 .. 03-01 00:25 = 3 * 288 + 6 buckets
        assert count(maintained.path, f"{entity}_samples_5m") == 870
        # hourly: 02-19 00:00 .. 03-01 00:00 = 10 * 24 + 1 buckets
        assert count(maintained.path, f"{entity}_samples_1h") == 241


def test_five_minute_aggregates_have_the_expected_means_and_maxes(maintained: Store) -> None:
    rows = maintained.read(
        "SELECT * FROM guest_samples_5m WHERE vmid = 100 AND bucket = ?",
        [datetime(2026, 2, 28, 13, 15)],
    ).row(0, named=True)
    # minutes 15..19: cpu 0.15..0.19 → mean 0.17, max 0.19; mem 13015..13019 → 13017, 13019
    assert rows["n"] == 5
    assert rows["cpu_mean"] == pytest.approx(0.17)
    assert rows["cpu_max"] == pytest.approx(0.19)
    assert (rows["mem_mean"], rows["mem_max"]) == (13017, 13019)
    assert rows["node"] == "pve1"  # minutes < 30 ran on pve1
    assert (rows["disk_kibps_mean"], rows["net_kibps_mean"]) == (1, 2)  # 60 and 120 KiB a minute


def test_a_throughput_mean_is_over_the_samples_with_a_rate_and_null_when_none_has_one(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "h.duckdb")
    hour = datetime(2026, 2, 28, 13)
    # rates as a backfill brings them, without counters: disk = the minute; net = 10 x the
    # minute, except none in minutes 0..4 and 7
    rrd = guest_frame(100, hour, 60).drop("netin", "netout", "diskread", "diskwrite")
    rates = rrd.with_columns(
        disk_kibps=pl.int_range(0, 60),
        net_kibps=pl.when(pl.int_range(0, 60).is_in([0, 1, 2, 3, 4, 7]))
        .then(None)
        .otherwise(pl.int_range(0, 60) * 10),
    )
    store.append_guest_samples(rates)
    store.maintain(NOW, KEEP)
    five = store.guest_window(hour, hour + timedelta(minutes=10), resolution="5m")
    # minutes 0..4: disk mean 2, no net rate; 5..9: disk mean 7, net (50 + 60 + 80 + 90) / 4
    assert five.select("n", "disk_kibps_mean", "net_kibps_mean").rows() == [
        (5, 2, None),
        (5, 7, 70),
    ]


def test_hourly_and_node_roll_ups_have_no_throughput_columns(maintained: Store) -> None:
    for table in ("guest_samples_1h", "node_samples_5m", "node_samples_1h"):
        columns = maintained.read(f"SELECT * FROM {table} LIMIT 0").columns
        assert not {"disk_kibps_mean", "net_kibps_mean"} & set(columns)


def test_hourly_aggregates_have_the_expected_means_and_maxes(maintained: Store) -> None:
    hourly = maintained.node_window(datetime(2026, 2, 20, 13), NOW, resolution="1h")
    full = hourly.row(0, named=True)
    # raw long gone, rolled before deletion: minutes 0..59 → cpu mean 29.5/100, max 0.59;
    # mem 13000..13059 → mean 13029.5, kept to the byte (half away from zero), max 13059
    assert full["bucket"] == datetime(2026, 2, 20, 13)
    assert full["n"] == 60
    assert full["cpu_mean"] == pytest.approx(0.295)
    assert full["cpu_max"] == pytest.approx(0.59)
    assert (full["mem_mean"], full["mem_max"]) == (13030, 13059)
    current = hourly.row(-1, named=True)
    # the running hour 03-01 00:00 has minutes 0..29: cpu mean 14.5/100, max 0.29
    assert (current["bucket"], current["n"]) == (datetime(2026, 3, 1), 30)
    assert current["cpu_mean"] == pytest.approx(0.145)
    assert current["cpu_max"] == pytest.approx(0.29)
    guest = maintained.guest_window(datetime(2026, 2, 20, 13), NOW, [100], resolution="1h")
    assert guest["node"][0] == "pve2"  # the node of the bucket's last sample (minute 59)


def test_running_maintain_twice_changes_nothing(maintained: Store) -> None:
    before = snapshot(maintained.path)
    deleted = maintained.maintain(NOW, KEEP)
    assert set(deleted.values()) == {0}
    assert snapshot(maintained.path) == before


def test_a_kept_bucket_is_recomputed_and_an_expired_one_is_frozen(maintained: Store) -> None:
    # three more samples of the running hour (minutes 30..32) → that hour now has 33 samples
    maintained.append_node_samples(node_frame(datetime(2026, 3, 1, 0, 30), 3))
    # a late re-ingest of one expired raw sample must not replace the complete 02-20 13:00 hour
    maintained.append_node_samples(node_frame(datetime(2026, 2, 20, 13), 1))
    maintained.maintain(NOW + timedelta(minutes=3), KEEP)
    hourly = maintained.node_window(datetime(2026, 2, 20, 13), NOW, resolution="1h")
    assert hourly["n"][0] == 60
    assert hourly["n"][-1] == 33
    assert count(maintained.path, "node_samples") == 1473  # the late old sample expired again


def test_only_hourly_buckets_from_the_oldest_raw_hour_on_are_recomputed(
    maintained: Store,
) -> None:
    # raw rows start at 02-28 00:00: the 5-minute rows of 02-27 can no longer change, so its
    # hourly bucket is not read again; 02-28's is recomputed from its 5-minute rows
    older, newer = datetime(2026, 2, 27, 13), datetime(2026, 2, 28, 13)
    with maintained.writer() as con:
        con.execute("UPDATE node_samples_1h SET n = 999 WHERE bucket IN (?, ?)", [older, newer])
    maintained.maintain(NOW, KEEP)
    hourly = maintained.node_window(older, newer + timedelta(hours=1), resolution="1h")
    n = dict(zip(hourly["bucket"], hourly["n"], strict=True))
    assert (n[older], n[newer]) == (999, 60)


def test_retention_must_shrink_from_hourly_to_raw() -> None:
    with pytest.raises(ValueError, match="raw <= five_min <= hourly"):
        Retention(raw=timedelta(days=30), five_min=timedelta(days=7))
    assert Retention().hourly == timedelta(days=5 * 365)


# --- locking ---------------------------------------------------------------------------------


def hold_file(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the file read-write; returns once it has the lock."""
    script = (
        "import duckdb, sys, time\n"
        f"con = duckdb.connect({str(path)!r})\n"
        "print('ready', flush=True)\n"
        f"time.sleep({seconds})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_the_read_only_helper_returns_polars_and_leaves_no_connection_open(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "h.duckdb")
    store.append_guest_samples(guest_frame(100, T0, 3))
    frame = read_frame(store.path, "SELECT vmid, cpu FROM guest_samples WHERE cpu > $1", [0.0])
    assert isinstance(frame, pl.DataFrame)
    assert frame.rows() == [(100, 0.01), (100, 0.02)]
    # a read-write open in this process would be refused if a read-only one were still open
    duckdb.connect(str(store.path)).close()
    # and so would another process's writer
    proc = hold_file(store.path, 0)
    assert proc.wait(timeout=20) == 0


def test_a_writer_backs_off_while_another_process_holds_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "h.duckdb"
    Store(path).migrate()
    proc = hold_file(path, 1.0)
    started = time.monotonic()
    Store(path, backoff=Backoff(deadline=20)).append_guest_samples(guest_frame(100, T0, 2))
    assert time.monotonic() - started > 0.2  # it waited for the holder to let go
    proc.wait(timeout=20)
    assert count(path, "guest_samples") == 2


def test_a_lock_held_past_the_deadline_raises_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "h.duckdb"
    Store(path).migrate()
    proc = hold_file(path, 10)
    try:
        with pytest.raises(StoreLockedError, match=r"another process kept it locked for 0\.3 s"):
            read_frame(path, "SELECT 1", backoff=Backoff(deadline=0.3))
    finally:
        proc.kill()
        proc.wait()


def test_threads_of_one_process_queue_instead_of_failing(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.duckdb")
    errors: list[BaseException] = []

    def work(vmid: int) -> None:
        try:
            for i in range(10):
                store.append_guest_samples(guest_frame(vmid, T0 + timedelta(minutes=i), 1))
                store.guest_window(T0, T0 + timedelta(hours=1), vmids=[vmid])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(vmid,)) for vmid in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert count(store.path, "guest_samples") == 40  # 4 threads x 10 rows


def _writer(path: str, seconds: float, out: str) -> None:
    store = Store(path, backoff=Backoff(deadline=10))
    written, errors, i = 0, [], 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        try:
            written += store.append_guest_samples(guest_frame(i % 50, T0 + timedelta(minutes=i), 1))
        except Exception as exc:
            errors.append(repr(exc))
        i += 1
        time.sleep(0.005)
    Path(out).write_text(json.dumps({"written": written, "errors": errors}))


def _reader(path: str, seconds: float, out: str) -> None:
    counts, errors = [], []
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        try:
            counts.append(count(Path(path), "guest_samples"))
        except Exception as exc:
            errors.append(repr(exc))
        time.sleep(0.005)
    Path(out).write_text(json.dumps({"counts": counts, "errors": errors}))


@pytest.mark.slow
def test_a_writer_and_a_notebook_reader_in_two_processes_lose_nothing_for_30_s(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.duckdb"
    Store(path).migrate()
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_writer, args=(str(path), 30.0, str(tmp_path / "w.json"))),
        ctx.Process(target=_reader, args=(str(path), 30.0, str(tmp_path / "r.json"))),
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=90)
        assert p.exitcode == 0
    wrote = json.loads((tmp_path / "w.json").read_text())
    read = json.loads((tmp_path / "r.json").read_text())
    assert wrote["errors"] == [] and read["errors"] == []
    assert wrote["written"] > 100 and len(read["counts"]) > 100  # both sides really interleaved
    assert read["counts"] == sorted(read["counts"])
    assert count(path, "guest_samples") == wrote["written"]


# --- guest config ----------------------------------------------------------------------------


def config_frame(vmids: list[int], node: str, resources: list[list[str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "vmid": vmids,
            "node": node,
            "kind": "qemu",
            "local_resources": resources,
            "local_disk_bytes": [v * 1024**3 for v in vmids],
            "checked": T0,
        }
    )


def test_guest_config_upserts_replace_a_guests_facts_and_read_back_sorted(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "h.duckdb")
    assert store.upsert("guest_config", config_frame([102, 101], "pve1", [["usb0"], []])) == 2
    later = config_frame([102], "pve2", [["hostpci0", "usb1"]]).with_columns(
        checked=pl.lit(T0 + timedelta(hours=6))
    )
    assert store.upsert("guest_config", later) == 1
    configs = store.guest_configs()
    assert configs["vmid"].to_list() == [101, 102]
    assert configs["node"].to_list() == ["pve1", "pve2"]
    assert configs["local_resources"].to_list() == [[], ["hostpci0", "usb1"]]
    assert configs["checked"].to_list() == [T0, T0 + timedelta(hours=6)]
    assert configs["local_disk_bytes"].to_list() == [101 * 1024**3, 102 * 1024**3]


def test_guest_config_accepts_a_frame_whose_lists_are_all_empty(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.duckdb")
    store.upsert("guest_config", config_frame([100], "pve1", [[]]))
    assert store.guest_configs()["local_resources"].to_list() == [[]]


def test_guest_config_refuses_local_resources_that_are_not_a_list(tmp_path: Path) -> None:
    frame = config_frame([100], "pve1", [[]]).with_columns(local_resources=pl.lit("usb0"))
    with pytest.raises(ValueError, match=r"guest_config\.local_resources must be a list"):
        Store(tmp_path / "h.duckdb").upsert("guest_config", frame)


@contextmanager
def at_version(path: Path, version: int) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to a new file holding the schema of the first `version` migrations only,
    as an older proxflow left it."""
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
            "description VARCHAR NOT NULL, applied TIMESTAMP NOT NULL)"
        )
        for step in MIGRATIONS[:version]:
            con.execute(step.sql)
            con.execute("INSERT INTO schema_version VALUES (?, ?, now())", [step.version, "old"])
        yield con


def test_a_file_at_schema_version_4_gains_throughput_columns_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.duckdb"
    with at_version(path, 4) as con:
        first = guest_frame(100, T0, 1).row(0, named=True)
        con.execute(
            "INSERT INTO guest_samples (vmid, ts, node, kind, cpu, netin, netout, diskread, "
            "diskwrite) VALUES (100, $ts, 'pve1', 'qemu', 0.5, $netin, $netout, $diskread, 0)",
            {k: first[k] for k in ("ts", "netin", "netout", "diskread")},
        )
        con.execute("INSERT INTO guest_samples_5m VALUES (100, ?, 'a', 5, 0.5, 0.5, 7, 7)", [T0])
    store = Store(path)
    assert store.migrate() == 5 == LATEST
    old = store.guest_window(T0, T0 + timedelta(minutes=1))
    assert old.select("cpu", "disk_kibps", "net_kibps").rows() == [(0.5, None, None)]
    rolled = store.guest_window(T0, T0 + timedelta(minutes=5), resolution="5m")
    assert rolled.select("mem_mean", "disk_kibps_mean", "net_kibps_mean").rows() == [
        (7, None, None)
    ]
    # the old sample's counters are the next one's previous: 60 and 120 KiB in a minute
    assert store.append_guest_samples(guest_frame(100, T0, 2)) == 1
    added = store.guest_window(T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))
    assert added.select("disk_kibps", "net_kibps").rows() == [(1, 2)]


def test_a_file_at_schema_version_2_upgrades_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "h.duckdb"
    with at_version(path, 2) as con:
        for minute in (1, 0):  # stored out of time order
            con.execute(
                "INSERT INTO guest_samples (vmid, ts, node, kind, cpu) "
                "VALUES (100, ?, 'a', 'lxc', 0.123456789)",
                [T0 + timedelta(minutes=minute)],
            )
        con.execute(
            "INSERT INTO node_samples_1h VALUES ('a', ?, 60, 0.1, 0.2, 13029.5, 13059.0)", [T0]
        )
    store = Store(path)
    assert store.migrate() == LATEST
    assert store.guest_configs().is_empty()
    assert store.read("SELECT ts, cpu FROM guest_samples").rows() == [
        (T0, 0.123457),
        (T0 + timedelta(minutes=1), 0.123457),
    ]
    hourly = store.node_window(T0, T0 + timedelta(hours=1), resolution="1h")
    assert hourly.select("mem_mean", "mem_max").rows() == [(13030, 13059)]
    # and the upgraded tables stay idempotent without their primary key
    assert store.append_guest_samples(guest_frame(100, T0, 3)) == 1
    assert count(path, "guest_samples") == 3
    keys = read_frame(
        path, "SELECT table_name FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
    )
    assert not any(t.startswith(("guest_samples", "node_samples")) for t in keys["table_name"])
