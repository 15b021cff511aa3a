"""Ingest, place, capacity report and crash recovery, against the simulator."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from analytics import Store
from engine import Move, Reason
from flows.capacity import capacity_report
from flows.execute import limits_of, resume_interrupted
from flows.ingest import ingest
from flows.place import place
from flows.runtime import Runtime, connect
from flows.settings import Settings
from pvesim import Simulator
from tasks.limits import migration_slots
from tasks.records import MigrationRow, record_migration
from tests.conftest import Control


def intent(rt: Runtime, record_id: str, target: str) -> MigrationRow:
    """An intent record for the first running guest, as a run writes it before its POST."""
    guest = next(g for g in rt.gateway.inventory().guests if g.running)
    return MigrationRow(
        id=record_id,
        plan_id=record_id.split(":")[0],
        vmid=guest.vmid,
        source=guest.node,
        target=target,
        started=rt.gateway.cluster_time(),
    )


def test_ingest_backfills_once_then_adds_only_new_samples(
    make_sim: Callable[..., Simulator], configure: Callable[..., Settings]
) -> None:
    sim = make_sim("small", speed=0.0)
    settings = configure(sim, forecast={"backfill": "hour"})
    first = ingest()
    assert first.backfilled_rows > 0 and first.guest_rows > 0
    again = ingest()  # the clock is paused: the same instant, nothing new
    assert again.backfilled_rows == 0
    assert (again.node_rows, again.guest_rows) == (0, 0)
    Control(sim).advance(60)
    later = ingest()
    assert later.guest_rows == first.guest_rows  # one new sample per guest the cluster reports
    rows = Store(settings.store_path).read(
        "SELECT count(*) AS n, count(DISTINCT (vmid, ts)) AS d FROM guest_samples"
    )
    assert rows["n"][0] == rows["d"][0]


def test_a_steady_ingest_cycle_costs_the_same_calls_on_a_bigger_cluster(
    make_sim: Callable[..., Simulator], configure: Callable[..., Settings]
) -> None:
    calls = []
    for scenario in ("small", "large:4x200"):
        sim = make_sim(scenario, speed=0.0)
        configure(sim, forecast={"backfill": "hour"})
        ingest(backfill=False)  # first cycle reads the guests' configs once
        Control(sim).advance(60)
        calls.append(ingest(backfill=False).api_calls)
    assert calls[0] == calls[1]


def test_place_ranks_every_node_and_explains_the_ones_that_cannot_take_it(
    make_sim: Callable[..., Simulator], configure: Callable[..., Settings]
) -> None:
    configure(make_sim("demo", speed=0.0))
    ranked = place(cores=4, memory="8GiB", tags=["plb_anti_affinity_db"])
    assert len(ranked) == 5
    feasible = [p for p in ranked if p.feasible]
    assert feasible and ranked[: len(feasible)] == feasible
    # the db anti-affinity group already has a member on pve1, so pve1 must say why not
    pve1 = next(p for p in ranked if p.node == "pve1")
    assert not pve1.feasible and "anti-affinity" in pve1.why_not


def test_place_refuses_a_memory_size_it_cannot_read(
    make_sim: Callable[..., Simulator], configure: Callable[..., Settings]
) -> None:
    configure(make_sim("small", speed=0.0))
    with pytest.raises(ValueError, match=r"memory: expected bytes or a size like '4GiB'.*'lots'"):
        place(cores=2, memory="lots")


def test_the_capacity_report_is_one_offline_html_file_with_its_plots(
    make_sim: Callable[..., Simulator], configure: Callable[..., Settings], tmp_path: Path
) -> None:
    configure(make_sim("demo", speed=0.0), forecast={"backfill": "hour"})
    ingest()
    out = tmp_path / "report.html"
    outcome = capacity_report(html=str(out))
    page = out.read_text()
    assert outcome.html_path == str(out)
    assert page.count("<svg") >= 2
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "N+1" in outcome.markdown or "largest node" in outcome.markdown


def test_resuming_settles_a_record_whose_request_never_reached_pve(
    make_sim: Callable[..., Simulator], configure: Callable[..., Settings]
) -> None:
    settings = configure(make_sim("small", speed=0.0))
    rt = connect(settings)
    row = intent(rt, "p1:1", "x")
    record_migration(rt.store, row)
    results = resume_interrupted(rt)
    assert [(r.vmid, r.status) for r in results] == [(row.vmid, "skipped")]
    stored = rt.store.read("SELECT status, result FROM migrations WHERE id = 'p1:1'")
    assert stored["status"][0] == "skipped" and "never started" in stored["result"][0]
    assert resume_interrupted(rt) == []  # settled records are not resumed again


def test_resuming_follows_a_started_migration_to_its_end_without_starting_another(
    make_sim: Callable[..., Simulator], configure: Callable[..., Settings]
) -> None:
    sim = make_sim("small", speed=300.0)
    settings = configure(sim)
    rt = connect(settings)
    inv = rt.gateway.inventory()
    guest = next(g for g in inv.guests if g.running and g.kind.value == "qemu" and not g.ha_managed)
    target = next(n.name for n in inv.nodes if n.name != guest.node and n.online)
    move = Move(
        guest.vmid,
        guest.name,
        "qemu",
        guest.node,
        target,
        Reason.BALANCE,
        "",
        True,
        False,
        False,
        guest.mem_max,
        0,
        0.0,
        0.0,
    )
    upid = rt.gateway.start_migration(move)  # the interrupted run got this far
    record_migration(
        rt.store,
        MigrationRow(
            id="p2:1",
            plan_id="p2",
            vmid=guest.vmid,
            source=guest.node,
            target=target,
            upid=upid,
            status="running",
            started=inv.taken_at,
        ),
    )
    results = resume_interrupted(rt)
    assert [(r.vmid, r.status) for r in results] == [(guest.vmid, "ok")]
    started = Control(sim).events("migration_started")
    assert [e["vmid"] for e in started] == [guest.vmid]
    stored = rt.store.read("SELECT status, upid, finished FROM migrations WHERE id = 'p2:1'")
    status, recorded_upid, finished = stored.row(0)
    assert (status, recorded_upid) == ("ok", upid) and finished is not None


def test_resuming_leaves_alone_a_record_whose_run_is_still_moving_the_guest(
    make_sim: Callable[..., Simulator], configure: Callable[..., Settings]
) -> None:
    settings = configure(make_sim("small", speed=0.0))
    rt = connect(settings)
    live = intent(rt, "p3:1", "pve9")
    holding, release = threading.Event(), threading.Event()

    def the_live_run() -> None:
        with migration_slots(live.source, live.target, limits_of(rt)):
            record_migration(rt.store, live)  # intent, then PVE's answer comes slowly
            holding.set()
            release.wait(30)
            live.upid, live.status, live.result = "UPID:live", "ok", "on pve9"
            record_migration(rt.store, live)

    runner = threading.Thread(target=the_live_run)
    runner.start()
    assert holding.wait(30)
    threading.Timer(2.0, release.set).start()  # the live run finishes while resume waits
    results = resume_interrupted(rt)
    runner.join(30)
    assert results == []
    stored = rt.store.read("SELECT status, upid FROM migrations WHERE id = 'p3:1'")
    assert stored.row(0) == ("ok", "UPID:live")
