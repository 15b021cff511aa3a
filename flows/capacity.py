"""The `capacity_report` flow: headroom, days until exhaustion, N+1, imbalance, top movers.

Published as Prefect artifacts (markdown plus one table per section) and, when asked, as one
offline HTML file with its plots embedded. History older than the raw retention comes from the
5-minute roll-up (its means), newer from the raw samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from analytics.features import model_columns
from analytics.history import node_history, recent_history
from analytics.report import CapacityReport, build_report, table_rows, to_html, to_markdown
from engine import Guest
from flows.observe import Observation, observe
from flows.runtime import Runtime, connect, current_settings
from tasks.forecast import latest_model

BUSIEST = 6


@dataclass(frozen=True)
class CapacityOutcome:
    report: CapacityReport
    markdown: str
    html_path: str | None


def forecast_vs_actual(rt: Runtime, guests: tuple[Guest, ...], now: float) -> pl.DataFrame | None:
    """CPU of the busiest guests (host cores): actual, and what the model said one horizon
    earlier for the window ending at each point."""
    horizon = rt.settings.forecast.horizon_minutes
    model, _ = latest_model(rt.settings.model_dir, "cpu", horizon)
    if model is None:
        return None
    busiest = sorted((g for g in guests if g.running), key=lambda g: -g.cpu_used)[:BUSIEST]
    if not busiest:
        return None
    cores = pl.DataFrame(
        {"series": [str(g.vmid) for g in busiest], "cores": [float(g.vcpus) for g in busiest]}
    )
    history = recent_history(rt.store, now, vmids=[g.vmid for g in busiest]).join(
        cores, on="series", how="inner"
    )
    if history.is_empty():
        return None
    said = model.forecast(history.select(model_columns(history, "cpu")), "cpu", horizon)
    said = said.with_columns(pl.col("ts") + horizon * 60)
    return (
        history.join(said, on=["series", "ts"], how="left")
        .select(
            "series",
            pl.from_epoch("ts", time_unit="s").alias("ts"),
            (pl.col("cpu") * pl.col("cores")).alias("actual"),
            (pl.col("mean") * pl.col("cores")).alias("mean"),
            (pl.col("p90") * pl.col("cores")).alias("p90"),
            pl.lit("cores").alias("unit"),
        )
        .drop_nulls()
        .sort("series", "ts")
    )


@task(name="build-report", cache_policy=NO_CACHE)
def build(rt: Runtime, obs: Observation, days: float) -> CapacityReport:
    snapshot = obs.snapshot
    return build_report(
        snapshot,
        rt.settings.balance_policy(),
        node_history=node_history(rt.store, snapshot, days),
        migrations=rt.store.migrations(),
        guest_names={g.vmid: g.name for g in snapshot.guests},
        forecast_vs_actual=forecast_vs_actual(rt, snapshot.guests, snapshot.now),
        horizon_min=rt.settings.forecast.horizon_minutes,
        title="Capacity report",
    )


@flow(name="capacity-report")
def capacity_report(html: str | None = None, days: float = 30.0) -> CapacityOutcome:
    """Capacity now and at the forecast horizon; ``html`` also writes the standalone page."""
    if not 1 <= days <= 3650:
        raise ValueError(f"days: expected 1 to 3650, got {days!r}")
    rt = connect(current_settings())
    obs = observe(rt)
    report = build(rt, obs, days)
    markdown = to_markdown(report)
    create_markdown_artifact(markdown=markdown, key="proxflow-capacity", description=report.title)
    for section, rows in table_rows(report).items():
        key = "proxflow-capacity-" + section.replace("_", "-").lower()
        create_table_artifact(table=rows or [{"note": "no data"}], key=key, description=section)
    path = None
    if html:
        out = Path(html)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(to_html(report), encoding="utf-8")
        path = str(out)
        get_run_logger().info("wrote the capacity report to %s", out)
    return CapacityOutcome(report, markdown, path)
