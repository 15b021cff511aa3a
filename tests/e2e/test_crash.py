"""An evacuation killed mid-migration, then run again: nothing moves twice, every record closes.

The first run is a plain process (the flow called from Python against the real Prefect server),
SIGKILLed the moment the simulator reports a migration under way: no `finally`, no lease
release, a history record left `running`. The second run must finish that record by following
the task it finds there, not by migrating the guest again, and then empty the node.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import polars as pl
import pytest

from analytics import Store
from pvesim import SimConfig, Simulator
from tests.conftest import Control, token_client, write_config
from tests.e2e.conftest import PrefectServer, set_up
from tests.e2e.processes import BIN, Processes, run, wait_for
from tests.e2e.timeline import Interval, brackets, migrations

pytestmark = pytest.mark.slow

NODE = "pve5"  # six small guests: a short evacuation
SLOW = 0.5  # a 4 GiB live migration (~6 simulated s) takes ~12 real s: time to kill it in
FAST = 50.0  # after the kill, so the rest of the evacuation takes a few real seconds
EVACUATE = f"from flows.balance import evacuate; evacuate(node={NODE!r})"


@dataclass(frozen=True)
class Crash:
    interrupted: list[dict[str, Any]]  # migrations started and not finished at the kill
    intervals: list[Interval]
    records: pl.DataFrame
    guests_left: list[int]  # on the node after the second run
    skipped_by_plan: list[int]  # guests the second run's plan says cannot leave the node


@pytest.fixture(scope="module")
def crash(prefect_api: PrefectServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crash]:
    base = tmp_path_factory.mktemp("crash")
    sim = Simulator(SimConfig(scenario="demo", speed=SLOW, auth_failure_delay=0)).start()
    procs = Processes(base, prefect_api.env)
    try:
        control = Control(sim)
        config = write_config(
            base / "proxflow.yaml",
            sim,
            base / "data",
            migrations={
                "cluster_limit": 2,
                "node_limit": 1,
                "lease_seconds": 60,  # the server's minimum
                "poll_seconds": 0.2,
            },
        )
        env = {**prefect_api.env, "PROXFLOW_CONFIG": str(config)}
        procs.env = env
        settings = set_up(config)

        first = procs.start("first-run", BIN / "python", "-c", EVACUATE)

        def in_flight() -> list[dict[str, Any]]:
            """Migrations under way whose UPID the run has recorded (it logs them after)."""
            if first.popen.poll() is not None:
                pytest.fail(f"the first run ended before any migration:\n{first.log.read_text()}")
            seen = control.events()
            done = {e["upid"] for e in seen if e["kind"] == "migration_finished"}
            log = first.log.read_text(errors="replace")
            return [
                e
                for e in seen
                if e["kind"] == "migration_started"
                and e["upid"] not in done
                and f"migrating {e['vmid']} " in log
            ]

        interrupted = wait_for("a recorded migration of the first run", in_flight, 180, first.log)
        first.popen.kill()  # SIGKILL: no cleanup of any kind
        first.popen.wait(timeout=10)
        control.post("clock", speed=FAST)

        # The dead run's slots (the cluster slot and both nodes') stay taken until their lease
        # runs out: lease_seconds (60, the server's minimum) after it was taken, plus up to one
        # repossessor loop (2 s here). The second run waits that out, about a minute, before it
        # may follow the interrupted migration.
        run([BIN / "python", "-c", EVACUATE], env, timeout=300)

        intervals = migrations(control.events())
        store = Store(settings.store_path)
        records = store.read(
            "SELECT plan_id, vmid, upid, status, epoch(started) AS started, "
            "epoch(finished) AS finished, result FROM migrations"
        )
        skips = store.read("SELECT skips FROM plans ORDER BY created DESC LIMIT 1")["skips"][0]
        pve = token_client(sim)
        left = [g["vmid"] for kind in ("qemu", "lxc") for g in pve.nodes(NODE).get(kind)]
        yield Crash(
            interrupted,
            intervals,
            records,
            guests_left=sorted(left),
            skipped_by_plan=sorted(s["vmid"] for s in json.loads(skips) if s["node"] == NODE),
        )
    finally:
        procs.stop_all()
        sim.stop()


def test_the_first_run_was_killed_with_a_migration_in_flight(crash: Crash) -> None:
    assert len(crash.interrupted) == 1  # one node's guests: one at a time
    assert crash.interrupted[0]["source"] == NODE


def test_every_guest_is_migrated_exactly_once(crash: Crash) -> None:
    counts = Counter(i.vmid for i in crash.intervals)
    assert counts and all(n == 1 for n in counts.values()), counts
    assert [i for i in crash.intervals if not i.ok] == []


def test_the_interrupted_migration_record_ends_complete(crash: Crash) -> None:
    victim = crash.interrupted[0]
    rows = crash.records.filter(pl.col("vmid") == victim["vmid"]).to_dicts()
    assert len(rows) == 1, rows
    row = rows[0]
    (done,) = [i for i in crash.intervals if i.vmid == victim["vmid"]]
    assert row["upid"] == done.upid
    assert row["status"] == "ok", row
    assert brackets(row["started"], row["finished"], done), (row, done)


def test_every_record_is_closed_and_matches_a_real_migration(crash: Crash) -> None:
    assert crash.records.filter(pl.col("status") != "ok").is_empty(), crash.records
    assert sorted(map(str, crash.records["upid"])) == sorted(i.upid for i in crash.intervals)


def test_the_second_run_never_migrated_on_the_node_while_the_dead_runs_move_was_in_flight(
    crash: Crash,
) -> None:
    # the dead run still held the node's slot (until its lease ran out); the node limit is 1,
    # so no migration touching the node may overlap another one, across both runs
    on_node = sorted(
        (i for i in crash.intervals if NODE in (i.source, i.target)), key=lambda i: i.start
    )
    assert len(on_node) >= 2
    for earlier, later in itertools.pairwise(on_node):
        assert later.start >= earlier.end, (earlier, later)


def test_the_second_run_empties_the_node_of_every_guest_that_may_leave(crash: Crash) -> None:
    assert crash.guests_left == crash.skipped_by_plan
