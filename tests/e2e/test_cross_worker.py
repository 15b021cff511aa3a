"""Two process workers run a balance and an evacuation at the same time against one cluster.

The Prefect limits (3 migrations cluster-wide, 2 per node) are the only thing keeping the two
flow runs, in two worker processes, from trampling each other; the simulator's event log says
what really happened, the history store what the pipeline believes happened.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import polars as pl
import pytest

from analytics import Store
from bench.violations import check
from engine import ClusterSnapshot, Policy
from flows.runtime import endpoint
from pvesim import SimConfig, Simulator
from tasks.pve import Gateway
from tests.conftest import Control, write_config
from tests.e2e.conftest import PrefectServer, final_states, set_up, start_run, start_workers
from tests.e2e.processes import BIN, Processes, run
from tests.e2e.timeline import (
    Interval,
    brackets,
    migrations,
    most_at_once,
    overlapping,
)

pytestmark = pytest.mark.slow

# each limit must be able to bind on its own: five nodes with two slots each fit five
# migrations, more than the cluster's three, and three can all touch one node, more than two
CLUSTER_LIMIT = 3
NODE_LIMIT = 2
EVACUATED = "pve2"  # balance moves guests off pve1 (the hot node); this one is emptied meanwhile
SPEED = 10.0  # an 8 GiB live migration takes ~10 simulated seconds: about one real second


@dataclass(frozen=True)
class Outcome:
    runs: dict[str, Any]  # flow run by id
    balance_id: str
    evacuate_id: str
    intervals: list[Interval]
    records: pl.DataFrame  # the store's migrations joined to the plans' flow runs
    worker_logs: list[str]  # with the output of the flow runs each worker ran
    server_log: str
    secret: str  # the API token's secret, which must appear in neither
    before: ClusterSnapshot  # the cluster as both runs found it
    policy: Policy


@pytest.fixture(scope="module")
def outcome(
    prefect_api: PrefectServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Outcome]:
    base = tmp_path_factory.mktemp("cross-worker")
    sim = Simulator(SimConfig(scenario="demo", speed=SPEED, auth_failure_delay=0)).start()
    procs = Processes(base, prefect_api.env)
    try:
        config = write_config(
            base / "proxflow.yaml",
            sim,
            base / "data",
            migrations={
                "cluster_limit": CLUSTER_LIMIT,
                "node_limit": NODE_LIMIT,
                "lease_seconds": 60,
                "poll_seconds": 0.2,
            },
            policy={"max_moves": 20, "max_moves_per_node": 10, "automation": "auto"},
        )
        env = {**prefect_api.env, "PROXFLOW_CONFIG": str(config)}
        procs.env = env
        settings = set_up(config)
        before = Gateway.connect(endpoint(settings)).inventory().snapshot()
        run([BIN / "prefect", "--no-prompt", "deploy", "--all"], env)
        workers = start_workers(procs, ["worker-a", "worker-b"], "--limit", "1")
        # created together: with --limit 1 each worker takes one and they run side by side
        balance_id = start_run("balance/balance", dry_run=False)
        evacuate_id = start_run("evacuate/evacuate", node=EVACUATED)
        runs = final_states([balance_id, evacuate_id], 240, [w.log for w in workers])
        procs.stop_all()  # the workers, so the history file is ours to read
        intervals = migrations(Control(sim).events())
        store = Store(settings.store_path)
        records = store.read(
            "SELECT m.vmid, m.upid, m.status, epoch(m.started) AS started, "
            "epoch(m.finished) AS finished, p.run_id AS flow_run_id "
            "FROM migrations m JOIN plans p USING (plan_id)"
        )
        logs = [w.log.read_text(errors="replace") for w in workers]
        server_log = (prefect_api.logs / "server.log").read_text(errors="replace")
        yield Outcome(
            runs,
            balance_id,
            evacuate_id,
            intervals,
            records,
            logs,
            server_log,
            sim.token_secret,
            before,
            settings.balance_policy(),
        )
    finally:
        procs.stop_all()
        sim.stop()


def test_both_runs_complete_each_on_its_own_worker(outcome: Outcome) -> None:
    states = {i: r.state.type.value for i, r in outcome.runs.items()}
    assert set(states.values()) == {"COMPLETED"}, states
    # both workers may try to submit a run; only the one that runs it streams its output
    ran_on = {
        run_id: [n for n, log in enumerate(outcome.worker_logs) if f"/flow-run/{run_id}" in log]
        for run_id in (outcome.balance_id, outcome.evacuate_id)
    }
    assert sorted(ran_on.values()) == [[0], [1]], f"workers (by index) each run ran on: {ran_on}"


def test_the_runs_migrated_at_the_same_time_so_the_limits_had_to_arbitrate(
    outcome: Outcome,
) -> None:
    run_of = {r["upid"]: r["flow_run_id"] for r in outcome.records.iter_rows(named=True)}
    windows: dict[str, list[float]] = {}
    for e in outcome.intervals:
        start, end = windows.setdefault(run_of[e.upid], [e.start, e.end])
        windows[run_of[e.upid]] = [min(start, e.start), max(end, e.end)]
    assert set(windows) == {outcome.balance_id, outcome.evacuate_id}
    assert len(outcome.intervals) >= 8, [i.vmid for i in outcome.intervals]
    # each run was still migrating when the other had begun: without the limits their
    # thread pools (8 tasks each) would have run these moves side by side
    (a_start, a_end), (b_start, b_end) = windows.values()
    assert max(a_start, b_start) < min(a_end, b_end), windows


def test_never_more_migrations_at_once_than_the_cluster_limit(outcome: Outcome) -> None:
    assert most_at_once(outcome.intervals) <= CLUSTER_LIMIT


def test_no_node_is_ever_in_more_migrations_at_once_than_the_node_limit(outcome: Outcome) -> None:
    nodes = {n for i in outcome.intervals for n in (i.source, i.target)}
    at_once = {
        n: most_at_once([i for i in outcome.intervals if n in (i.source, i.target)]) for n in nodes
    }
    assert max(at_once.values()) <= NODE_LIMIT, at_once


def test_no_guest_is_migrated_by_both_runs_or_twice_at_once(outcome: Outcome) -> None:
    run_of = {r["upid"]: r["flow_run_id"] for r in outcome.records.iter_rows(named=True)}
    runs_per_guest: dict[int, set[str | None]] = {}
    for e in outcome.intervals:
        runs_per_guest.setdefault(e.vmid, set()).add(run_of.get(e.upid))
    assert {vmid: r for vmid, r in runs_per_guest.items() if len(r) > 1} == {}
    same_guest = [
        (a, b)
        for a, b in combinations(outcome.intervals, 2)
        if a.vmid == b.vmid and overlapping(a, b)
    ]
    assert same_guest == []


def test_together_the_two_plans_break_no_hard_rule_and_overfill_no_node(
    outcome: Outcome,
) -> None:
    # each plan was made alone on the same starting cluster; what both executed must still hold
    moves = [(e.vmid, e.source, e.target) for e in outcome.intervals]
    assert [v for v in check(outcome.before, outcome.policy, moves) if v.new] == []


def test_every_migration_has_a_complete_store_record_and_no_record_is_invented(
    outcome: Outcome,
) -> None:
    assert [e for e in outcome.intervals if not e.ok] == []
    rows = {r["upid"]: r for r in outcome.records.iter_rows(named=True)}
    for e in outcome.intervals:
        row = rows.get(e.upid)
        assert row is not None, f"no store record for {e.vmid}'s migration {e.upid}"
        assert row["status"] == "ok", row
        assert row["vmid"] == e.vmid
        # the record brackets the task: opened before the request, closed once its end was seen
        assert brackets(row["started"], row["finished"], e), (row, e)
    assert set(rows) == {e.upid for e in outcome.intervals}


def test_the_token_secret_reaches_no_log(outcome: Outcome) -> None:
    assert all(log.strip() for log in outcome.worker_logs)
    for log in [*outcome.worker_logs, outcome.server_log]:
        assert outcome.secret not in log
