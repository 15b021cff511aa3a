"""Benchmark of the naive load forecasters on the real development traces.

Run with `.venv/bin/python bench/forecast.py [--traces DIR]` (default `../shared/traces` beside
the project root). It loads the Bitbrains Rnd development months and the PlanetLab development
days with `analytics.traces`, runs the rolling-origin backtest of `analytics.backtest` for each
forecaster and prints, per data set and horizon (30 and 60 min), for CPU and for memory
(Bitbrains only; PlanetLab has no memory): MAE of the mean forecast, p90 coverage (share of the
realised 5-minute values at or below the p90 forecast; 0.90 is calibrated) and the pinball loss
at 0.9. Then the load and backtest timings and the machine it ran on.

The learned model (`analytics.forecaster.LoadForecaster`) trains on the first 60% of each data
set's time range (PlanetLab: by day) and is scored on the rest, beside the baselines scored on
the same validation origins ("[val]").

With `--validation` it instead reruns the selection the model's settings came from, on Bitbrains
at 30 min: trained on the first 45 % (split A) or 30 % (split B) of the time range and scored
from there up to the 60 % mark, never after it, against the best naive baseline on the same
origins. These are the A / B figures of the notes the full run prints.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

# Run as a script, this file's folder comes first on the import path; put the project root there
# instead, so `bench.*` modules import as a package (and bench/pvesim.py cannot shadow `pvesim`).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import polars as pl  # noqa: E402

from analytics.backtest import score  # noqa: E402
from analytics.baselines import BASELINES, Forecaster  # noqa: E402
from analytics.forecaster import (  # noqa: E402
    LoadForecaster,
    day_split,
    only_after,
    split_forecaster,
    time_split,
)
from analytics.traces import load_bitbrains, load_planetlab  # noqa: E402
from bench.machine import print_machine  # noqa: E402

DEFAULT_TRACES = _HERE.parent.parent / "shared" / "traces"
HORIZONS = (30, 60)

# ---------------------------------------------------------------------------------------------
# LEARNED MODEL: forecasters with the baselines' signature (`analytics.baselines.Forecaster`).
#
# Registered: `analytics.forecaster.LoadForecaster` through `split_forecaster`, trained on the
# first 60 % of each data set's time range (PlanetLab: the first 60 % of its days) and scored
# only from origins after that; the "[val]" rows are the baselines scored on those same origins,
# the fair comparison (the plain baseline rows cover the whole range). The first CPU run on a data
# set of >= 100 series also times a fit on 100 guests x 30 days and a prediction for 5,000 guests.
# Below each table, one line per horizon and load gives the model's MAE against the best naive
# baseline on the same origins (target on Bitbrains CPU at 30 min: at least 15 % below, with p90
# cover within 0.85-0.95). The model's settings (residual target over the last value, `log_now`,
# the other resource's movement, disk and network throughput, 300 rounds of 63 leaves) were chosen
# on Bitbrains CPU at 30 min by training on the first 45 % (or 30 %) of the time range and
# validating up to 60 %, never on the scored range after 60 %.
MODEL_NAME = "learned model"
TRAIN_FRACTION = 0.6  # time-ordered split: train on the first 60 %, validate on the rest


# What was tried for the 15 % target on Bitbrains CPU at 30 min, measured on time-ordered
# validation splits inside the training range (train on the first 45 % / 30 % of the time range,
# validate up to 60 %), never on the scored range.
BITBRAINS_NOTES = """
  notes (Bitbrains CPU, 30 min): MAE below the best naive on validation splits inside the first
  60 % (A: train 0-45 %, validate 45-60 %; B: train 0-30 %, validate 30-60 %; `--validation`
  reruns them for the current model), in the order tried:
    the model as it was (ratio target, 200 rounds of 31 leaves)      A -8.8 %
    with a small boosting (100 rounds), no extra features            A -8.6 %
      + same time yesterday, two days ago, last week                 A -7.0 % (no gain)
      + medians of the last 1 h / 6 h / 24 h                         A -6.6 % (no gain)
    300 rounds of 63 leaves                                          A -12.1 %
      + log_now (where the series sits on the absolute scale)        A -14.6 %, seed 1 -13.0 %
      + target = correction to the last value                        A -16.1 %, seed 1 -15.9 %
                                                                     B -16.0 %
      + window quantiles and minimum, >= 200 rows per leaf (this)    A -16.8 %, B -16.6 %
  then, with training made deterministic (rows were sampled in a join's varying order, which
  alone moved these figures by up to 0.7 points):
      all usable rows (800,000) instead of 300,000                   A -16.8 %, B -16.3 %
      127 leaves of >= 50 rows                                       A -17.5 %, B -15.9 %
      learning rate 0.05, 600 rounds                                 A -17.0 %, B -16.8 %
      + steps the value has held within 10 %                         A -17.3 %, B -16.8 %
      + yesterday's load at and after this time, last week's         A -16.9 %, B -16.3 %
      + logs of the 6-h mean, 6-h max and 1-h minimum                A -17.2 %, B -16.8 %
      + variance ratio and lag-1 autocorrelation of the steps        A -16.8 %, B -16.7 %
    none beyond the noise of a refit, so none was kept.
  then, with CPU above 100 % kept by the cleaning rule (it was clamped to 1, erasing how busy a
  saturated VM is; see analytics.traces), the same model             A -16.8 %, B -16.0 %
      + the other resource's level, change, spread (kept)            A -18.1 %, B -17.4 %
        (memory, with CPU's: A -16.0 to -19.4 %, B -14.2 to -17.2 %)
      + its log, or four more of its windows                         A -18.4 %, B -17.5 %
      + disk and network throughput (this)                           A -19.3 %, B -18.5 %
        (the store keeps them, as rates, since its schema 5)
      + steps since the load last jumped by half its day's peak      A +0.3, B -0.5 points;
        (how long a batch job has run; the threshold chosen among    60 min A +0.5, B +0.2
        0.3, 0.5 and 0.7 of the peak before the throughputs)         (not kept: +0.1 on average)
  On the scored range after 60 % the model gains less (the verdict line above). Retraining every
  7 days on the last 30 (as the daily training flow does) instead of once gave the same figure
  (an earlier model: -11.8 % against -11.9 %). The gap is six large VMs (41, 46, 51, 56, 71,
  186) that switch between idle and flat out for hours at a time in August: they hold 18 % of
  the last value's error there, and on them the model is 7.6 % worse than the last value (11.6 %
  before the throughputs); on the other 94 VMs it is 20.4 % better (18.2 % before), close to
  the validation splits. Tuning on the scored range itself would make the figure meaningless."""


def _split(frame: pl.DataFrame) -> int:
    """The validation start: by day for PlanetLab (each series one day), else by time."""
    names = frame["series"].head(1000)
    if names.str.contains(r"^\d{8}/").all():
        return day_split(frame, TRAIN_FRACTION)
    return time_split(frame, TRAIN_FRACTION)


def _on_validation(forecaster: Forecaster) -> Forecaster:
    """A baseline scored only from the validation origins, to compare with the learned model."""

    def forecast(frame: pl.DataFrame, column: str, horizon_min: int) -> pl.DataFrame:
        return only_after(forecaster, _split(frame))(frame, column, horizon_min)

    return forecast


def _speed_check(frame: pl.DataFrame) -> None:
    """Train on 100 guests x 30 days of 5-minute CPU; predict 5,000 guests (real series tiled
    with time offsets: copy k of a series ends 12 k steps earlier); print both timings."""
    days30 = 30 * 288
    long = frame.filter(pl.len().over("series") >= days30)
    guests = long["series"].unique(maintain_order=True).head(100)
    train = (
        long.filter(pl.col("series").is_in(guests.implode()))
        .group_by("series", maintain_order=True)
        .tail(days30)
    )
    start = time.perf_counter()
    model = LoadForecaster("cpu", 30).fit(train)
    fit_s = time.perf_counter() - start
    names = frame["series"].unique(maintain_order=True)
    copies = -(-5000 // len(names)) + 5  # a few spare: short series yield fewer tiles
    index = pl.int_range(pl.len()).over("series")
    tiles = []
    for k in range(copies):
        end = pl.len().over("series") - 12 * k
        tiles.append(
            frame.filter((index < end) & (index >= end - 576)).with_columns(
                pl.col("series") + f"#{k}", pl.int_range(pl.len()).over("series") * 300
            )
        )
    many = pl.concat(tiles).filter(
        pl.col("series").is_in(pl.col("series").unique(maintain_order=True).head(5000).implode())
    )
    start = time.perf_counter()
    out = model.predict(many)
    predict_s = time.perf_counter() - start
    print(
        f"  [learned model] fit on {train['series'].n_unique()} guests x 30 days "
        f"({train.height:,} points, {model.n_train_rows_:,} sampled rows): {fit_s:.2f} s "
        f"(target < 60 s: {'met' if fit_s < 60 else 'MISSED'}); predict {out.height:,} guests "
        f"({many.height:,} points in): {predict_s:.2f} s "
        f"(target < 1 s: {'met' if predict_s < 1 else 'MISSED'})"
    )


_speed_checked: list[bool] = []


def _report_fit(model: LoadForecaster, seconds: float) -> None:
    print(
        f"  [learned model] {model.column} {model.horizon_min} min: trained on "
        f"{model.n_series_} series before the split ({model.n_train_rows_:,} rows) in "
        f"{seconds:.2f} s"
    )


def _learned(frame: pl.DataFrame, column: str, horizon_min: int) -> pl.DataFrame:
    if not _speed_checked and frame["series"].n_unique() >= 100 and column == "cpu":
        _speed_checked.append(True)
        _speed_check(frame)
    return split_forecaster(_split, on_fit=_report_fit)(frame, column, horizon_min)


MODELS: dict[str, Forecaster] = {
    **{f"{name} [val]"[:26]: _on_validation(f) for name, f in BASELINES.items()},
    MODEL_NAME: _learned,
}
# ---------------------------------------------------------------------------------------------


def best_naive(naive: dict[str, dict[str, float]]) -> tuple[str, dict[str, float]]:
    """The naive forecaster with the lowest MAE, and its scores: what the model must beat."""
    return min(naive.items(), key=lambda item: item[1]["mae"])


def gain_over(model: dict[str, float], best: dict[str, float]) -> float:
    """How far the model's MAE is below `best`'s, in per cent (negative: above)."""
    return 100 * (1 - model["mae"] / best["mae"])


# the splits the model's settings were chosen on: (train before, validate up to) as fractions of
# the time range; both end where the scored range of the full run begins
VALIDATION_SPLITS = {"A": (0.45, TRAIN_FRACTION), "B": (0.3, TRAIN_FRACTION)}


def validation(frame: pl.DataFrame, columns: tuple[str, ...], horizon: int = 30) -> Iterator[str]:
    """One line per split and load, as each is done: the model's MAE against the best naive
    baseline, both scored from the split on and on the rows before the scored range only."""
    for label, (train_to, validate_to) in VALIDATION_SPLITS.items():
        start, end = time_split(frame, train_to), time_split(frame, validate_to)
        seen = frame.filter(pl.col("ts") < end)
        for column in columns:
            naive = {
                name: score(seen, only_after(f, start), column, horizon)
                for name, f in BASELINES.items()
            }
            best_name, best = best_naive(naive)
            model = LoadForecaster(column, horizon).fit(frame.filter(pl.col("ts") < start))
            s = score(seen, only_after(model.forecast, start), column, horizon)
            gain = gain_over(s, best)
            yield (
                f"  {label} (train 0-{100 * train_to:.0f} %, validate to {100 * validate_to:.0f} %)"
                f"  {column:<4}"
                f"  model MAE {s['mae']:.5f}, best naive {best['mae']:.5f} ({best_name}):"
                f" {-gain:+.1f} %, p90 cover {s['coverage']:.3f}"
            )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--traces",
        type=Path,
        default=DEFAULT_TRACES,
        help=f"folder holding bitbrains-rnd/ and planetlab/ (default {DEFAULT_TRACES})",
    )
    parser.add_argument(
        "--every", type=int, default=1, help="steps between forecast origins (default 1)"
    )
    parser.add_argument(
        "--planetlab-limit",
        type=int,
        default=None,
        help="at most this many VMs per PlanetLab day (default all)",
    )
    parser.add_argument(
        "--validation",
        action="store_true",
        help="only rerun the validation splits the model's settings were chosen on (Bitbrains)",
    )
    return parser.parse_args(argv)


def verdict(horizon: int, column: str, scores: dict[str, dict[str, float]]) -> str:
    """The learned model against the best naive baseline on the same validation origins."""
    model = scores.get(MODEL_NAME)
    naive = {n: s for n, s in scores.items() if n in MODELS and n != MODEL_NAME}
    if model is None or not naive:
        return ""
    best_name, best = best_naive(naive)
    gain = gain_over(model, best)
    return (
        f"  {horizon:>4} min  {column:<4}  model MAE {abs(gain):.1f} % "
        f"{'below' if gain >= 0 else 'above'} the best naive "
        f"({best_name.split(' [')[0]}, {best['mae']:.4f}), p90 cover {model['coverage']:.3f}"
    )


def table(frame: pl.DataFrame, columns: tuple[str, ...], every: int) -> tuple[list[str], float]:
    """Formatted rows for one data set, then one verdict line per horizon and load, and the
    seconds spent backtesting."""
    lines = [
        f"  {'horizon':>7}  {'load':<4}  {'forecaster':<26}"
        f"{'MAE':>8}  {'p90 cover':>9}  {'pinball':>8}  {'origins':>10}"
    ]
    spent = 0.0
    verdicts = []
    for horizon in HORIZONS:
        for column in columns:
            scores: dict[str, dict[str, float]] = {}
            for name, forecaster in {**BASELINES, **MODELS}.items():
                start = time.perf_counter()
                s = scores[name] = score(frame, forecaster, column, horizon, every=every)
                spent += time.perf_counter() - start
                lines.append(
                    f"  {horizon:>4} min  {column:<4}  {name:<26}{s['mae']:>8.4f}  "
                    f"{s['coverage']:>9.3f}  {s['pinball']:>8.4f}  {int(s['origins']):>10,}"
                )
            verdicts.append(verdict(horizon, column, scores))
    return [*lines, "", *(v for v in verdicts if v)], spent


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    traces: Path = args.traces
    if not (traces / "bitbrains-rnd").is_dir() or not (traces / "planetlab").is_dir():
        print(
            f"error: traces not found at {traces} (expected bitbrains-rnd/ and planetlab/ "
            "there); pass --traces DIR",
            file=sys.stderr,
        )
        return 2
    if args.every < 1:
        print("error: --every must be at least 1", file=sys.stderr)
        return 2

    if args.validation:
        print(f"Validation splits on {traces} (Bitbrains, 30 min, inside the first 60 %):")
        for line in validation(load_bitbrains(traces), ("cpu", "mem")):
            print(line, flush=True)
        print_machine("\nmachine")
        return 0
    print(f"Forecast benchmark on {traces}  (origins every {args.every} step(s) of 5 min,")
    print("  1 h warm-up; MAE of the mean over the horizon; p90 cover = share of realised values")
    print("  <= p90 forecast, 0.90 is calibrated; pinball loss at 0.9 of the p90 forecast)")
    timings: list[tuple[str, float]] = []

    start = time.perf_counter()
    bitbrains = load_bitbrains(traces)
    timings.append(("load bitbrains", time.perf_counter() - start))
    print(
        f"\nbitbrains-rnd (2013-7, 2013-8): {bitbrains['series'].n_unique()} series, "
        f"{bitbrains.height:,} 5-min points"
    )
    lines, spent = table(bitbrains, ("cpu", "mem"), args.every)
    print("\n".join(lines))
    print(BITBRAINS_NOTES)
    timings.append(("backtest bitbrains", spent))

    start = time.perf_counter()
    planetlab = load_planetlab(traces, limit=args.planetlab_limit)
    timings.append(("load planetlab", time.perf_counter() - start))
    print(
        f"\nplanetlab (development days): {planetlab['series'].n_unique()} series (VM-days), "
        f"{planetlab.height:,} 5-min points; CPU only"
    )
    lines, spent = table(planetlab, ("cpu",), args.every)
    print("\n".join(lines))
    timings.append(("backtest planetlab", spent))

    print("\ntimings")
    for label, seconds in timings:
        print(f"  {label:<20}{seconds:>8.2f} s")
    print_machine("\nmachine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
