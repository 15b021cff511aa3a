"""`make demo` runs `proxflow demo`: the whole story on the simulated cluster, exit 0."""

from __future__ import annotations

import re

import pytest

from analytics import Store
from tests.demo.conftest import DemoRun

pytestmark = pytest.mark.slow


def test_the_demo_tells_the_whole_story_and_exits_zero(demo_run: DemoRun) -> None:
    out = demo_run.output
    assert demo_run.code == 0, out[-3000:]
    for step in (
        "1. The simulated cluster",
        "2. History",
        "3. Forecasts",
        "4. The plan",
        "5. Executing through Prefect",
        "6. Capacity report",
    ):
        assert step in out
    assert re.search(r"(\d+) of \1 migrations done; predicted imbalance [\d.]+% → [\d.]+%", out)
    assert "Notable skips" in out and "local-resources" in out


def test_the_demo_leaves_a_history_and_an_offline_report(demo_run: DemoRun) -> None:
    store = Store(demo_run.data_dir / "history.duckdb")
    held = store.summary()
    assert held.guest_samples > 10_000 and held.migrations_ok > 0
    assert store.read("SELECT count(*) AS n FROM plans")["n"][0] >= 2
    page = (demo_run.data_dir / "capacity-report.html").read_text()
    assert "<svg" in page and "https://" not in page and "http://" not in page
    assert "forecast (band: p90)" in page  # the busiest guests' forecasts against what came
