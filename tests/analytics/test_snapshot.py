"""A cluster snapshot rebuilt from the history store: what the newest ingest saw, read-only."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from analytics import Store
from analytics.schema import MIGRATIONS
from analytics.snapshot import snapshot_from_store
from engine import (
    GuestKind,
    MigrationRecord,
    Node,
    NodeAffinityRule,
    ResourceAffinityRule,
)
from pvesim import Simulator
from tasks.ingest import collect
from tests.tasks.pve.support import connect

GIB = 1024**3
T0 = 1_795_000_000  # epoch seconds of the newest ingest in the hand-written stores


def node_rows(ts: int, *nodes: tuple[str, int, int]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "node": [n for n, _, _ in nodes],
            "ts": [ts] * len(nodes),
            "cpu": [0.25] * len(nodes),
            "maxcpu": [c for _, c, _ in nodes],
            "mem": [GIB] * len(nodes),
            "maxmem": [m for _, _, m in nodes],
        }
    )


def guest_rows(ts: int, *guests: tuple[int, str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "vmid": [v for v, _ in guests],
            "ts": [ts] * len(guests),
            "node": [n for _, n in guests],
            "kind": ["qemu"] * len(guests),
            "cpu": [0.5] * len(guests),
            "cpus": [4.0] * len(guests),
            "mem": [2 * GIB] * len(guests),
            "maxmem": [8 * GIB] * len(guests),
        }
    )


def rule_rows(ts: int, *rules: tuple[str, str, dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": [ts] * len(rules),
            "kind": [k for k, _, _ in rules],
            "name": [n for _, n, _ in rules],
            "members": [json.dumps(m) for _, _, m in rules],
        }
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """Two ingests a minute apart: pve3 and guest 12 were only in the first."""
    store = Store(tmp_path / "history.duckdb")
    store.append("node_samples", node_rows(T0 - 60, ("pve1", 16, 64 * GIB), ("pve3", 8, 32 * GIB)))
    store.append("node_samples", node_rows(T0, ("pve1", 16, 64 * GIB), ("pve2", 32, 128 * GIB)))
    store.append("guest_samples", guest_rows(T0 - 60, (10, "pve1"), (11, "pve3"), (12, "pve1")))
    store.append("guest_samples", guest_rows(T0, (10, "pve1"), (11, "pve2")))
    return store


def test_what_an_ingest_of_the_simulator_writes_comes_back_as_the_cluster_it_saw(
    make_sim: Callable[..., Simulator], tmp_path: Path
) -> None:
    gateway = connect(make_sim("small"))
    store = Store(tmp_path / "history.duckdb")
    # a single writer here: no need for the cross-run writer slot
    seen = collect(gateway, store, slot=contextlib.nullcontext).inventory

    snap = snapshot_from_store(store)

    assert snap.now == int(seen.taken_at)
    assert snap.nodes == seen.nodes
    assert snap.node_rules == seen.node_rules
    assert snap.resource_rules == seen.resource_rules
    running = [g for g in seen.guests if g.running]
    assert [g.vmid for g in snap.guests] == sorted(g.vmid for g in running)
    for mine, theirs in zip(snap.guests, sorted(running, key=lambda g: g.vmid), strict=True):
        assert mine.cpu_used == pytest.approx(theirs.cpu_used, abs=1e-5)  # stored to 6 digits
        # what the store does not keep: tags, pool, lock, HA management and the name
        expected = dataclasses.replace(
            theirs,
            name=f"{theirs.kind.value}{theirs.vmid}",
            tags=(),
            pool=None,
            lock=None,
            ha_managed=False,
            cpu_used=mine.cpu_used,
        )
        assert mine == expected
    # the passthrough VM and the one on local disks keep what the config read found
    by_vmid = {g.vmid: g for g in snap.guests}
    assert by_vmid[104].local_resources and by_vmid[105].local_disk_bytes == 40 * GIB


def test_nodes_missing_from_the_newest_ingest_are_offline_at_their_last_size(store: Store) -> None:
    snap = snapshot_from_store(store)
    assert snap.nodes == (
        Node("pve1", 16, 64 * GIB),
        Node("pve2", 32, 128 * GIB),
        Node("pve3", 8, 32 * GIB, online=False),
    )
    assert snap.now == T0


def test_only_guests_the_newest_ingest_sampled_are_in_it_where_it_saw_them(store: Store) -> None:
    snap = snapshot_from_store(store)
    assert [(g.vmid, g.node) for g in snap.guests] == [(10, "pve1"), (11, "pve2")]
    guest = snap.guests[0]
    assert (guest.kind, guest.vcpus, guest.mem_max, guest.mem_used) == (
        GuestKind.QEMU,
        4,
        8 * GIB,
        2 * GIB,
    )
    assert guest.cpu_used == 2.0  # half of its 4 vCPUs, in host cores
    assert snap.forecast(10).cpu == 2.0  # no forecast given: stays as it is now


def test_guest_config_fills_in_devices_and_local_disks(store: Store) -> None:
    store.upsert(
        "guest_config",
        pl.DataFrame(
            {
                "vmid": [10, 12],
                "node": ["pve1", "pve1"],
                "kind": ["qemu", "qemu"],
                "local_resources": [["hostpci0"], []],
                "local_disk_bytes": [0, 40 * GIB],
                "checked": [T0 - 60, T0 - 60],
            }
        ),
    )
    guests = {g.vmid: g for g in snapshot_from_store(store).guests}
    assert guests[10].local_resources == ("hostpci0",)
    assert (guests[11].local_resources, guests[11].local_disk_bytes) == ((), 0)  # never read


def test_only_the_rules_the_newest_ingest_saw_apply(store: Store) -> None:
    store.append(
        "rules_seen",
        rule_rows(T0 - 60, ("resource-affinity", "gone", {"vmids": [10, 11], "positive": True})),
    )
    store.append(
        "rules_seen",
        rule_rows(
            T0,
            ("node-affinity", "db-on-pve2", {"vmids": [11], "nodes": [["pve2", 2]], "strict": 1}),
            ("resource-affinity", "apart", {"vmids": [10, 11], "positive": False}),
        ),
    )
    snap = snapshot_from_store(store)
    assert snap.node_rules == (NodeAffinityRule("db-on-pve2", (11,), (("pve2", 2),), True),)
    assert snap.resource_rules == (ResourceAffinityRule("apart", (10, 11), False),)


def test_a_rule_the_snapshot_cannot_read_is_named_with_what_was_expected(store: Store) -> None:
    store.append("rules_seen", rule_rows(T0, ("node-affinity", "odd", {"vmids": [10]})))
    with pytest.raises(ValueError, match=r"rules_seen row 'odd' \(node-affinity\).*strict"):
        snapshot_from_store(store)


def test_migrations_done_in_the_last_days_hold_cooldowns_failed_and_old_ones_do_not(
    store: Store,
) -> None:
    day = 86_400
    store.append(
        "migrations",
        pl.DataFrame(
            {
                "id": ["a", "b", "c", "d"],
                "vmid": [10, 11, 10, 11],
                "source": ["pve3", "pve1", "pve1", "pve3"],
                "target": ["pve1", "pve3", "pve2", "pve2"],
                "status": ["ok", "failed", "ok", "ok"],
                "started": [T0 - day, T0 - day, T0 - 8 * day, T0 - 90],
                "finished": [T0 - day + 60, T0 - day + 60, T0 - 8 * day + 60, T0 - 30],
            }
        ),
    )
    assert snapshot_from_store(store).history == (
        MigrationRecord(10, "pve3", "pve1", T0 - day + 60),
        MigrationRecord(11, "pve3", "pve2", T0 - 30),
    )
    assert snapshot_from_store(store, history_days=0.5).history == (
        MigrationRecord(11, "pve3", "pve2", T0 - 30),
    )


def test_a_guest_moved_after_the_newest_sample_is_where_its_last_move_took_it(
    store: Store,
) -> None:
    store.append(
        "migrations",
        pl.DataFrame(
            {
                "id": ["a", "b", "c"],
                "vmid": [10, 10, 11],
                "source": ["pve1", "pve2", "pve2"],
                "target": ["pve2", "pve3", "pve1"],
                "status": ["ok", "ok", "failed"],
                "started": [T0 + 10, T0 + 100, T0 + 10],
                "finished": [T0 + 40, T0 + 130, T0 + 40],
            }
        ),
    )
    snap = snapshot_from_store(store)
    assert [(g.vmid, g.node) for g in snap.guests] == [(10, "pve3"), (11, "pve2")]
    assert [(m.vmid, m.target) for m in snap.history] == [(10, "pve2"), (10, "pve3")]
    assert snap.now == T0  # still the newest sample's time


def test_a_missing_file_is_named_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nothing.duckdb"
    with pytest.raises(FileNotFoundError, match=r"nothing\.duckdb: no history store there"):
        snapshot_from_store(Store(path))
    assert not path.exists()


def test_a_store_without_samples_asks_for_an_ingest(tmp_path: Path) -> None:
    store = Store(tmp_path / "history.duckdb")
    store.migrate()
    with pytest.raises(ValueError, match="no node samples yet; run an ingest"):
        snapshot_from_store(store)


def test_a_store_from_before_guest_config_asks_for_one_ingest_and_is_left_as_it_was(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE schema_version (version INTEGER, description VARCHAR, applied TIMESTAMP)"
        )
        for step in MIGRATIONS[:2]:
            con.execute(step.sql)
            con.execute("INSERT INTO schema_version VALUES (?, ?, now())", [step.version, "x"])
    with pytest.raises(ValueError, match="schema version 2, but a snapshot needs version 3"):
        snapshot_from_store(Store(path))
    assert Store(path).schema_version() == 2


def test_the_snapshot_only_opens_the_file_read_only(store: Store) -> None:
    with duckdb.connect(str(store.path), read_only=True):
        assert len(snapshot_from_store(store).guests) == 2
