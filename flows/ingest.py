"""The `ingest` flow: one read of the cluster into the history, backfilled on first run.

Scheduled every minute. Safe to re-run at any time: samples are keyed by entity and time, so a
repeated cycle adds nothing twice. Roll-ups and retention run when the newest 5-minute bucket
is older than `MAINTAIN_EVERY`, not every minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from analytics import Retention, Store
from flows.observe import ingest_cycle
from flows.progress import steps
from flows.runtime import Runtime, connect, current_settings
from tasks.ingest import backfill as backfill_history
from tasks.limits import store_slot

MAINTAIN_EVERY = timedelta(minutes=30)


@dataclass(frozen=True)
class IngestSummary:
    nodes: int
    guests: int
    node_rows: int
    guest_rows: int
    backfilled_rows: int
    api_calls: int
    problems: tuple[str, ...]
    maintained: bool


@task(name="backfill", cache_policy=NO_CACHE)
def backfill_task(rt: Runtime) -> int:
    timeframe = rt.settings.forecast.backfill
    nodes, guests = backfill_history(
        rt.gateway, rt.store, timeframe, progress=steps(f"backfilling {timeframe} of history")
    )
    get_run_logger().info("backfilled %d node and %d guest samples (%s)", nodes, guests, timeframe)
    return nodes + guests


def _retention(rt: Runtime) -> Retention:
    s = rt.settings.store
    return Retention(
        raw=timedelta(days=s.raw_days),
        five_min=timedelta(days=s.five_minute_days),
        hourly=timedelta(days=s.hourly_days),
    )


def maintenance_due(store: Store, now: datetime) -> bool:
    newest = store.newest_rollup()
    return newest is None or newest < now.replace(tzinfo=None) - MAINTAIN_EVERY


@task(name="roll-up", cache_policy=NO_CACHE)
def maintain(rt: Runtime, now: float, force: bool = False) -> bool:
    when = datetime.fromtimestamp(now, UTC)
    if not force and not maintenance_due(rt.store, when):
        return False
    with store_slot():
        deleted = rt.store.maintain(when, _retention(rt))
    get_run_logger().info("rolled up and expired history: %s", deleted)
    return True


@flow(name="ingest")
def ingest(backfill: bool | None = None, maintain_now: bool = False) -> IngestSummary:
    """Read the cluster once into the history (``backfill``: None = only when it is empty)."""
    rt = connect(current_settings())
    backfilled = 0
    if backfill or (backfill is None and not rt.store.has_guest_samples()):
        backfilled = backfill_task(rt)
    result = ingest_cycle(rt)
    inv = result.inventory
    maintained = maintain(rt, inv.taken_at, force=maintain_now or backfilled > 0)
    summary = IngestSummary(
        len(inv.nodes),
        len(inv.guests),
        result.node_rows,
        result.guest_rows,
        backfilled,
        result.calls,
        result.problems,
        maintained,
    )
    lines = [
        "# Ingest\n",
        f"- {summary.nodes} nodes, {summary.guests} guests in {summary.api_calls} API calls\n",
        f"- new rows: {summary.node_rows} node, {summary.guest_rows} guest"
        + (f"; backfilled {backfilled}\n" if backfilled else "\n"),
        *(f"- problem: {p}\n" for p in summary.problems[:50]),
    ]
    create_markdown_artifact(
        markdown="".join(lines), key="proxflow-ingest", description="last ingest"
    )
    return summary
