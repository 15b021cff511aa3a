"""Synthetic load series the forecaster tests train on."""

from __future__ import annotations

import numpy as np
import polars as pl

SCHEMA = {"series": pl.String, "ts": pl.Int64, "cpu": pl.Float64, "mem": pl.Float64}


def seasonal(n_series: int = 8, days: int = 4, seed: int = 0) -> pl.DataFrame:
    """Daily cycles of different sizes and phases plus noise, 5-minute steps."""
    rng = np.random.default_rng(seed)
    n = days * 288
    t = np.arange(n)
    parts = []
    for i in range(n_series):
        size = 0.05 + 0.1 * i
        x = size * (1 + 0.8 * np.sin(2 * np.pi * (t + 30 * i) / 288))
        x = np.clip(x * (1 + 0.25 * rng.standard_normal(n)), 0, 1)
        parts.append(
            pl.DataFrame(
                {"series": [f"vm{i}"] * n, "ts": 300 * t, "cpu": x, "mem": x}, schema=SCHEMA
            )
        )
    return pl.concat(parts)
