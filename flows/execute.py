"""The second half: carry out a plan's moves, safely in parallel, and finish what a crash left.

The planner orders moves as if made one after another, each on the state the previous ones
left. Moves run in parallel here (bounded by the Prefect limits), so a move waits for every
earlier move *out of its target node*: those are the ones that make room for it, or take an
anti-affine partner away, in the plan's arithmetic. A move whose prerequisite did not complete
is skipped rather than risk overfilling its target.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import cast

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.logging import get_run_logger

from engine import Move, Plan, Reason
from flows.progress import reporter
from flows.runtime import Runtime
from tasks.limits import ExecutionLimits, migration_slots
from tasks.migrate import MoveResult, follow, migrate
from tasks.records import MigrationRow, record_migration, unfinished_migrations


def limits_of(rt: Runtime) -> ExecutionLimits:
    m = rt.settings.migrations
    return ExecutionLimits(
        cluster=m.cluster_limit,
        node=m.node_limit,
        slot_timeout=m.slot_timeout,
        task_timeout=m.task_timeout,
        lease_seconds=m.lease_seconds,
        poll_seconds=m.poll_seconds,
    )


def prerequisites(moves: Sequence[Move]) -> list[list[int]]:
    """For each move, the indexes of earlier moves it must wait for."""
    out: list[list[int]] = []
    for i, move in enumerate(moves):
        out.append(
            [
                j
                for j, earlier in enumerate(moves[:i])
                if earlier.source == move.target or earlier.vmid == move.vmid
            ]
        )
    return out


def _placeholder(row: MigrationRow) -> Move:
    return Move(
        vmid=row.vmid,
        name=str(row.vmid),
        kind="qemu",
        source=row.source,
        target=row.target,
        reason=Reason.BALANCE,
        detail="resumed after an interrupted run",
        online=True,
        restart=False,
        with_local_disks=False,
        mem_bytes=0,
        disk_bytes=0,
        gain=0.0,
        cost=0.0,
    )


@task(name="resume-interrupted", cache_policy=NO_CACHE)
def resume_interrupted(rt: Runtime) -> list[MoveResult]:
    """Complete the records of migrations an interrupted run started, without migrating again.

    An unfinished record may also belong to a run that is moving that guest right now: a
    record is only ever written while its run holds the move's node slots. So each one is
    settled only after taking those slots and reading it again; a live run has finished it by
    then, a dead run's slots come back when its leases expire.

    With a UPID the task is followed to its end. Without one the run stopped between recording
    the intent and PVE's answer: if the guest is on the target or still migrating the request
    got through (wait for it), if it is where it was and unlocked, it never started.
    """
    logger = get_run_logger()
    limits = limits_of(rt)
    results: list[MoveResult] = []
    for seen in unfinished_migrations(rt.store):
        with migration_slots(seen.source, seen.target, limits):
            still = unfinished_migrations(rt.store, only=seen.id)
            if not still:
                continue  # its own run finished it while we waited for the slots
            row = still[0]
            logger.warning(
                "resuming migration record %s of %d (%s -> %s), left %s by an interrupted run",
                row.id,
                row.vmid,
                row.source,
                row.target,
                row.status,
            )
            results.append(_resume(rt, row, _placeholder(row), limits))
    return results


def _settle_without_upid(
    rt: Runtime, row: MigrationRow, limits: ExecutionLimits
) -> tuple[str, str]:
    """Where an intent without a UPID ended: wait out a migration in flight, then look."""
    gw = rt.gateway
    deadline = time.monotonic() + limits.task_timeout
    where = gw.locate(row.vmid)
    while where is not None and where.lock == "migrate" and time.monotonic() < deadline:
        time.sleep(limits.poll_seconds)
        where = gw.locate(row.vmid)
    if where is None:
        return "failed", "the guest no longer exists"
    if where.lock == "migrate":
        return "running", "still migrating"
    if where.node == row.target:
        return "ok", "found on the target after an interrupted run"
    return "skipped", "never started: the run stopped before PVE accepted the request"


def _resume(rt: Runtime, row: MigrationRow, move: Move, limits: ExecutionLimits) -> MoveResult:
    gw = rt.gateway
    if row.upid is not None:
        return follow(gw, rt.store, row, move, limits)
    status, detail = _settle_without_upid(rt, row, limits)
    if status != "running":
        row.status, row.result, row.finished = status, detail, gw.cluster_time()
        record_migration(rt.store, row)
    return MoveResult(row.vmid, str(row.vmid), row.source, row.target, status, detail)


def execute(rt: Runtime, plan: Plan, plan_id: str) -> list[MoveResult]:
    """Run every move of the plan as its own task; return their results in plan order."""
    if not plan.moves:
        return []
    limits = limits_of(rt)
    policy = rt.settings.balance_policy()
    progress = reporter().move
    futures: list[PrefectFuture[MoveResult]] = []
    for move, waits in zip(plan.moves, prerequisites(plan.moves), strict=True):
        # Prefect resolves these futures to their results before the task body runs
        before = cast(Sequence[MoveResult], [futures[j] for j in waits])
        futures.append(
            migrate.submit(rt.gateway, rt.store, plan_id, move, limits, policy, before, progress)
        )
    results: list[MoveResult] = []
    for move, future in zip(plan.moves, futures, strict=True):
        outcome = future.result(raise_on_failure=False)
        if isinstance(outcome, MoveResult):
            results.append(outcome)
        else:
            results.append(
                MoveResult(
                    move.vmid,
                    move.name,
                    move.source,
                    move.target,
                    "failed",
                    f"task crashed: {outcome!r}"[:300],
                )
            )
    return results
