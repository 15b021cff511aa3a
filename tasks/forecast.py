"""Forecasts for the planner and the training that keeps the models honest.

The store keeps raw samples (every ingest) and 5-minute roll-ups; the forecaster wants each
guest's series on a regular 5-minute grid, which :mod:`analytics.history` reads (samples
averaged per 5-minute bucket, gaps filled with the last value seen).

CPU is forecast in PVE's unit (busy fraction of the guest's own vCPUs) and handed to the planner
in host cores (× vCPUs); memory in bytes. A guest without a usable forecast is planned on its
current load (the engine's default), and the plan says how many guests that was.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from analytics import Store
from analytics.backtest import horizon_steps, score
from analytics.baselines import BASELINES
from analytics.features import WARMUP, model_columns
from analytics.forecaster import LoadForecaster, only_after, time_split
from analytics.history import recent_history
from analytics.model_store import ModelLoadError, load_latest, promote, read_metadata, save
from analytics.model_store import versions as model_versions
from engine import Forecast, Guest

COLUMNS = ("cpu", "mem")


def model_root(model_dir: Path, column: str, horizon_min: int) -> Path:
    return model_dir / f"{column}-{horizon_min}m"


@dataclass(frozen=True)
class ForecastSet:
    forecasts: tuple[Forecast, ...]
    modelled: int  # guests forecast by a trained model (or its short-history fallback)
    note: str


def latest_model(
    model_dir: Path, column: str, horizon_min: int
) -> tuple[LoadForecaster | None, str]:
    try:
        return load_latest(model_root(model_dir, column, horizon_min)), ""
    except ModelLoadError as exc:
        return None, str(exc)


def predict(
    store: Store, model_dir: Path, guests: Sequence[Guest], horizon_min: int, now: float
) -> ForecastSet:
    """Per running guest: mean and p90 of CPU (host cores) and memory (bytes) over the horizon.

    A resource without a promoted model is taken at its current value for every guest, and a
    guest the model has no forecast for keeps its current value too; the note says which.
    """
    models = {c: latest_model(model_dir, c, horizon_min) for c in COLUMNS}
    notes = [
        f"no {c} model, {c} planned on current values" for c, (m, _) in models.items() if m is None
    ]
    if all(m is None for m, _ in models.values()):
        return ForecastSet((), 0, "no trained model yet, planning on current load")
    history = recent_history(store, now)
    if history.is_empty():
        return ForecastSet((), 0, "no history yet, planning on current load")
    out: dict[str, dict[int, tuple[float, float]]] = {c: {} for c in COLUMNS}
    for column, (model, _) in models.items():
        if model is None:
            continue
        pred = model.predict(history.select(model_columns(history, column)).drop_nulls(column))
        out[column] = {
            int(r["series"]): (float(r["mean"]), float(r["p90"]))
            for r in pred.iter_rows(named=True)
            if r["mean"] is not None and math.isfinite(r["mean"]) and math.isfinite(r["p90"])
        }
    forecasts: list[Forecast] = []
    for g in guests:
        if not g.running or not (g.vmid in out["cpu"] or g.vmid in out["mem"]):
            continue
        now_cpu = g.cpu_used / max(1, g.vcpus)
        cpu, cpu_p90 = out["cpu"].get(g.vmid, (now_cpu, now_cpu))
        mem, mem_p90 = out["mem"].get(g.vmid, (float(g.mem_used), float(g.mem_used)))
        cores = max(1, g.vcpus)
        cpu_m, cpu_q = max(0.0, cpu) * cores, max(0.0, cpu, cpu_p90) * cores
        mem_m = min(max(0.0, mem), float(g.mem_max or mem))
        mem_q = min(max(mem_m, mem_p90), float(g.mem_max or mem_p90))
        forecasts.append(Forecast(g.vmid, cpu_m, cpu_q, mem_m, mem_q))
    running = sum(1 for g in guests if g.running)
    notes.insert(
        0, f"{len(forecasts)} of {running} running guests forecast {horizon_min} min ahead"
    )
    return ForecastSet(tuple(forecasts), len(forecasts), "; ".join(notes))


@dataclass(frozen=True)
class TrainingResult:
    column: str
    horizon_min: int
    series: int
    rows: int
    scores: dict[str, float]
    baselines: dict[str, dict[str, float]]
    current: dict[str, float] | None
    promoted: bool
    path: str | None
    detail: str


def train_one(
    frame: pl.DataFrame, model_dir: Path, column: str, horizon_min: int, keep: int
) -> TrainingResult:
    """Fit on the first 80 % of the time range, score on the rest against the naive baselines
    and the current model, and save the candidate only when `promote` says it wins."""
    data = frame.select(model_columns(frame, column)).drop_nulls(column)
    series = data["series"].n_unique()
    start_ts = time_split(data, 0.8) if series else 0
    # the model learns only from rows after a warm-up hour that have a horizon after them,
    # so some series must have that many rows before the split (else fitting raises)
    needed = WARMUP + horizon_steps(horizon_min)
    longest = data.filter(pl.col("ts") < start_ts)["series"].value_counts()["count"].max()
    if data.height < 200 or series == 0 or int(longest or 0) < needed:  # type: ignore[arg-type]
        return TrainingResult(
            column,
            horizon_min,
            series,
            data.height,
            {},
            {},
            None,
            False,
            None,
            f"too little history to train ({data.height} rows on the 5-minute grid; "
            f"{needed} rows of one series before the validation split are needed)",
        )
    # the forecaster boosts on one OpenMP thread by default: flow runs share hosts
    model = LoadForecaster(column, horizon_min).fit(data.filter(pl.col("ts") < start_ts))
    scores = score(data, only_after(model.forecast, start_ts), column, horizon_min)
    baselines = {
        name: score(data, only_after(f, start_ts), column, horizon_min)
        for name, f in BASELINES.items()
    }
    root = model_root(model_dir, column, horizon_min)
    current_scores: dict[str, float] | None = None
    current, _ = latest_model(model_dir, column, horizon_min)
    if current is not None:
        current_scores = score(data, only_after(current.forecast, start_ts), column, horizon_min)
    won = promote(scores, current_scores, baselines)
    path = str(save(model, root, validation_scores=scores, keep=keep)) if won else None
    best = min(baselines.items(), key=lambda kv: kv[1]["mae"])
    detail = (
        f"MAE {scores['mae']:.4g} vs best baseline {best[0]} {best[1]['mae']:.4g}"
        + (f", current model {current_scores['mae']:.4g}" if current_scores else "")
        + ("; promoted" if won else "; kept the current model")
    )
    return TrainingResult(
        column,
        horizon_min,
        series,
        data.height,
        scores,
        baselines,
        current_scores,
        won,
        path,
        detail,
    )


def saved_models(model_dir: Path, horizon_min: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for column in COLUMNS:
        found = model_versions(model_root(model_dir, column, horizon_min))
        if found:
            out[column] = read_metadata(found[-1])
    return out
