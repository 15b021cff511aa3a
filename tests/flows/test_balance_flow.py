"""The balance and evacuate flows end to end against the simulator, judged by its event log."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

from analytics import Store
from bench.violations import check
from engine import Policy, loads
from flows.balance import balance, evacuate
from flows.settings import Settings
from pvesim import Simulator
from tasks.limits import set_paused
from tests.conftest import Control

BUDGET = {"max_moves": 20, "max_moves_per_node": 10}


def latest_artifact(key: str) -> str:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert found, f"no artifact {key}"
    return str(found[0].data)


def migrations(control: Control) -> list[dict[str, Any]]:
    return control.events("migration_started")


def finished(control: Control) -> list[dict[str, Any]]:
    return control.events("migration_finished")


@pytest.fixture
def demo(make_sim: Callable[..., Simulator]) -> Simulator:
    # 600 simulated seconds per second: a minute-long migration takes a tenth of a second
    return make_sim("demo", speed=600.0)


def test_balance_brings_the_demo_under_the_target_with_no_hard_rule_broken(
    demo: Simulator, configure: Callable[..., Settings]
) -> None:
    settings = configure(demo, policy=BUDGET)
    policy = Policy.from_mapping(BUDGET)
    outcome = balance(dry_run=False)
    control = Control(demo)
    done = [(e["vmid"], e["source"], e["target"]) for e in finished(control) if e["ok"]]
    planned = [(m.vmid, m.source, m.target) for m in outcome.plan.moves]
    assert outcome.executed and outcome.plan.moves
    assert all(r.status == "ok" for r in outcome.results), outcome.results
    # the simulator moved exactly what the plan said, each guest once
    assert sorted(done) == sorted(planned)
    assert len({vmid for vmid, _, _ in done}) == len(done)
    # predicted load after the moves the simulator actually made: under the policy target
    moved = {vmid: target for vmid, _, target in done}
    after = replace(
        outcome.snapshot,
        guests=tuple(replace(g, node=moved.get(g.vmid, g.node)) for g in outcome.snapshot.guests),
    )
    _, imbalance = loads(after, policy)
    assert imbalance < policy.target_imbalance
    assert imbalance == pytest.approx(outcome.plan.imbalance_after)
    # an independent checker finds no hard rule the moves broke
    assert [v for v in check(outcome.snapshot, policy, done) if v.new] == []
    assert settings.store_path.exists()


def test_running_balance_again_migrates_no_guest_twice(
    make_sim: Callable[..., Simulator], configure: Callable[..., Settings]
) -> None:
    # a real-time-ish clock: both runs fit well inside the 60-minute cooldown
    sim = make_sim("demo", speed=60.0)
    configure(sim, policy=BUDGET)
    first = balance(dry_run=False)
    again = balance(dry_run=False)
    moved_first = {m.vmid for m in first.plan.moves}
    assert moved_first
    # loads drift a little between the runs, so a second run may still act, but never on a
    # guest the first run moved (cooldown), and the simulator never migrates one guest twice
    assert moved_first.isdisjoint(m.vmid for m in again.plan.moves)
    assert {s.vmid for s in again.plan.skipped if s.reason.value == "cooldown"} <= moved_first
    vmids = [e["vmid"] for e in migrations(Control(sim))]
    assert len(vmids) == len(set(vmids))


def test_a_dry_run_plans_and_publishes_but_never_migrates(
    demo: Simulator, configure: Callable[..., Settings]
) -> None:
    configure(demo, policy=BUDGET)
    outcome = balance(dry_run=True)
    assert outcome.plan.moves and not outcome.executed
    assert migrations(Control(demo)) == []
    assert "Balance plan" in latest_artifact("proxflow-plan")


def test_scheduled_runs_under_manual_automation_only_plan(
    demo: Simulator, configure: Callable[..., Settings]
) -> None:
    configure(demo, policy={**BUDGET, "automation": "manual"})
    outcome = balance()  # dry_run=None: what a schedule sends
    assert outcome.plan.moves and not outcome.executed
    assert "manual" in outcome.why_not_executed
    assert migrations(Control(demo)) == []


def test_scheduled_runs_under_auto_automation_execute(
    demo: Simulator, configure: Callable[..., Settings]
) -> None:
    configure(demo, policy={**BUDGET, "automation": "auto"})
    outcome = balance()
    assert outcome.executed
    assert len(migrations(Control(demo))) == len(outcome.plan.moves)


def test_the_kill_switch_stops_every_new_migration(
    demo: Simulator, configure: Callable[..., Settings]
) -> None:
    configure(demo, policy=BUDGET)
    set_paused(True)
    try:
        outcome = balance(dry_run=False)
    finally:
        set_paused(False)
    assert outcome.results and all(r.status == "skipped" for r in outcome.results)
    # moves that wait for a skipped one say so; every other one names the switch
    own = [r for r in outcome.results if "waits for earlier" not in r.detail]
    assert own and all("kill switch" in r.detail for r in own)
    assert migrations(Control(demo)) == []


def test_without_quorum_nothing_moves_and_the_reason_is_given(
    demo: Simulator, configure: Callable[..., Settings]
) -> None:
    configure(demo, policy=BUDGET)
    control = Control(demo)
    control.post("quorum", quorate=0)
    outcome = balance(dry_run=False)
    assert not outcome.executed
    assert "quorum" in outcome.why_not_executed
    assert migrations(control) == []
    assert "not executed: the cluster has no quorum" in latest_artifact("proxflow-balance-outcome")


def test_a_failing_migration_is_recorded_failed_and_nothing_unplanned_moves(
    demo: Simulator, configure: Callable[..., Settings]
) -> None:
    settings = configure(demo, policy=BUDGET)
    preview = balance(dry_run=True)
    victim = preview.plan.moves[0].vmid
    control = Control(demo)
    control.post(f"guests/{victim}/fail-next-migration", reason="simulated disk error")
    outcome = balance(dry_run=False)
    by_vmid = {r.vmid: r for r in outcome.results}
    assert by_vmid[victim].status == "failed"
    assert "task failed" in by_vmid[victim].detail
    assert f"{victim} " in latest_artifact("proxflow-balance-outcome")
    assert "failed" in latest_artifact("proxflow-plan-results")
    planned = {m.vmid for m in outcome.plan.moves}
    assert {e["vmid"] for e in migrations(control)} <= planned
    rows = Store(settings.store_path).read(
        "SELECT status, upid, finished FROM migrations WHERE vmid = $v", {"v": victim}
    )
    assert rows["status"].to_list() == ["failed"]
    assert rows["upid"][0] and rows["finished"][0] is not None


def test_a_locked_guest_is_left_alone_with_its_reason(
    demo: Simulator, configure: Callable[..., Settings]
) -> None:
    configure(demo, policy=BUDGET)
    preview = balance(dry_run=True)
    victim = preview.plan.moves[-1].vmid
    control = Control(demo)
    control.post(f"guests/{victim}/lock", lock="backup")
    outcome = balance(dry_run=False)
    assert victim not in {m.vmid for m in outcome.plan.moves}
    assert any(s.vmid == victim and s.reason.value == "locked" for s in outcome.plan.skipped)
    assert victim not in {e["vmid"] for e in migrations(control)}


def test_an_offline_node_is_neither_a_source_nor_a_target(
    demo: Simulator, configure: Callable[..., Settings]
) -> None:
    configure(demo, policy=BUDGET)
    control = Control(demo)
    control.post("nodes/pve5/offline")
    outcome = balance(dry_run=False)
    assert outcome.results
    touched = {e["source"] for e in migrations(control)} | {
        e["target"] for e in migrations(control)
    }
    assert "pve5" not in touched


def test_api_errors_and_latency_are_retried_and_the_run_completes(
    demo: Simulator, configure: Callable[..., Settings]
) -> None:
    configure(demo, policy=BUDGET)
    control = Control(demo)
    control.post("faults", error_rate=0.2, error_code=503, latency=0.01, path="/cluster/resources")
    outcome = balance(dry_run=False)
    assert outcome.executed
    assert all(r.status == "ok" for r in outcome.results), outcome.results


def test_evacuation_empties_the_node_of_every_guest_that_may_move(
    demo: Simulator, configure: Callable[..., Settings]
) -> None:
    configure(demo, policy=BUDGET)
    outcome = evacuate(node="pve2", dry_run=False)
    assert outcome.plan.moves and all(m.source == "pve2" for m in outcome.plan.moves)
    assert all(r.status == "ok" for r in outcome.results), outcome.results
    moved = {m.vmid for m in outcome.plan.moves}
    staying = {g.vmid for g in outcome.snapshot.guests if g.node == "pve2"} - moved
    # whatever stays has a reason: containers without restart, ignored or pinned guests
    reasons = {s.vmid for s in outcome.plan.skipped if s.node == "pve2"}
    assert staying <= reasons


def test_evacuating_an_unknown_node_names_the_known_ones(
    demo: Simulator, configure: Callable[..., Settings]
) -> None:
    configure(demo)
    with pytest.raises(ValueError, match="no node named 'pve9'; nodes are pve1, pve2"):
        evacuate(node="pve9")
