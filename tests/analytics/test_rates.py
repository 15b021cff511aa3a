"""Guest disk and network rates from PVE's cumulative byte counters, derived on the way in."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from analytics.schema import KIB
from analytics.store import Store

T0 = datetime(2026, 4, 1)
GIB = 1 << 20  # in KiB, the unit `sample` takes counters in


def sample(
    minute: float,
    disk: tuple[int | None, int | None],
    net: tuple[int | None, int | None],
    *,
    vmid: int = 100,
    node: str = "pve1",
) -> dict[str, Any]:
    """One live sample: (diskread, diskwrite) and (netin, netout) counters at T0 + `minute`,
    given in KiB so the rates come out in the store's KiB/s (PVE's counters are bytes)."""

    def in_bytes(kib: int | None) -> int | None:
        return None if kib is None else kib * KIB

    return {
        "vmid": vmid,
        "ts": T0 + timedelta(minutes=minute),
        "node": node,
        "kind": "qemu",
        "cpu": 0.1,
        "diskread": in_bytes(disk[0]),
        "diskwrite": in_bytes(disk[1]),
        "netin": in_bytes(net[0]),
        "netout": in_bytes(net[1]),
    }


def frame(*rows: dict[str, Any]) -> pl.DataFrame:
    counters = ("diskread", "diskwrite", "netin", "netout")
    return pl.DataFrame(list(rows), schema_overrides={c: pl.Int64 for c in counters})


def rates(store: Store) -> list[tuple[Any, ...]]:
    """(vmid, minute, disk_kibps, net_kibps) of every stored sample, by guest then time."""
    stored = store.guest_window(T0 - timedelta(days=1), T0 + timedelta(days=1))
    return [
        (r["vmid"], (r["ts"] - T0) / timedelta(minutes=1), r["disk_kibps"], r["net_kibps"])
        for r in stored.iter_rows(named=True)
    ]


def test_a_sample_s_rates_are_its_counters_growth_per_second_since_the_guest_s_previous_one(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "h.duckdb")
    store.append_guest_samples(frame(sample(0, (0, 0), (0, 0))))
    # the previous sample of minute 1 is stored already, that of minute 2 comes in beside it
    store.append_guest_samples(
        frame(
            sample(1, (60 * GIB, 30 * GIB), (600, 0)),
            sample(2, (90 * GIB, 60 * GIB), (900, 3300)),
            sample(0, (7, 7), (7, 7), vmid=101),
        )
    )
    assert rates(store) == [
        (100, 0, None, None),  # nothing before it
        (100, 1, 1536 * 1024, 10),  # 90 GiB / 60 s; 600 KiB / 60 s
        (100, 2, 1024 * 1024, 60),  # (150 - 90) GiB / 60 s; (4200 - 600) KiB / 60 s
        (101, 0, None, None),  # another guest's samples are not its previous ones
    ]


def test_a_counter_that_went_down_gives_no_rate_rather_than_a_negative_or_huge_one(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "h.duckdb")
    store.append_guest_samples(
        frame(
            sample(0, (10 * GIB, 0), (5 * GIB, 0)),
            # restarted: the disk counters start from zero, the network ones grew past their
            # old sum already, and neither rate can be trusted
            sample(1, (GIB, 0), (6 * GIB, 0)),
            sample(2, (GIB + 600, 0), (6 * GIB + 60, 0)),  # counting again: 10 and 1 KiB/s
        )
    )
    assert rates(store) == [(100, 0, None, None), (100, 1, None, None), (100, 2, 10, 1)]


def test_a_guest_on_another_node_than_its_previous_sample_gets_no_rate(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.duckdb")
    # moved: the new node's process counts from zero, so grown sums do not mean bytes moved
    store.append_guest_samples(
        frame(sample(0, (60, 60), (60, 60)), sample(1, (600, 600), (600, 600), node="pve2"))
    )
    assert rates(store) == [(100, 0, None, None), (100, 1, None, None)]


def test_a_previous_sample_more_than_fifteen_minutes_back_gives_no_rate(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.duckdb")
    store.append_guest_samples(frame(sample(0, (0, 0), (0, 0))))
    store.append_guest_samples(
        frame(sample(16, (960, 0), (960, 0)), sample(31, (1860, 0), (1860, 0)))
    )
    # 16 min after minute 0: too far; 15 min after minute 16 is still near enough: 900 KiB / 900 s
    assert rates(store) == [(100, 0, None, None), (100, 16, None, None), (100, 31, 1, 1)]


def test_a_missing_counter_leaves_only_its_own_rate_empty(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.duckdb")
    store.append_guest_samples(
        frame(
            sample(0, (0, 0), (0, 0)),
            sample(1, (600, None), (600, 0)),  # half a disk sum would read as a drop later
            sample(2, (1200, 0), (1200, 0)),  # its previous disk sum is missing too
        )
    )
    assert rates(store) == [(100, 0, None, None), (100, 1, None, 10), (100, 2, None, 10)]


def test_rates_a_backfill_brings_are_kept_to_the_whole_kib_per_second(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "h.duckdb")
    rrd = frame(sample(0, (None, None), (None, None)), sample(1, (None, None), (None, None)))
    backfilled = rrd.with_columns(disk_kibps=pl.Series([1234.4, None]), net_kibps=pl.lit(99.5))
    assert store.append_guest_samples(backfilled) == 2
    # a live sample after a backfilled one has no previous counters to grow from
    store.append_guest_samples(frame(sample(2, (600, 0), (600, 0))))
    # kept to the whole KiB/s, half away from zero as the roll-ups round
    assert rates(store) == [(100, 0, 1234, 100), (100, 1, None, 100), (100, 2, None, None)]


def test_re_ingesting_samples_adds_and_changes_nothing_and_keeps_their_rates(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "h.duckdb")
    samples = frame(*(sample(m, (600 * m, 0), (60 * m, 0)) for m in range(5)))
    assert store.append_guest_samples(samples) == 5
    before = rates(store)
    assert store.append_guest_samples(samples) == 0
    assert store.append_guest_samples(samples.tail(2)) == 0  # its previous rows are stored
    assert store.upsert("guest_samples", samples) == 0  # recomputed rates equal the stored
    assert (
        rates(store) == before == [(100, 0, None, None)] + [(100, m, 10, 1) for m in (1, 2, 3, 4)]
    )


def test_a_re_ingested_sample_s_stored_counters_are_the_next_one_s_previous(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "h.duckdb")
    store.append_guest_samples(frame(sample(0, (0, 0), (0, 0))))
    # the frame repeats minute 0 with other counters: the stored row stays and is the one the
    # rate of minute 1 grows from
    store.append_guest_samples(frame(sample(0, (60, 0), (60, 0)), sample(1, (600, 0), (60, 0))))
    assert rates(store) == [(100, 0, None, None), (100, 1, 10, 1)]
