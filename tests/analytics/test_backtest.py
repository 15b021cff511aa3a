"""Baselines and the rolling-origin backtest on hand-made series, the arithmetic in comments,
plus a smoke run over a slice of the real development traces.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from analytics.backtest import backtest, horizon_steps, pinball, score, summarise
from analytics.baselines import BASELINES, ewma, last_value, mean_last_hour
from analytics.traces import load_bitbrains, load_planetlab

TRACES = Path(__file__).resolve().parents[3] / "shared" / "traces"


def frame(**series: list[float]) -> pl.DataFrame:
    """A long frame with one 5-minute series per keyword, starting at ts 0."""
    parts = [
        pl.DataFrame(
            {
                "series": [name] * len(values),
                "ts": [300 * i for i in range(len(values))],
                "cpu": values,
                "mem": [None] * len(values),
            },
            schema={"series": pl.String, "ts": pl.Int64, "cpu": pl.Float64, "mem": pl.Float64},
        )
        for name, values in series.items()
    ]
    return pl.concat(parts)


# H = 10 min, so h = 2 steps; warm-up 1 step, an origin every step: origins t = 0, 1, 2 for "a"
# (the window t+1..t+2 must lie inside the 5 points) and t = 0, 1 for "b".
A = [0.2, 0.4, 0.1, 0.5, 0.3]
B = [1.0, 1.0, 1.0, 1.0]


def test_the_backtest_scores_last_value_by_hand() -> None:
    result = backtest(frame(a=A, b=B), last_value, "cpu", 10, warmup=1, every=1)

    a = result.filter(pl.col("series") == "a")
    # forecasts at t: mean = x_t; p90 = max(x_t, max of the last hour) = max of x_0..x_t
    assert a["ts"].to_list() == [0, 300, 600]
    assert a["mean"].to_list() == pytest.approx([0.2, 0.4, 0.1])
    assert a["p90"].to_list() == pytest.approx([0.2, 0.4, 0.4])
    # windows [0.4, 0.1], [0.1, 0.5], [0.5, 0.3]
    assert a["target_mean"].to_list() == pytest.approx([0.25, 0.3, 0.4])
    # 90th percentile of two values lo <= hi, linear: lo + 0.9 (hi - lo)
    # 0.1 + 0.9 * 0.3 = 0.37; 0.1 + 0.9 * 0.4 = 0.46; 0.3 + 0.9 * 0.2 = 0.48
    assert a["target_p90"].to_list() == pytest.approx([0.37, 0.46, 0.48])
    # |0.2 - 0.25| = 0.05; |0.4 - 0.3| = 0.1; |0.1 - 0.4| = 0.3
    assert a["abs_error"].to_list() == pytest.approx([0.05, 0.1, 0.3])
    # pinball at 0.9: 0.9 (y - q) when y >= q, else 0.1 (q - y); averaged over the window
    # t=0, q=0.2: y=0.4 -> 0.9 * 0.2 = 0.18; y=0.1 -> 0.1 * 0.1 = 0.01; mean 0.095
    # t=1, q=0.4: y=0.1 -> 0.1 * 0.3 = 0.03; y=0.5 -> 0.9 * 0.1 = 0.09; mean 0.06
    # t=2, q=0.4: y=0.5 -> 0.9 * 0.1 = 0.09; y=0.3 -> 0.1 * 0.1 = 0.01; mean 0.05
    assert a["pinball"].to_list() == pytest.approx([0.095, 0.06, 0.05])
    # one value of each window is <= q: 0.1 <= 0.2, 0.1 <= 0.4, 0.3 <= 0.4
    assert a["coverage"].to_list() == pytest.approx([0.5, 0.5, 0.5])
    # |0.2 - 0.37| = 0.17; |0.4 - 0.46| = 0.06; |0.4 - 0.48| = 0.08
    assert a["p90_abs_error"].to_list() == pytest.approx([0.17, 0.06, 0.08])

    b = result.filter(pl.col("series") == "b")  # flat: a perfect forecast, nothing leaks from a
    assert b["ts"].to_list() == [0, 300]
    assert b.select("abs_error", "pinball", "p90_abs_error").sum().row(0) == pytest.approx(
        (0.0, 0.0, 0.0)
    )
    assert b["coverage"].to_list() == [1.0, 1.0]

    summary = summarise(result)
    # 5 origins: mae (0.05 + 0.1 + 0.3 + 0 + 0) / 5 = 0.09
    # pinball (0.095 + 0.06 + 0.05) / 5 = 0.041; coverage (3 * 0.5 + 2 * 1) / 5 = 0.7
    # p90_mae (0.17 + 0.06 + 0.08) / 5 = 0.062
    assert summary == pytest.approx(
        {"mae": 0.09, "pinball": 0.041, "coverage": 0.7, "p90_mae": 0.062, "origins": 5.0}
    )


def test_warmup_and_every_choose_the_origins() -> None:
    values = [0.1 * i for i in range(10)]
    # h = 2: origins t = 1, 3, 5, 7 (warm-up 2 steps seen, then every 2; t + 2 <= 9)
    result = backtest(frame(a=values), last_value, "cpu", 10, warmup=2, every=2)

    assert result["ts"].to_list() == [300, 900, 1500, 2100]
    # a rising line: the window mean is x_t + 1.5 steps of 0.1 above the last value
    assert result["abs_error"].to_list() == pytest.approx([0.15] * 4)


def test_mean_of_last_hour_averages_up_to_twelve_points() -> None:
    values = [float(i) for i in range(14)]

    forecast = mean_last_hour(frame(a=values), "cpu", 30)

    # t=0: 0; t=1: (0 + 1) / 2; t=11: mean 0..11 = 5.5; t=13: mean 2..13 = 7.5
    means = forecast["mean"].to_list()
    assert [means[0], means[1], means[11], means[13]] == pytest.approx([0.0, 0.5, 5.5, 7.5])
    # p90 = max of the last hour = x_t on a rising line
    assert forecast["p90"].to_list() == pytest.approx(values)


def test_ewma_weights_halve_every_half_life() -> None:
    # half-life 5 min = 1 step: weights 1, 1/2, 1/4 ... from the newest point, normalised
    forecast = ewma(5.0)(frame(a=[0.2, 0.4, 0.1]), "cpu", 60)

    # t=1: (0.4 + 0.5 * 0.2) / 1.5 = 1/3; t=2: (0.1 + 0.5 * 0.4 + 0.25 * 0.2) / 1.75 = 0.2
    assert forecast["mean"].to_list() == pytest.approx([0.2, 1 / 3, 0.2])
    # p90 = max(mean, max of the last hour): 0.2, 0.4, 0.4
    assert forecast["p90"].to_list() == pytest.approx([0.2, 0.4, 0.4])


@pytest.mark.parametrize("name", list(BASELINES))
def test_a_baseline_forecast_never_looks_at_the_future(name: str) -> None:
    forecaster = BASELINES[name]
    past = [0.3, 0.1, 0.6, 0.2, 0.5, 0.4]

    one = forecaster(frame(a=[*past, 0.0, 0.0]), "cpu", 30).head(len(past))
    two = forecaster(frame(a=[*past, 1.0, 0.9]), "cpu", 30).head(len(past))

    assert one.equals(two)


def test_pinball_loss_is_asymmetric_at_the_ninetieth_percentile() -> None:
    values = pl.DataFrame({"y": [1.0, 0.0, 0.5], "q": [0.0, 1.0, 0.5]})

    loss = values.select(pinball(pl.col("y"), pl.col("q")).alias("loss"))["loss"].to_list()

    # under-forecast by 1 costs 0.9, over-forecast by 1 costs 0.1, exact costs 0
    assert loss == pytest.approx([0.9, 0.1, 0.0])


def test_horizons_must_be_positive_multiples_of_five_minutes() -> None:
    assert horizon_steps(30) == 6
    assert horizon_steps(60) == 12
    for bad in (0, -5, 7):
        with pytest.raises(ValueError, match="multiple of 5 min"):
            horizon_steps(bad)


def test_a_column_of_nulls_gives_no_origins() -> None:
    result = score(frame(a=A), last_value, "mem", 10, warmup=1)

    assert result["origins"] == 0.0


def test_the_baselines_score_the_real_development_traces_sensibly() -> None:
    if not (TRACES / "bitbrains-rnd").is_dir() or not (TRACES / "planetlab").is_dir():
        pytest.skip(f"real traces not found at {TRACES} (they live in ../shared/traces)")
    bitbrains = load_bitbrains(TRACES, months=("2013-8",), ids=[1, 6, 11])
    planetlab = load_planetlab(TRACES, days=["20110303"], limit=20)

    for data, columns in ((bitbrains, ("cpu", "mem")), (planetlab, ("cpu",))):
        for column in columns:
            for forecaster in BASELINES.values():
                for horizon in (30, 60):
                    s = score(data, forecaster, column, horizon, every=6)
                    assert s["origins"] > 0
                    assert 0.0 <= s["mae"] < 0.5
                    assert 0.5 < s["coverage"] <= 1.0
                    assert 0.0 <= s["pinball"] < 0.5
