"""The `train` flow: fit the forecasters on the history and promote them only if they win.

Scheduled daily. A candidate is saved (and used by later plans) only when it beats the naive
baselines and the current model on a time-ordered validation split; otherwise the current
model stays. Both outcomes are recorded in the store and shown as an artifact.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from analytics.history import training_frame
from flows.ingest import maintain
from flows.progress import steps
from flows.runtime import Runtime, connect, current_settings
from tasks.forecast import COLUMNS, TrainingResult, train_one
from tasks.records import write


@task(name="fit", cache_policy=NO_CACHE, task_run_name="fit-{column}")
def fit(rt: Runtime, frame: pl.DataFrame, column: str) -> TrainingResult:
    s = rt.settings
    result = train_one(
        frame, s.model_dir, column, s.forecast.horizon_minutes, s.forecast.keep_models
    )
    get_run_logger().info("%s model: %s", column, result.detail)
    return result


def _record(rt: Runtime, results: list[TrainingResult], now: float) -> None:
    rows = [
        {
            "model_id": f"{r.column}-{r.horizon_min}m-{int(now)}",
            "created": now,
            "path": r.path or "",
            "metadata": json.dumps(
                {
                    "column": r.column,
                    "horizon_min": r.horizon_min,
                    "series": r.series,
                    "rows": r.rows,
                    "scores": r.scores,
                    "baselines": r.baselines,
                    "current": r.current,
                    "detail": r.detail,
                }
            ),
            "promoted": r.promoted,
        }
        for r in results
    ]
    write(rt.store, "models", pl.DataFrame(rows))


@flow(name="train")
def train() -> list[TrainingResult]:
    """Train CPU and memory forecasters on the history; promote each only if it wins."""
    rt = connect(current_settings())
    now = rt.gateway.cluster_time()
    maintain(rt, now, force=True)
    frame = training_frame(rt.store, now, rt.settings.forecast.training_days)
    progress = steps("training forecasters")
    results = []
    for i, column in enumerate(COLUMNS):
        progress(i, len(COLUMNS))
        results.append(fit(rt, frame, column))
    progress(len(COLUMNS), len(COLUMNS))
    _record(rt, results, datetime.now(UTC).timestamp())
    create_table_artifact(
        key="proxflow-training",
        description="forecaster training: validation scores against the naive baselines",
        table=[
            {
                "column": r.column,
                "series": r.series,
                "rows": r.rows,
                "model MAE": round(r.scores.get("mae", float("nan")), 5),
                "best baseline MAE": round(
                    min((b["mae"] for b in r.baselines.values()), default=float("nan")), 5
                ),
                "p90 coverage": round(r.scores.get("coverage", float("nan")), 3),
                "promoted": r.promoted,
                "detail": r.detail,
            }
            for r in results
        ],
    )
    return results
