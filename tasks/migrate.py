"""One Prefect task per planned move: guarded, idempotent, recorded before and after.

Order of work, and why:

1. kill switch, before waiting for slots (an operator's stop must not wait in a queue);
2. the cluster slot and both node slots, all or nothing (`tasks.limits.migration_slots`);
3. kill switch again: a slot wait can be long and the world changes meanwhile;
4. where is the guest *now*? Already on the target or already migrating means another run
   did or does the work (skip); somewhere else than the plan's source means the plan is stale
   (skip: never move a guest the plan did not intend); and would the target, as it is now,
   still take it under every hard rule? Plans made apart (a balance and an evacuation at
   once) must not together overfill a node (skip otherwise);
5. record the intent, then POST (the gateway checks quorum right before; without it the
   move ends skipped); record the UPID at once, so a crash after the POST leaves a
   record that the next run resumes instead of migrating again;
6. wait for the task (``WARNINGS: n`` is success, ``hamigrate`` is followed), verify the guest
   landed, record the outcome with its timings.

Expected failures (refusals, failed tasks, stale plans) end as a `MoveResult`, never as an
exception, so one bad move does not hide the others' outcomes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from analytics import Store
from engine import Move, Policy
from engine.whatif import why_not_now
from tasks.limits import ExecutionLimits, LimitError, migration_slots, pause_reason
from tasks.pve import Gateway, Inventory, PveError, QuorumLostError, RefusedError
from tasks.records import MigrationRow, record_migration


@dataclass(frozen=True)
class MoveResult:
    vmid: int
    name: str
    source: str
    target: str
    status: str  # ok | failed | skipped
    detail: str
    upid: str | None = None
    seconds: float | None = None

    @property
    def done(self) -> bool:
        return self.status == "ok"


Progress = Callable[[Move, str], None]


def _noop(move: Move, stage: str) -> None:
    return None


def _result(move: Move, status: str, detail: str, **kw: object) -> MoveResult:
    return MoveResult(move.vmid, move.name, move.source, move.target, status, detail, **kw)  # type: ignore[arg-type]


def _blocked_by(move: Move, before: Sequence[MoveResult]) -> str | None:
    failed = [r for r in before if not r.done]
    if failed:
        names = ", ".join(f"{r.vmid} ({r.status})" for r in failed)
        return f"waits for earlier move(s) that did not complete: {names}"
    return None


def _where(inventory: Inventory, move: Move, policy: Policy) -> str | None:
    """None when the move may go ahead, else why it must not, from a fresh read of the cluster:
    where the guest is, its lock, and the target's room and rules as they are now."""
    where = inventory.guest(move.vmid)
    if where is None:
        return "the guest no longer exists"
    if where.node == move.target:
        return f"already on {move.target}"
    if where.lock == "migrate":
        return "already migrating (another run is moving it)"
    if where.node != move.source:
        return f"now on {where.node}, not on {move.source} as planned; the plan is stale"
    if where.lock:
        return f"locked ({where.lock})"
    veto = why_not_now(inventory.snapshot(), policy, move.vmid, move.target)
    return f"not moved now: {veto}" if veto else None


def run_move(
    gateway: Gateway,
    store: Store,
    plan_id: str,
    move: Move,
    limits: ExecutionLimits,
    policy: Policy,
    before: Sequence[MoveResult] = (),
    progress: Progress = _noop,
    log: Callable[[str], None] = print,
) -> MoveResult:
    """Execute one move (the body of the `migrate` task, callable without Prefect's engine)."""
    blocked = _blocked_by(move, before)
    if blocked:
        return _result(move, "skipped", blocked)
    paused = pause_reason()
    if paused:
        return _result(move, "skipped", paused)
    progress(move, "waiting for slots")
    try:
        with migration_slots(move.source, move.target, limits):
            return _guarded(gateway, store, plan_id, move, limits, policy, progress, log)
    except LimitError as exc:
        return _result(move, "skipped", str(exc))
    except TimeoutError:
        return _result(move, "skipped", f"no migration slot within {limits.slot_timeout:g} s")


def _guarded(
    gateway: Gateway,
    store: Store,
    plan_id: str,
    move: Move,
    limits: ExecutionLimits,
    policy: Policy,
    progress: Progress,
    log: Callable[[str], None],
) -> MoveResult:
    paused = pause_reason()
    if paused:
        return _result(move, "skipped", paused)
    try:
        now = gateway.inventory()
    except PveError as exc:
        return _result(move, "skipped", f"could not check the guest before moving it: {exc}")
    stale = _where(now, move, policy)
    if stale:
        return _result(move, "skipped", stale)
    row = MigrationRow(
        id=f"{plan_id}:{move.vmid}",
        plan_id=plan_id,
        vmid=move.vmid,
        source=move.source,
        target=move.target,
        started=now.taken_at,
    )
    record_migration(store, row)
    progress(move, "starting")
    try:
        row.upid = gateway.start_migration(move)  # checks quorum first, never POSTs without
    except QuorumLostError as exc:
        return _finish(store, row, move, "skipped", str(exc), gateway)
    except RefusedError as exc:
        return _finish(store, row, move, "failed", f"refused by PVE: {exc}", gateway)
    except PveError as exc:
        return _finish(store, row, move, "failed", f"could not start: {exc}", gateway)
    row.status = "running"
    record_migration(store, row)
    log(f"migrating {move.vmid} ({move.name}) {move.source} -> {move.target}: {row.upid}")
    progress(move, "migrating")
    return follow(gateway, store, row, move, limits)


def follow(
    gateway: Gateway, store: Store, row: MigrationRow, move: Move, limits: ExecutionLimits
) -> MoveResult:
    """Wait for a started migration, verify where the guest landed, record the outcome.

    When the wait ends without an answer (timeout, the API gone) the record stays `running`:
    the migration may still complete, and the next run's resume step settles it.
    """
    assert row.upid is not None
    try:
        outcome = gateway.wait_task(row.upid, timeout=limits.task_timeout, poll=limits.poll_seconds)
    except PveError as exc:
        detail = f"lost track of task {row.upid}: {exc}; the next run will settle its record"
        return _result(move, "failed", detail, upid=row.upid)
    if outcome.timed_out:
        detail = (
            f"task {row.upid} still running after {limits.task_timeout:g} s; "
            "the next run will settle its record"
        )
        return _result(move, "failed", detail, upid=row.upid)
    if not outcome.ok:
        return _finish(store, row, move, "failed", f"task failed: {outcome.detail}", gateway)
    if not gateway.verify(move.vmid, move.target):
        detail = f"task ended {outcome.exitstatus} but the guest is not on {move.target}"
        return _finish(store, row, move, "failed", detail, gateway)
    note = f" ({outcome.exitstatus})" if outcome.warnings else ""
    return _finish(store, row, move, "ok", f"on {move.target}{note}", gateway, outcome.finished)


def _finish(
    store: Store,
    row: MigrationRow,
    move: Move,
    status: str,
    detail: str,
    gateway: Gateway,
    finished: float | None = None,
) -> MoveResult:
    row.status = status
    row.result = detail
    row.finished = finished if finished is not None else gateway.cluster_time()
    record_migration(store, row)
    seconds = row.finished - row.started if row.started is not None else None
    return _result(move, status, detail, upid=row.upid, seconds=seconds)


@task(name="migrate", task_run_name="migrate-{move.vmid}", cache_policy=NO_CACHE)
def migrate(
    gateway: Gateway,
    store: Store,
    plan_id: str,
    move: Move,
    limits: ExecutionLimits,
    policy: Policy,
    before: Sequence[MoveResult] = (),
    progress: Progress = _noop,
) -> MoveResult:
    logger = get_run_logger()
    result = run_move(gateway, store, plan_id, move, limits, policy, before, progress, logger.info)
    level = logger.info if result.status == "ok" else logger.warning
    route = f"{move.vmid} ({move.name}) {move.source} -> {move.target}"
    level(f"{route}: {result.status}, {result.detail}")
    progress(move, result.status)
    return result
