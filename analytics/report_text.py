"""The capacity report in words and rows: the N+1 verdict, per-section table rows (JSON-able,
for table artifacts and the CLI), the sections' sentences, and markdown for an artifact.

Rows show GiB, cores and ISO times; markdown escapes every name, so a guest called ``a|b`` or
``<script>`` cannot break a table or inject markup.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

import polars as pl

from analytics.capacity import CLUSTER
from analytics.report_build import NEED_DAYS, CapacityReport
from engine.policy import GIB


def iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _num(value: Any, digits: int = 1) -> float | None:
    """A JSON-able rounded number; None for missing or non-finite values."""
    if value is None:
        return None
    number = float(value)
    return round(number, digits) if math.isfinite(number) else None


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole > 0 else "n/a"


def _pct(part: float, whole: float) -> int | None:
    return round(100 * part / whole) if whole > 0 else None


def _survivors_load(survivors: pl.DataFrame) -> str:
    """How full the surviving nodes would be, with the fullest and any CPU-overloaded one."""
    mem, memory = float(survivors["mem_p90"].sum()), float(survivors["memory"].sum())
    cpu, cpus = float(survivors["cpu_p90"].sum()), float(survivors["cpus"].sum())
    text = f"at {_share(mem, memory)} memory and {_share(cpu, cpus)} CPU (p90 forecast)"
    if survivors.height:
        full = survivors.with_columns((pl.col("mem_p90") / pl.col("memory")).alias("f"))
        top = full.sort("f", descending=True).row(0, named=True)
        text += f"; fullest memory: {top['node']} at {100 * top['f']:.0f}%"
    hot = survivors.filter(pl.col("cpu_p90") > pl.col("cpus"))["node"].to_list()
    if hot:
        text += f". CPU would be overcommitted on {', '.join(hot)} (p90 above its cores)"
    return text


def n_plus_one_verdict(report: CapacityReport) -> list[str]:
    """The N+1 answer in words: a headline, then one line per stranded guest."""
    verdict = report.n_plus_one
    if verdict is None:
        return ["No node is online: there is no node to lose."]
    survivors = verdict.loads.filter(pl.col("eligible") & (pl.col("node") != verdict.node))
    head = f"Losing {verdict.node} (the largest node): "
    load = _survivors_load(survivors)
    if verdict.survivable:
        return [
            head + f"survivable — the other {survivors.height} nodes hold all "
            f"{report.guests} guests {load}."
        ]
    stranded = verdict.stranded
    return [
        head + f"not survivable — {len(stranded)} of its guests would be stranded (below); "
        f"the other {survivors.height} nodes would hold the rest {load}.",
        *(f"{s.name} ({s.vmid}): {s.reason.value} — {s.detail}" for s in stranded),
    ]


def _forecast_rows(frame: pl.DataFrame, names: Mapping[str, str]) -> list[dict[str, Any]]:
    per = frame.group_by("series", maintain_order=True).agg(
        pl.len().alias("points"),
        pl.col("actual").mean().alias("mean_actual"),
        (pl.col("actual") - pl.col("mean")).abs().mean().alias("mae"),
        (pl.col("actual") <= pl.col("p90")).mean().alias("covered"),
    )
    return [
        {
            "series": str(r["series"]),
            "name": names.get(str(r["series"]), ""),
            "points": int(r["points"]),
            "mean_actual": _num(r["mean_actual"], 3),
            "mean_abs_error": _num(r["mae"], 3),
            "p90_coverage_pct": _pct(r["covered"], 1.0) if r["covered"] is not None else None,
        }
        for r in per.iter_rows(named=True)
    ]


def _headroom_rows(report: CapacityReport) -> list[dict[str, Any]]:
    return [
        {
            "node": r["node"],
            "cpus": int(r["cpus"]),
            "cpu_free_now_cores": _num(r["cpu_free_now"], 2),
            "cpu_free_horizon_cores": _num(r["cpu_free_horizon"], 2),
            "mem_usable_gib": _num((r["memory"] - r["reserve"]) / GIB),
            "mem_free_now_gib": _num(r["mem_free_now"] / GIB),
            "mem_free_horizon_gib": _num(r["mem_free_horizon"] / GIB),
        }
        for r in report.headroom.iter_rows(named=True)
    ]


def _exhaustion_rows(report: CapacityReport) -> list[dict[str, Any]]:
    out = []
    for r in report.exhaustion.iter_rows(named=True):
        unit, scale = ("GiB", GIB) if r["resource"] == "memory" else ("cores", 1)
        slope = r["slope_per_day"]
        out.append(
            {
                "node": r["node"],
                "resource": r["resource"],
                "capacity": _num(r["capacity"] / scale, 2),
                "unit": unit,
                "days": _num(r["days"]),
                "days_pessimistic": _num(r["days_pessimistic"]),
                "days_optimistic": _num(r["days_optimistic"]),
                "trend_per_day": _num(slope / scale, 3) if slope is not None else None,
                "n_days": r["n_days"],
            }
        )
    return out


def _imbalance_rows(report: CapacityReport) -> list[dict[str, Any]]:
    return [
        {
            "day": r["day"].isoformat(),
            "mean": _num(r["mean"], 3),
            "max": _num(r["max"], 3),
            "samples": r["samples"],
        }
        for r in _daily_imbalance(report.imbalance).iter_rows(named=True)
    ]


def _usage_rows(report: CapacityReport) -> list[dict[str, Any]]:
    peaks = (
        report.usage.group_by("node")
        .agg(pl.col("cpu", "mem").max(), pl.col("cpus", "memory").last())
        .sort("node")
    )
    return [
        {
            "node": r["node"],
            "cpu_peak_cores": _num(r["cpu"], 2),
            "cpu_peak_pct": _pct(r["cpu"], r["cpus"] or 0.0),
            "mem_peak_gib": _num(r["mem"] / GIB),
            "mem_peak_pct": _pct(r["mem"], r["memory"] or 0.0),
        }
        for r in peaks.iter_rows(named=True)
    ]


def _mover_rows(report: CapacityReport) -> list[dict[str, Any]]:
    return [
        {
            "vmid": r["vmid"],
            "name": r["name"],
            "moves": r["moves"],
            "gib_moved": _num(r["gib_moved"]),
            "last_move": (
                r["last_move"].strftime("%Y-%m-%d %H:%M UTC") if r["last_move"] else None
            ),
        }
        for r in report.top_movers.iter_rows(named=True)
    ]


def _n_plus_one_rows(report: CapacityReport) -> list[dict[str, Any]]:
    verdict = report.n_plus_one
    if verdict is None:
        return []
    return [
        {
            "node": r["node"],
            "lost": r["node"] == verdict.node,
            "cpu_p90_cores": _num(r["cpu_p90"], 2),
            "cpu_pct": _pct(r["cpu_p90"], r["cpus"]),
            "mem_p90_gib": _num(r["mem_p90"] / GIB),
            "mem_pct": _pct(r["mem_p90"], r["memory"]),
        }
        for r in verdict.loads.iter_rows(named=True)
    ]


def _stranded_rows(report: CapacityReport) -> list[dict[str, Any]]:
    stranded = report.n_plus_one.stranded if report.n_plus_one is not None else ()
    return [
        {
            "vmid": s.vmid,
            "name": s.name,
            "node": s.node,
            "reason": s.reason.value,
            "detail": s.detail,
        }
        for s in stranded
    ]


def table_rows(report: CapacityReport) -> dict[str, list[dict[str, Any]]]:
    """Per section, JSON-able rows (GiB, cores, ISO times) for table artifacts and the CLI."""
    summary = {
        "title": report.title,
        "generated_at": iso_time(report.generated_at),
        "horizon_min": report.horizon_min,
        "nodes_online": report.headroom.height - 1,
        "nodes_offline": len(report.offline),
        "guests": report.guests,
        "history_days": report.history_days,
        "n_plus_one": n_plus_one_verdict(report)[0],
    }
    forecast = report.forecast_vs_actual
    return {
        "summary": [{"item": k, "value": v} for k, v in summary.items()],
        "n_plus_one": _n_plus_one_rows(report),
        "stranded": _stranded_rows(report),
        "headroom": _headroom_rows(report),
        "exhaustion": _exhaustion_rows(report),
        "usage": _usage_rows(report),
        "imbalance": _imbalance_rows(report),
        "top_movers": _mover_rows(report),
        "forecast_vs_actual": (
            _forecast_rows(forecast, report.series_names) if forecast is not None else []
        ),
    }


def _daily_imbalance(imbalance: pl.DataFrame) -> pl.DataFrame:
    if imbalance.height == 0:
        return pl.DataFrame(
            schema={"day": pl.Date, "mean": pl.Float64, "max": pl.Float64, "samples": pl.Int64}
        )
    return (
        imbalance.group_by(pl.col("ts").dt.date().alias("day"))
        .agg(
            pl.col("imbalance").mean().alias("mean"),
            pl.col("imbalance").max().alias("max"),
            pl.len().cast(pl.Int64).alias("samples"),
        )
        .sort("day")
    )


@dataclass(frozen=True)
class Section:
    key: str  # names the section's table rows and charts
    heading: str
    text: tuple[str, ...]  # plain sentences, escaped by each renderer
    items: tuple[str, ...] = ()
    table: bool = False  # whether `table_rows(report)[key]` belongs here


def _days_text(report: CapacityReport) -> tuple[str, ...]:
    if report.exhaustion.height == 0:
        return (f"Not enough history ({report.history_days} whole days, need {NEED_DAYS}).",)
    soonest = report.exhaustion.filter(pl.col("days").is_not_null()).sort("days")
    if soonest.height == 0:
        first = "No node's CPU or memory peaks are rising: nothing runs out on the current trend."
    else:
        r = soonest.row(0, named=True)
        where = "the whole cluster" if r["node"] == CLUSTER else r["node"]
        when = (
            "is at capacity already"
            if r["days"] < 0.5
            else f"runs out in {r['days']:.0f} days (band "
            f"{r['days_pessimistic']:.0f}–{r['days_optimistic']:.0f})"
        )
        first = f"Soonest: {r['resource']} on {where} {when}."
    return (
        first,
        f"Linear trend through the daily peaks of {report.history_days} whole days, with a 95% "
        "band. Memory capacity is the node's memory minus its reserve; CPU capacity is all its "
        "logical CPUs. No days: usage is not rising.",
    )


def _forecast_note(report: CapacityReport) -> tuple[str, ...]:
    if report.forecast_guests >= report.guests:
        return ()
    if report.forecast_guests == 0:
        return ("No forecasts yet: every guest is assumed to stay as it is now.",)
    return (
        f"{report.guests - report.forecast_guests} of {report.guests} guests have no forecast "
        "yet and are assumed to stay as they are now.",
    )


def _imbalance_text(report: CapacityReport) -> tuple[str, ...]:
    if report.imbalance.height == 0:
        return ("No node history yet.",)
    last = report.imbalance.row(-1, named=True)
    return (
        "Mean absolute deviation of node load (weighted CPU and memory fractions) across online "
        f"nodes; the planner aims below {report.target_imbalance:.3f}. Latest: "
        f"{last['imbalance']:.3f} over {last['nodes']} nodes.",
    )


def sections(report: CapacityReport) -> list[Section]:
    """The report's sections in order, each with its sentences."""
    verdict = n_plus_one_verdict(report)
    movers = report.top_movers.height > 0
    forecasts = report.forecast_vs_actual is not None
    return [
        Section(
            "n_plus_one",
            "Can the cluster lose a node?",
            (verdict[0],),
            tuple(verdict[1:]),
            table=report.n_plus_one is not None,
        ),
        Section(
            "headroom",
            "Headroom",
            (
                "Free capacity per online node now (current use) and at the "
                f"{report.horizon_min}-minute horizon (p90 forecast, the risk view). Free "
                "memory is after each node's reserve; negative means over capacity.",
                *_forecast_note(report),
            ),
            table=True,
        ),
        Section(
            "exhaustion",
            "Days until a resource runs out",
            _days_text(report),
            table=report.exhaustion.height > 0,
        ),
        Section(
            "usage",
            "Usage over time",
            (
                "Peak CPU and memory per node over the history, as a share of what it has "
                "(memory after its reserve)."
                if report.usage.height
                else "No node history yet.",
            ),
            table=True,
        ),
        Section("imbalance", "Imbalance", _imbalance_text(report), table=True),
        Section(
            "top_movers",
            "Top movers",
            (
                "Guests migrated most often (completed migrations). GiB moved is estimated as "
                "the memory each guest uses now times its moves."
                if movers
                else "No completed migrations recorded.",
            ),
            table=movers,
        ),
        Section(
            "forecast_vs_actual",
            "Forecast vs actual",
            (
                "For the busiest guests: mean absolute error of the mean forecast, and how often "
                "the actual value stayed at or below the p90 forecast (ideal: 90%)."
                if forecasts
                else "No forecast model yet: nothing to compare.",
            ),
            table=forecasts,
        ),
    ]


MAX_TABLE_ROWS = 31  # day-by-day tables show their last days only
_BY_DAY = {"imbalance"}
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]|#"})
_WORDS = {"cpu": "CPU", "cpus": "CPUs", "gib": "GiB", "pct": "%", "mem": "memory", "vmid": "VMID"}


def _md(text: str) -> str:
    """Text safe inside markdown (and any HTML the viewer allows): no markup, one line."""
    return escape(" ".join(str(text).split()), quote=False).translate(_MD_SPECIAL)


def meta_line(report: CapacityReport) -> str:
    """What the report covers, under its title."""
    offline = f" · offline: {', '.join(report.offline)}" if report.offline else ""
    return (
        f"Generated {iso_time(report.generated_at)} (cluster time) · horizon "
        f"{report.horizon_min} min · {report.headroom.height - 1} nodes online · "
        f"{report.guests} guests{offline}"
    )


def column_label(key: str) -> str:
    """A row key as a column heading: ``mem_free_now_gib`` → ``Memory free now GiB``."""
    words = " ".join(_WORDS.get(w, w) for w in key.split("_"))
    return words[:1].upper() + words[1:]


def cell_text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else ""
    return str(value)


def shown_rows(key: str, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """The rows a rendered table of section ``key`` shows, and a note when some were left out:
    day-by-day sections keep their latest rows, the others show every row."""
    if key not in _BY_DAY or len(rows) <= MAX_TABLE_ROWS:
        return rows, ""
    return rows[-MAX_TABLE_ROWS:], f"Last {MAX_TABLE_ROWS} of {len(rows)} rows shown."


def _md_table(key: str, rows: list[dict[str, Any]]) -> list[str]:
    shown, note = shown_rows(key, rows)
    keys = list(shown[0])
    out = [
        "| " + " | ".join(_md(column_label(k)) for k in keys) + " |",
        "|" + "|".join("---" for _ in keys) + "|",
    ]
    out += ["| " + " | ".join(_md(cell_text(r[k])) for k in keys) + " |" for r in shown]
    return [*out, *([note] if note else [])]


def to_markdown(report: CapacityReport) -> str:
    """The report as markdown for a Prefect artifact: headings, sentences and tables."""
    rows = table_rows(report)
    lines = [f"# {_md(report.title)}", "", _md(meta_line(report))]
    for section in sections(report):
        lines += ["", f"## {_md(section.heading)}", ""]
        lines.append("\n\n".join(_md(t) for t in section.text))
        if section.items:
            lines += ["", *(f"- {_md(i)}" for i in section.items)]
        if section.table and rows[section.key]:
            lines += ["", *_md_table(section.key, rows[section.key])]
    return "\n".join(lines) + "\n"


__all__ = [
    "MAX_TABLE_ROWS",
    "Section",
    "cell_text",
    "column_label",
    "iso_time",
    "meta_line",
    "n_plus_one_verdict",
    "sections",
    "shown_rows",
    "table_rows",
    "to_markdown",
]
