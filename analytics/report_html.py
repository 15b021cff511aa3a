"""The capacity report as one self-contained HTML page with inline SVG charts.

No scripts, fonts, images or stylesheets by URL: the file opens offline, prints on light paper,
and every piece of text goes through `html.escape`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html import escape
from typing import Any

import polars as pl

from analytics.capacity import CLUSTER
from analytics.charts import PALETTE, Bars, Line, Rule, bar_chart, line_chart
from analytics.report_build import MAX_POINTS, CapacityReport
from analytics.report_text import (
    cell_text,
    column_label,
    meta_line,
    sections,
    shown_rows,
    table_rows,
)
from engine.policy import GIB

MAX_FORECAST_PLOTS = 6


@dataclass(frozen=True)
class Figure:
    caption: str
    svg: str


def _epoch(ts: pl.Series) -> list[float]:
    """Epoch seconds from datetimes (naive UTC) or from numbers that already are."""
    if ts.dtype.is_temporal():
        return (ts.cast(pl.Datetime("us")).dt.epoch("us") / 1e6).to_list()
    return ts.cast(pl.Float64).to_list()


def _thin(
    x: list[float], columns: Mapping[str, list[float]]
) -> tuple[list[float], dict[str, list[float]]]:
    """Means per time bucket so that at most `MAX_POINTS` points remain."""
    if len(x) <= MAX_POINTS:
        return x, dict(columns)
    width = math.ceil((max(x) - min(x)) / MAX_POINTS) or 1
    frame = pl.DataFrame({"x": x, **columns}).with_columns(
        ((pl.col("x") // width) * width).alias("x")
    )
    out = frame.group_by("x").agg(pl.exclude("x").mean()).sort("x")
    return out["x"].to_list(), {c: out[c].to_list() for c in columns}


def _headroom_figures(report: CapacityReport) -> tuple[Figure, ...]:
    nodes = report.headroom.filter(pl.col("node") != CLUSTER)
    later = f"in {report.horizon_min} min (p90)"
    cpu = bar_chart(
        nodes["node"].to_list(),
        [
            Bars("now", nodes["cpu_free_now"].to_list()),
            Bars(later, nodes["cpu_free_horizon"].to_list()),
        ],
        title="Free CPU per node",
        unit="cores",
    )
    mem = bar_chart(
        nodes["node"].to_list(),
        [
            Bars("now", (nodes["mem_free_now"] / GIB).to_list()),
            Bars(later, (nodes["mem_free_horizon"] / GIB).to_list()),
        ],
        title="Free memory per node (after the reserve)",
        unit="GiB",
    )
    return (
        Figure("Free CPU cores per node, now and at the horizon.", cpu),
        Figure("Free memory per node, now and at the horizon; below zero is overcommitted.", mem),
    )


def _rule_color(first: int, groups: int) -> str:
    """One capacity line: ink; several: each in the colour of its first node's line."""
    return PALETTE[first % len(PALETTE)] if groups > 1 else "#222"


def _usage_figure(usage: pl.DataFrame, resource: str) -> Figure:
    """One line per node, and a capacity line per distinct node size."""
    column, capacity, unit, scale, limit = (
        ("mem", "memory", "GiB", GIB, "usable memory")
        if resource == "memory"
        else ("cpu", "cpus", "cores", 1, "logical CPUs")
    )
    names = usage["node"].unique(maintain_order=True).to_list()
    lines = []
    for name in names:
        part = usage.filter(pl.col("node") == name)
        lines.append(Line(name, _epoch(part["ts"]), (part[column] / scale).to_list()))
    groups: dict[float, list[str]] = {}
    for r in usage.unique("node", keep="last", maintain_order=True).iter_rows(named=True):
        if r[capacity] is not None:
            groups.setdefault(r[capacity] / scale, []).append(r["node"])
    rules = [
        Rule(
            value,
            limit if len(groups) == 1 else f"{limit}: {', '.join(members)}",
            _rule_color(names.index(members[0]), len(groups)),
        )
        for value, members in groups.items()
    ]
    what = "Memory" if resource == "memory" else "CPU"
    svg = line_chart(lines, title=f"{what} use per node", unit=unit, rules=rules)
    return Figure(f"{what} use per node (peak per time bucket) against its capacity.", svg)


def _usage_figures(report: CapacityReport) -> tuple[Figure, ...]:
    if report.usage.height == 0:
        return ()
    return tuple(_usage_figure(report.usage, r) for r in ("memory", "cpu"))


def _imbalance_figures(report: CapacityReport) -> tuple[Figure, ...]:
    if report.imbalance.height == 0:
        return ()
    x, cols = _thin(
        _epoch(report.imbalance["ts"]), {"imbalance": report.imbalance["imbalance"].to_list()}
    )
    svg = line_chart(
        [Line("imbalance", x, cols["imbalance"])],
        title="Imbalance over time",
        unit="load MAD",
        rules=[Rule(report.target_imbalance, "target")],
    )
    return (Figure("Spread of node load (mean absolute deviation) and the planner's target.", svg),)


def _movers_figures(report: CapacityReport) -> tuple[Figure, ...]:
    movers = report.top_movers
    if movers.height == 0:
        return ()
    labels = [f"{n or '?'} ({v})" for n, v in zip(movers["name"], movers["vmid"], strict=True)]
    svg = bar_chart(
        labels,
        [Bars("moves", movers["moves"].cast(pl.Float64).to_list())],
        title="Top movers",
        unit="completed migrations",
    )
    return (Figure("Guests migrated most often.", svg),)


def _forecast_figures(report: CapacityReport) -> tuple[Figure, ...]:
    frame = report.forecast_vs_actual
    if frame is None:
        return ()
    busiest = (
        frame.group_by("series")
        .agg(pl.col("actual").mean().alias("m"))
        .sort(["m", "series"], descending=[True, False], nulls_last=True)
        .head(MAX_FORECAST_PLOTS)["series"]
        .to_list()
    )
    figures = []
    for series in busiest:
        part = frame.filter(pl.col("series") == series)
        name = report.series_names.get(series)
        label = f"{name} ({series})" if name else series
        unit = str(part["unit"][0]) if "unit" in part.columns else "value"
        x, cols = _thin(
            _epoch(part["ts"]),
            {c: part[c].cast(pl.Float64).to_list() for c in ("actual", "mean", "p90")},
        )
        svg = line_chart(
            [
                Line("actual", x, cols["actual"]),
                Line(
                    "forecast (band: p90)",
                    x,
                    cols["mean"],
                    low=cols["mean"],
                    high=cols["p90"],
                    dashed=True,
                ),
            ],
            title=f"Forecast vs actual: {label}",
            unit=unit,
        )
        figures.append(Figure(f"Guest {label}: what happened against the forecast.", svg))
    return tuple(figures)


_CSS = """
body { margin: 0; background: #fff; color: #1d1d1f; font: 15px/1.5 system-ui, sans-serif; }
main { max-width: 980px; margin: 0 auto; padding: 24px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta { color: #555; margin: 0 0 16px; }
.verdict { padding: 10px 14px; border-left: 5px solid #0072b2; background: #f2f7fb; }
.verdict.bad { border-color: #b8312f; background: #fbf1f0; }
table { border-collapse: collapse; margin: 12px 0; font-size: 13px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e5e5e5; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f4f4f4; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 16px 0; }
figure svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 13px; }
@media print {
  main { padding: 0; max-width: none; }
  figure, tr { break-inside: avoid; }
  h2 { break-after: avoid; }
}
"""


def _html_table(key: str, rows: list[dict[str, Any]]) -> str:
    shown, note = shown_rows(key, rows)
    keys = list(shown[0])
    head = "".join(f"<th>{escape(column_label(k))}</th>" for k in keys)
    body = []
    for r in shown:
        cells = "".join(
            f'<td class="num">{escape(cell_text(r[k]))}</td>'
            if isinstance(r[k], int | float) and not isinstance(r[k], bool)
            else f"<td>{escape(cell_text(r[k]))}</td>"
            for k in keys
        )
        body.append(f"<tr>{cells}</tr>")
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return table + (f"<p>{escape(note)}</p>" if note else "")


_FIGURES: dict[str, Callable[[CapacityReport], tuple[Figure, ...]]] = {
    "headroom": _headroom_figures,
    "usage": _usage_figures,
    "imbalance": _imbalance_figures,
    "top_movers": _movers_figures,
    "forecast_vs_actual": _forecast_figures,
}


def _charts(report: CapacityReport, key: str) -> tuple[Figure, ...]:
    draw = _FIGURES.get(key)
    return draw(report) if draw else ()


def figures(report: CapacityReport) -> list[Figure]:
    """Every chart of the HTML report, in page order."""
    return [f for s in sections(report) for f in _charts(report, s.key)]


def to_html(report: CapacityReport) -> str:
    """One self-contained HTML page: inline CSS and SVG charts, no scripts, no URLs."""
    rows = table_rows(report)
    bad = report.n_plus_one is None or not report.n_plus_one.survivable
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(report.title)}</title><style>{_CSS}</style></head>",
        f"<body><main><h1>{escape(report.title)}</h1>",
        f'<p class="meta">{escape(meta_line(report))}</p>',
    ]
    for section in sections(report):
        parts.append(f'<section id="{section.key}"><h2>{escape(section.heading)}</h2>')
        for j, text in enumerate(section.text):
            verdict = section.key == "n_plus_one" and j == 0
            css = f' class="verdict{" bad" if bad else ""}"' if verdict else ""
            parts.append(f"<p{css}>{escape(text)}</p>")
        if section.items:
            parts.append("<ul>" + "".join(f"<li>{escape(t)}</li>" for t in section.items) + "</ul>")
        for figure in _charts(report, section.key):
            parts.append(
                f"<figure>{figure.svg}<figcaption>{escape(figure.caption)}</figcaption></figure>"
            )
        if section.table and rows[section.key]:
            parts.append(_html_table(section.key, rows[section.key]))
        parts.append("</section>")
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


__all__ = ["Figure", "figures", "to_html"]
