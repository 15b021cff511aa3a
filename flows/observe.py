"""The first half of every planning flow: what the cluster is and what it is about to do.

connect → privileges → ingest one cycle → forecasts → recent migrations (cooldowns) →
`ClusterSnapshot`. Each stage takes the previous stage's value and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from analytics import Store
from analytics.snapshot import HISTORY_DAYS, migration_records
from engine import ClusterSnapshot, MigrationRecord
from flows.progress import steps
from flows.runtime import Runtime
from tasks.forecast import ForecastSet, predict
from tasks.ingest import IngestResult, collect


@dataclass(frozen=True)
class Observation:
    ingest: IngestResult
    forecasts: ForecastSet
    snapshot: ClusterSnapshot

    @property
    def notes(self) -> list[str]:
        out = [self.forecasts.note]
        if self.ingest.problems:
            out.append(f"{len(self.ingest.problems)} problem(s) reading the cluster, see the log")
        return out


def recent_migrations(store: Store, now: float) -> tuple[MigrationRecord, ...]:
    """Migrations that still hold a cooldown: those of the last `HISTORY_DAYS`."""
    since = datetime.fromtimestamp(now, UTC) - timedelta(days=HISTORY_DAYS)
    return migration_records(store.completed_migrations(since))


@task(name="ingest-cycle", cache_policy=NO_CACHE)
def ingest_cycle(rt: Runtime) -> IngestResult:
    result = collect(rt.gateway, rt.store, progress=steps("reading guest configs"))
    logger = get_run_logger()
    for problem in result.inventory.problems:
        logger.warning("cluster data: %s", problem)
    logger.info(
        "ingested %d nodes, %d guests in %d API calls (%d guest configs refreshed)",
        len(result.inventory.nodes),
        len(result.inventory.guests),
        result.calls,
        result.configs_read,
    )
    return result


@task(name="forecast", cache_policy=NO_CACHE)
def forecast(rt: Runtime, ingest: IngestResult) -> ForecastSet:
    inv = ingest.inventory
    result = predict(
        rt.store,
        rt.settings.model_dir,
        inv.guests,
        rt.settings.forecast.horizon_minutes,
        inv.taken_at,
    )
    get_run_logger().info("forecast: %s", result.note)
    return result


def observe(rt: Runtime) -> Observation:
    ingested = ingest_cycle(rt)
    forecasts = forecast(rt, ingested)
    inv = ingested.inventory
    history = recent_migrations(rt.store, inv.taken_at)
    snapshot = inv.snapshot(forecasts=forecasts.forecasts, history=history)
    return Observation(ingested, forecasts, snapshot)
