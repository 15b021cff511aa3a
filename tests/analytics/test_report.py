"""The capacity report: numbers from hand-built clusters, words, tables and a safe HTML page."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import polars as pl
import pytest

from analytics.report import (
    CapacityReport,
    build_report,
    figures,
    n_plus_one_verdict,
    table_rows,
    to_html,
    to_markdown,
)
from engine import ClusterSnapshot, Forecast, Policy
from tests.engine.builders import GIB, forecast, gib, guest, node

T0 = datetime(2026, 1, 2)  # the first whole day of synthetic history
NO_HISTORY = pl.DataFrame()
NO_MIGRATIONS = pl.DataFrame()


def small_cluster(db_p90_gib: float = 40) -> ClusterSnapshot:
    """big: 32 cores, 128 GiB; s1 and s2: 16 cores, 64 GiB; the default 2 GiB reserve each."""
    return ClusterSnapshot(
        (node("big", 32, 128), node("s1", 16, 64), node("s2", 16, 64)),
        (
            guest(1, "big", 4, 32, name="db"),
            guest(2, "big", 2, 16, name="web"),
            guest(3, "s1", 1, 8),
            guest(4, "s2", 1, 8),
        ),
        forecasts=(forecast(1, 5, 32, cpu_p90=6, mem_p90_gib=db_p90_gib),),
        now=(T0 + timedelta(days=10)).timestamp(),
    )


def history(
    mem_gib: dict[str, tuple[float, float]], days: int, *, maxmem_gib: float = 64
) -> pl.DataFrame:
    """Hourly node samples from T0 for `days` whole days; each node's daily memory peak is
    `start + slope·day` GiB (at 23:00, earlier hours a little lower); CPU a flat quarter."""
    rows = []
    for name, (start, slope) in mem_gib.items():
        for d in range(days):
            for h in range(24):
                mem = start + slope * d - (23 - h) * 0.01
                rows.append((name, T0 + timedelta(days=d, hours=h), 0.25, 16, gib(mem), gib(64)))
    return pl.DataFrame(
        rows, schema=["node", "ts", "cpu", "maxcpu", "mem", "maxmem"], orient="row"
    ).with_columns(pl.lit(gib(maxmem_gib)).alias("maxmem"))


def report(snapshot: ClusterSnapshot, **kw: Any) -> CapacityReport:
    args: dict[str, Any] = {
        "node_history": NO_HISTORY,
        "migrations": NO_MIGRATIONS,
        "guest_names": {},
        "forecast_vs_actual": None,
        "horizon_min": 60,
        "title": "Capacity",
    }
    return build_report(snapshot, Policy(), **(args | kw))


def row(frame: pl.DataFrame, name: str) -> dict[str, Any]:
    return frame.filter(pl.col("node") == name).row(0, named=True)


# --- numbers ---------------------------------------------------------------------------------


def test_headroom_is_current_use_now_and_the_p90_forecast_at_the_horizon() -> None:
    out = report(small_cluster()).headroom
    big = row(out, "big")
    assert big["cpu_free_now"] == 26.0  # 32 - (4 + 2) cores in use now
    assert big["mem_free_now"] == 78 * GIB  # 128 - 2 reserve - (32 + 16)
    assert big["cpu_free_horizon"] == 24.0  # 32 - (6 p90 + 2 as now)
    assert big["mem_free_horizon"] == 70 * GIB  # 128 - 2 - (40 p90 + 16 as now)
    cluster = row(out, "cluster")
    assert cluster["cpu_free_now"] == 56.0  # 64 - (4 + 2 + 1 + 1)
    assert cluster["mem_free_now"] == 186 * GIB  # 256 - 3·2 - (32 + 16 + 8 + 8)


def test_the_cluster_survives_losing_its_largest_node_and_says_how_full_the_rest_would_be() -> None:
    rep = report(small_cluster())
    assert rep.n_plus_one is not None and rep.n_plus_one.survivable
    # big's 40 GiB (p90) and 16 GiB guests go to s1 and s2 (54 GiB free each after the 2 GiB
    # reserve and 8 GiB in use): 8 + 8 + 40 + 16 = 72 of 128 GiB is 56%; CPU p90 is
    # 6 + 2 + 1 + 1 = 10 of 32 cores, 31%; the fuller node holds 8 + 40 = 48 of 64, 75%
    assert n_plus_one_verdict(rep) == [
        "Losing big (the largest node): survivable — the other 2 nodes hold all 4 guests at "
        "56% memory and 31% CPU (p90 forecast); fullest memory: s1 at 75%."
    ]


def test_a_guest_too_big_for_any_other_node_makes_the_loss_unsurvivable_and_is_named() -> None:
    # db's p90 of 60 GiB exceeds the 54 GiB each small node has free
    rep = report(small_cluster(db_p90_gib=60))
    headline, *stranded = n_plus_one_verdict(rep)
    assert headline.startswith("Losing big (the largest node): not survivable — 1 of")
    # the rest: web's 16 GiB joins 8 + 8 GiB on s1 and s2, 32 of 128 GiB
    assert "the other 2 nodes would hold the rest at 25% memory" in headline
    assert len(stranded) == 1 and stranded[0].startswith("db (1): no-feasible-target")
    assert table_rows(rep)["stranded"][0]["vmid"] == 1
    assert "not survivable" in to_markdown(rep)
    assert 'class="verdict bad"' in to_html(rep)


def test_a_cluster_with_no_online_node_still_makes_a_report_that_says_so() -> None:
    snap = ClusterSnapshot((node("a", online=False),), (guest(1, "a"),))
    rep = report(snap)
    assert rep.n_plus_one is None and rep.offline == ("a",)
    assert "No node is online: there is no node to lose." in to_markdown(rep)
    assert 'class="verdict bad"' in to_html(rep)


def test_days_until_memory_runs_out_follow_the_daily_peaks_of_whole_days_only() -> None:
    # s1's peak rises 1 GiB a day from 20: 29 GiB on the tenth day; it may use 64 - 2 = 62,
    # so (62 - 29) / 1 = 33 days. A half day before T0 with low readings is left out.
    whole = history({"big": (30, 0), "s1": (20, 1), "s2": (10, 0)}, 10)
    partial = whole.filter(pl.col("ts") >= T0 + timedelta(days=9, hours=12)).with_columns(
        pl.col("ts") - timedelta(days=10), pl.lit(gib(1), pl.Int64).alias("mem")
    )
    rep = report(small_cluster(), node_history=pl.concat([partial, whole]))
    memory = rep.exhaustion.filter(pl.col("resource") == "memory")
    assert rep.history_days == 10
    assert row(memory, "s1")["days"] == pytest.approx(33.0)
    assert row(memory, "big")["days"] is None  # flat: never
    cpu = rep.exhaustion.filter(pl.col("resource") == "cpu")
    assert cpu["days"].null_count() == cpu.height  # a flat quarter of the cores
    assert "Soonest: memory on s1 runs out in 33 days" in to_markdown(rep)


def test_a_node_already_past_its_usable_memory_is_reported_as_at_capacity() -> None:
    # s2's peaks rise from 60 to 65 GiB over six days; it may use 64 - 2 = 62
    rep = report(small_cluster(), node_history=history({"s1": (20, 0), "s2": (60, 1)}, 6))
    assert "Soonest: memory on s2 is at capacity already." in to_markdown(rep)


def test_imbalance_leaves_out_instants_that_only_one_node_reported() -> None:
    both = history({"s1": (20, 0), "s2": (10, 0)}, 1)
    straggler = (
        both.filter(pl.col("node") == "s1")
        .tail(1)
        .with_columns(pl.col("ts") + timedelta(seconds=30))
    )
    rep = report(small_cluster(), node_history=pl.concat([both, straggler]))
    assert rep.imbalance["nodes"].min() == 2
    assert rep.imbalance.height == 24  # the hourly instants both nodes reported
    assert "over 2 nodes." in to_markdown(rep)


def test_usage_rows_give_each_nodes_peak_against_what_it_may_use() -> None:
    rep = report(small_cluster(), node_history=history({"s1": (20, 1), "s2": (10, 0)}, 10))
    s1 = next(r for r in table_rows(rep)["usage"] if r["node"] == "s1")
    # memory peaks on the tenth day at 20 + 9 = 29 GiB of the 64 - 2 it may use: 47%;
    # CPU is a quarter of 16 cores throughout
    assert (s1["mem_peak_gib"], s1["mem_peak_pct"]) == (29.0, 47)
    assert (s1["cpu_peak_cores"], s1["cpu_peak_pct"]) == (4.0, 25)


@pytest.mark.parametrize("days", [0, 2])
def test_short_or_empty_history_explains_itself_instead_of_failing(days: int) -> None:
    frame = history({"s1": (20, 1)}, days) if days else NO_HISTORY
    rep = report(small_cluster(), node_history=frame)
    assert rep.exhaustion.height == 0
    md = to_markdown(rep)
    assert f"Not enough history ({days} whole days, need 3)." in md
    assert "No forecast model yet" in md
    assert "No completed migrations recorded." in md
    json.dumps(table_rows(rep))
    assert to_html(rep).count("<svg") == len(figures(rep))
    assert "3 of 4 guests have no forecast yet" in md  # only db has one


def test_top_movers_count_completed_migrations_only_and_take_names_from_the_caller() -> None:
    snap = small_cluster()
    at = [T0 + timedelta(hours=h) for h in range(6)]
    migrations = pl.DataFrame(
        {
            "id": [f"m{i}" for i in range(6)],
            "vmid": [2, 2, 2, 2, 3, 99],
            "status": ["ok", "ok", "failed", "ok", "ok", "ok"],
            "started": at,
            "finished": [*at[:5], None],
        }
    )
    rep = report(snap, migrations=migrations, guest_names={2: "web-new", 99: "gone"})
    movers = table_rows(rep)["top_movers"]
    assert [m["vmid"] for m in movers] == [2, 3, 99]
    web = movers[0]
    assert (web["name"], web["moves"]) == ("web-new", 3)  # the failed attempt is not a move
    assert web["gib_moved"] == 48.0  # 3 moves × 16 GiB in use now
    assert web["last_move"] == "2026-01-02 03:00 UTC"
    assert movers[2]["gib_moved"] is None  # no longer in the cluster: size unknown
    assert movers[2]["last_move"] == "2026-01-02 05:00 UTC"  # started, as it never finished


def test_forecast_accuracy_is_the_mean_error_and_the_share_of_actuals_under_the_p90() -> None:
    n = 10
    frame = pl.DataFrame(
        {
            "series": ["1"] * n,
            "ts": [int(T0.timestamp()) + 300 * i for i in range(n)],
            "actual": [2.0] * (n - 1) + [9.0],
            "mean": [1.5] * n,
            "p90": [3.0] * n,
        }
    )
    rep = report(small_cluster(), forecast_vs_actual=frame)
    (acc,) = table_rows(rep)["forecast_vs_actual"]
    assert acc["name"] == "db"  # series are vmids
    assert acc["p90_coverage_pct"] == 90  # 9 of 10 actuals at or below 3.0
    assert acc["mean_abs_error"] == pytest.approx((9 * 0.5 + 7.5) / 10)  # 1.2


def test_long_day_by_day_tables_show_the_latest_days_and_say_so() -> None:
    rep = report(small_cluster(), node_history=history({"s1": (20, 0.1), "s2": (10, 0)}, 40))
    md = to_markdown(rep)
    assert "Last 31 of 40 rows shown." in md
    assert "| 2026-02-10 |" in md  # the 40th day
    assert "| 2026-01-10 |" not in md  # the 9th
    assert len(table_rows(rep)["imbalance"]) == 40  # rows for artifacts keep every day


def test_history_with_a_time_zone_reads_as_the_same_instants_in_utc() -> None:
    naive = history({"big": (30, 0), "s1": (20, 1), "s2": (10, 0)}, 4)
    berlin = naive.with_columns(
        pl.col("ts").dt.replace_time_zone("UTC").dt.convert_time_zone("Europe/Berlin")
    )
    a, b = (report(small_cluster(), node_history=h) for h in (naive, berlin))
    assert b.history_days == a.history_days == 4
    assert b.exhaustion.equals(a.exhaustion)
    assert b.usage.equals(a.usage)


def test_a_history_frame_missing_a_column_is_refused_naming_it() -> None:
    bad = history({"s1": (20, 1)}, 3).drop("maxmem")
    with pytest.raises(ValueError, match=r"node_history lacks column\(s\) \['maxmem'\]"):
        report(small_cluster(), node_history=bad)


# --- words and HTML --------------------------------------------------------------------------


def example(evil_name: str = "<script>alert(1)</script>") -> CapacityReport:
    """5 nodes (pve3 the largest), 56 guests, 14 days of 5-minute samples, 30 migrations (the
    first guest, named `evil_name`, moved most) and forecasts for 4 guests."""
    nodes = tuple(
        node(f"pve{i}", 48 if i == 3 else 32, 256 if i == 3 else 192) for i in range(1, 6)
    )
    guests = tuple(
        guest(100 + v, f"pve{v % 5 + 1}", 0.2 + (v % 7) * 0.3, (2, 4, 8, 16)[v % 4])
        for v in range(56)
    )
    guests = (dataclasses.replace(guests[0], name=evil_name), *guests[1:])
    forecasts = tuple(
        Forecast(g.vmid, g.cpu_used, g.cpu_used * 1.4, g.mem_used, g.mem_used * 1.1) for g in guests
    )
    snap = ClusterSnapshot(nodes, guests, forecasts, now=(T0 + timedelta(days=14)).timestamp())
    rows = []
    for i, n in enumerate(nodes):
        for k in range(14 * 288):
            day = k / 288
            cpu = 0.2 + 0.05 * i + 0.15 * math.sin(2 * math.pi * day) + 0.004 * day
            mem = (0.35 + 0.04 * i + 0.008 * day + 0.03 * math.sin(2 * math.pi * day)) * n.memory
            rows.append((n.name, T0 + timedelta(minutes=5 * k), cpu, n.cpus, int(mem), n.memory))
    node_history = pl.DataFrame(
        rows, schema=["node", "ts", "cpu", "maxcpu", "mem", "maxmem"], orient="row"
    )
    migrations = pl.DataFrame(
        {
            "id": [f"m{i}" for i in range(30)],
            "vmid": [100 if i % 5 == 0 else 100 + (i * 7) % 20 for i in range(30)],
            "source": ["pve1"] * 30,
            "target": ["pve2"] * 30,
            "status": ["failed" if i % 6 == 0 else "ok" for i in range(30)],
            "started": [T0 + timedelta(hours=5 * i) for i in range(30)],
            "finished": [T0 + timedelta(hours=5 * i, minutes=2) for i in range(30)],
        }
    )
    start = int((T0 + timedelta(days=13)).timestamp())
    fva = pl.DataFrame(
        [
            (str(100 + s), start + 300 * k, a, a * 0.95, a * 1.3)
            for s in range(4)
            for k in range(288)
            for a in [1 + s + 0.5 * math.sin(k / 20)]
        ],
        schema=["series", "ts", "actual", "mean", "p90"],
        orient="row",
    )
    return build_report(
        snap,
        Policy(),
        node_history=node_history,
        migrations=migrations,
        guest_names={},
        forecast_vs_actual=fva,
        horizon_min=60,
        title="Capacity of prod",
    )


VOID = {"meta", "br", "hr", "img", "link", "input", "col", "area", "base", "wbr", "source"}


class TagBalance(HTMLParser):
    """Records tags opened but never closed, or closed out of order."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.open[-1:] or 'nothing'}")
        else:
            self.open.pop()


def test_the_html_report_is_well_formed_and_every_chart_is_valid_svg() -> None:
    rep = example()
    page = to_html(rep)
    checker = TagBalance()
    checker.feed(page)
    checker.close()
    assert checker.errors == [] and checker.open == []
    charts = re.findall(r"<svg\b.*?</svg>", page, flags=re.S)
    for chart in charts:
        ET.fromstring(chart)
    # two headroom bars, memory and CPU over time, imbalance, top movers, 4 forecasts
    assert len(charts) == page.count("<svg") == len(figures(rep)) == 10


def test_the_html_report_references_nothing_outside_itself() -> None:
    page = to_html(example())
    for outside in ("http://", "https://", 'src="//', "url(", "<script", "<link", "<img"):
        assert outside not in page


def test_a_guest_named_like_markup_is_shown_as_text_everywhere() -> None:
    rep = example()
    page, md = to_html(rep), to_markdown(rep)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page and "<script" not in md
    assert table_rows(rep)["top_movers"][0]["name"] == "<script>alert(1)</script>"


def test_a_pipe_in_a_name_does_not_split_a_markdown_table_cell() -> None:
    md = to_markdown(example(evil_name="a|b"))
    line = next(x for x in md.splitlines() if "a\\|b" in x)
    header = next(x for x in md.splitlines() if x.startswith("| VMID"))
    assert line.replace("\\|", "").count("|") == header.count("|")


def test_table_rows_are_json_and_name_every_section() -> None:
    rows = table_rows(example())
    assert set(rows) == {
        "summary",
        "n_plus_one",
        "stranded",
        "headroom",
        "exhaustion",
        "usage",
        "imbalance",
        "top_movers",
        "forecast_vs_actual",
    }
    assert json.loads(json.dumps(rows, allow_nan=False)) == rows
    assert len(rows["imbalance"]) == 14  # one row per day of history
    summary = {r["item"]: r["value"] for r in rows["summary"]}
    assert summary["n_plus_one"].startswith("Losing pve3 (the largest node): survivable")
    assert (summary["guests"], summary["nodes_online"], summary["history_days"]) == (56, 5, 14)


def test_no_credential_can_reach_a_report_because_none_is_passed_in() -> None:
    params = set(inspect.signature(build_report).parameters)
    assert params == {
        "snapshot",
        "policy",
        "node_history",
        "migrations",
        "guest_names",
        "forecast_vs_actual",
        "horizon_min",
        "title",
    }
    secretish = re.compile("token|secret|password|ticket|key|credential", re.I)
    fields = [f.name for f in dataclasses.fields(CapacityReport)]
    assert not [f for f in fields if secretish.search(f)]
