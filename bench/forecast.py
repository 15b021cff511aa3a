"""Benchmark of the naive load forecasters on the real development traces.

Run with `.venv/bin/python bench/forecast.py [--traces DIR]` (default `../shared/traces` beside
the project root). It loads the Bitbrains Rnd development months and the PlanetLab development
days with `analytics.traces`, runs the rolling-origin backtest of `analytics.backtest` for each
forecaster and prints, per data set and horizon (30 and 60 min), for CPU and for memory
(Bitbrains only; PlanetLab has no memory): MAE of the mean forecast, p90 coverage (share of the
realised 5-minute values at or below the p90 forecast; 0.90 is calibrated) and the pinball loss
at 0.9. Then the load and backtest timings and the machine it ran on.

The learned model is not part of this benchmark yet: its row is printed as "not yet available"
until its forecaster is registered in `MODELS` below. No model numbers are made up.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# Run as a script, this file's folder comes first on the import path; put the project root there
# instead, so `bench.*` modules import as a package (and bench/pvesim.py cannot shadow `pvesim`).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import polars as pl  # noqa: E402

from analytics.backtest import score  # noqa: E402
from analytics.baselines import BASELINES, Forecaster  # noqa: E402
from analytics.traces import load_bitbrains, load_planetlab  # noqa: E402
from bench.machine import machine_rows  # noqa: E402

DEFAULT_TRACES = _HERE.parent.parent / "shared" / "traces"
HORIZONS = (30, 60)

# ---------------------------------------------------------------------------------------------
# LEARNED MODEL: register its forecaster here (same signature as the baselines, see
# `analytics.baselines.Forecaster`), e.g. MODELS["learned model"] = my_forecaster. Until then the
# table prints a "not yet available" row in its place.
MODELS: dict[str, Forecaster] = {}
MODEL_PLACEHOLDER = "learned model"
# ---------------------------------------------------------------------------------------------


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
    return parser.parse_args(argv)


def table(frame: pl.DataFrame, columns: tuple[str, ...], every: int) -> tuple[list[str], float]:
    """Formatted rows for one data set, and the seconds spent backtesting."""
    lines = [
        f"  {'horizon':>7}  {'load':<4}  {'forecaster':<26}"
        f"{'MAE':>8}  {'p90 cover':>9}  {'pinball':>8}  {'origins':>10}"
    ]
    spent = 0.0
    for horizon in HORIZONS:
        for column in columns:
            for name, forecaster in {**BASELINES, **MODELS}.items():
                start = time.perf_counter()
                s = score(frame, forecaster, column, horizon, every=every)
                spent += time.perf_counter() - start
                lines.append(
                    f"  {horizon:>4} min  {column:<4}  {name:<26}{s['mae']:>8.4f}  "
                    f"{s['coverage']:>9.3f}  {s['pinball']:>8.4f}  {int(s['origins']):>10,}"
                )
            if MODEL_PLACEHOLDER not in MODELS:
                lines.append(
                    f"  {horizon:>4} min  {column:<4}  {MODEL_PLACEHOLDER:<26}"
                    f"{'-':>8}  {'-':>9}  {'-':>8}  {'-':>10}  not yet available (see MODELS)"
                )
    return lines, spent


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
    print("\nmachine")
    for key, value in machine_rows():
        print(f"  {key:<10}{value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
