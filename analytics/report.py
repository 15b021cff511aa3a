"""The capacity report: built once from a snapshot and history, rendered three ways.

`build_report` is pure (no I/O, no Prefect): the caller reads the store and the cluster, hands
in frames, and publishes what `to_markdown`, `table_rows` and `to_html` return. No credential
is ever passed in, so none can reach a report. Units inside the report follow the engine
(CPU in host cores, memory in bytes); renderers show GiB. "Now" is the guests' current use;
"at the horizon" is their p90 forecast, the level to plan against.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

import polars as pl

from analytics.capacity import CLUSTER, NPlusOne, headroom, imbalance_over_time, n_plus_one
from analytics.charts import PALETTE, Bars, Line, Rule, bar_chart, line_chart
from analytics.exhaustion import days_until_exhausted
from engine import ClusterSnapshot, Policy

GIB = 1024**3
NEED_DAYS = 3  # a trend needs a standard error: at least three daily peaks
TOP_MOVERS = 10
MAX_POINTS = 300  # per plotted series; longer history is bucketed (peaks kept)
MAX_FORECAST_PLOTS = 6
WHOLE_DAY_HOURS = 21.6  # an edge day counts when its samples span 90 % of it
NODE_COLUMNS = ("node", "ts", "cpu", "maxcpu", "mem", "maxmem")
FORECAST_COLUMNS = ("series", "ts", "actual", "mean", "p90")
_EXHAUSTION_SCHEMA = pl.Schema(
    {
        "node": pl.String(),
        "resource": pl.String(),
        "capacity": pl.Float64(),
        "n_days": pl.Int64(),
        "slope_per_day": pl.Float64(),
        "level": pl.Float64(),
        "days": pl.Float64(),
        "days_optimistic": pl.Float64(),
        "days_pessimistic": pl.Float64(),
        "last_day": pl.Date(),
    }
)
_MOVERS_SCHEMA = pl.Schema(
    {
        "vmid": pl.Int64(),
        "name": pl.String(),
        "moves": pl.Int64(),
        "gib_moved": pl.Float64(),
        "last_move": pl.Datetime("us"),
    }
)


@dataclass(frozen=True)
class CapacityReport:
    """Everything the renderers show; frames keep engine units (cores, bytes)."""

    title: str
    generated_at: float  # epoch seconds, cluster time
    horizon_min: int
    headroom: pl.DataFrame  # see analytics.capacity.headroom; online nodes + cluster row
    exhaustion: pl.DataFrame  # node, resource (cpu|memory), days, days_optimistic, ...
    n_plus_one: NPlusOne | None  # None only when no node is online
    imbalance: pl.DataFrame  # see analytics.capacity.imbalance_over_time
    top_movers: pl.DataFrame  # vmid, name, moves, gib_moved, last_move
    forecast_vs_actual: pl.DataFrame | None  # series, ts, actual, mean, p90; None: no model
    usage: pl.DataFrame  # node, ts, cpu (cores), mem (bytes), cpus, memory: bucketed peaks
    history_days: int  # whole days of node history
    guests: int
    offline: tuple[str, ...]
    target_imbalance: float


# --- building --------------------------------------------------------------------------------


def _require(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{what} lacks column(s) {missing}; it needs {list(columns)}, got {frame.columns}"
        )


def _whole_days(history: pl.DataFrame) -> pl.DataFrame:
    """Drop a first or last UTC day that the samples cover only in part (its peak is low)."""
    spans = (
        history.group_by(pl.col("ts").dt.date().alias("day"))
        .agg((pl.col("ts").max() - pl.col("ts").min()).dt.total_seconds().alias("span"))
        .sort("day")
    )
    if spans.height == 0:
        return history
    days = spans["day"].to_list()
    short = [d for d, s in zip(days, spans["span"], strict=True) if s < WHOLE_DAY_HOURS * 3600]
    drop = {d for d in short if d in (days[0], days[-1])}
    return history.filter(~pl.col("ts").dt.date().is_in(list(drop)))


def _capacities(
    snapshot: ClusterSnapshot, policy: Policy, history: pl.DataFrame
) -> tuple[dict[str, float], dict[str, float]]:
    """Per node: logical CPUs, and memory guests may use (memory minus the node's reserve).
    Nodes known only from history use their last reported size and the default reserve."""
    last = history.sort("ts").group_by("node").agg(pl.col("maxcpu").last(), pl.col("maxmem").last())
    cpus = {r["node"]: float(r["maxcpu"] or 0) for r in last.iter_rows(named=True)}
    mem = {
        r["node"]: float((r["maxmem"] or 0) - policy.reserve_for(r["node"]))
        for r in last.iter_rows(named=True)
    }
    for n in snapshot.nodes:
        cpus[n.name] = float(n.cpus)
        mem[n.name] = float(n.memory - policy.reserve_for(n.name, n.reserve))
    return cpus, mem


def _exhaustion(
    history: pl.DataFrame, cpus: Mapping[str, float], mem: Mapping[str, float]
) -> pl.DataFrame:
    parts = []
    for resource, column, capacity in (("cpu", "cores", cpus), ("memory", "mem", mem)):
        out = days_until_exhausted(history, capacity, column)
        parts.append(out.with_columns(pl.lit(resource).alias("resource")))
    return pl.concat(parts).select(list(_EXHAUSTION_SCHEMA)).cast(_EXHAUSTION_SCHEMA)


def _every(history: pl.DataFrame) -> str:
    """A bucket width (whole minutes) that keeps a series under `MAX_POINTS` points."""
    span = float(
        history.select((pl.col("ts").max() - pl.col("ts").min()).dt.total_seconds()).item()
    )
    return f"{max(1, math.ceil(span / MAX_POINTS / 60))}m"


def _usage(
    history: pl.DataFrame, cpus: Mapping[str, float], mem: Mapping[str, float]
) -> pl.DataFrame:
    if history.height == 0:
        return pl.DataFrame(
            schema={
                "node": pl.String(),
                "ts": pl.Datetime("us"),
                "cpu": pl.Float64(),
                "mem": pl.Float64(),
                "cpus": pl.Float64(),
                "memory": pl.Float64(),
            }
        )
    every = _every(history)
    return (
        history.with_columns(pl.col("ts").dt.truncate(every))
        .group_by("node", "ts")
        .agg(pl.col("cores").max().alias("cpu"), pl.col("mem").cast(pl.Float64).max())
        .with_columns(
            pl.col("node")
            .replace_strict(cpus, default=None, return_dtype=pl.Float64)
            .alias("cpus"),
            pl.col("node")
            .replace_strict(mem, default=None, return_dtype=pl.Float64)
            .alias("memory"),
        )
        .sort("node", "ts")
    )


def _top_movers(
    migrations: pl.DataFrame, snapshot: ClusterSnapshot, guest_names: Mapping[int, str]
) -> pl.DataFrame:
    if migrations.height == 0:
        return pl.DataFrame(schema=_MOVERS_SCHEMA)
    _require(migrations, ("vmid", "status"), "migrations frame")
    when = [c for c in ("finished", "started") if c in migrations.columns]
    last = pl.coalesce(when).max() if when else pl.lit(None, pl.Datetime("us"))
    counted = (
        migrations.filter(pl.col("status") == "ok")
        .group_by(pl.col("vmid").cast(pl.Int64))
        .agg(pl.len().cast(pl.Int64).alias("moves"), last.alias("last_move"))
    )
    names = {g.vmid: g.name for g in snapshot.guests} | dict(guest_names)
    used = {g.vmid: g.mem_used / GIB for g in snapshot.guests}
    vmids = counted["vmid"].to_list()
    return (
        counted.with_columns(
            pl.Series("name", [names.get(v, "") for v in vmids], pl.String),
            # memory in use now per move: a live migration copies about that much
            (pl.Series([used.get(v) for v in vmids], dtype=pl.Float64) * pl.col("moves")).alias(
                "gib_moved"
            ),
        )
        .sort(["moves", "gib_moved", "vmid"], descending=[True, True, False], nulls_last=True)
        .head(TOP_MOVERS)
        .select(list(_MOVERS_SCHEMA))
        .cast(_MOVERS_SCHEMA)
    )


def build_report(
    snapshot: ClusterSnapshot,
    policy: Policy,
    *,
    node_history: pl.DataFrame,
    migrations: pl.DataFrame,
    guest_names: Mapping[int, str],
    forecast_vs_actual: pl.DataFrame | None,
    horizon_min: int,
    title: str,
) -> CapacityReport:
    """The capacity report for ``snapshot`` and the node samples in ``node_history``.

    ``node_history``: node, ts (naive UTC), cpu (busy fraction), maxcpu, mem, maxmem.
    ``migrations``: the store's rows (vmid, status, finished, ...); only ``ok`` ones count.
    ``forecast_vs_actual``: series, ts, actual, mean, p90 for the busiest guests, or None
    when no model exists. Short or empty history leaves the trend sections explaining why.
    """
    if horizon_min <= 0:
        raise ValueError(f"horizon_min must be a positive number of minutes, got {horizon_min}")
    if node_history.height:
        _require(node_history, NODE_COLUMNS, "node_history")
    history = (
        node_history.select(NODE_COLUMNS)
        .with_columns(pl.col("node").cast(pl.String), pl.col("ts").cast(pl.Datetime("us")))
        .drop_nulls(["ts", "cpu", "mem"])
        .with_columns((pl.col("cpu") * pl.col("maxcpu")).cast(pl.Float64).alias("cores"))
        if node_history.height
        else pl.DataFrame(schema=dict.fromkeys((*NODE_COLUMNS, "cores"), pl.Float64)).with_columns(
            pl.col("node").cast(pl.String), pl.col("ts").cast(pl.Datetime("us"))
        )
    )
    if forecast_vs_actual is not None:
        _require(forecast_vs_actual, FORECAST_COLUMNS, "forecast_vs_actual frame")
    online = [n for n in snapshot.nodes if n.online]
    nodes = pl.DataFrame(
        {
            "node": [n.name for n in online],
            "cpus": [n.cpus for n in online],
            "memory": [n.memory for n in online],
            "reserve": [policy.reserve_for(n.name, n.reserve) for n in online],
        },
        schema={"node": pl.String, "cpus": pl.Int64, "memory": pl.Int64, "reserve": pl.Int64},
    )
    guests = snapshot.guests
    now = pl.DataFrame(
        {
            "node": [g.node for g in guests],
            "cpu": [g.cpu_used for g in guests],
            "mem": [float(g.mem_used) for g in guests],
        },
        schema={"node": pl.String, "cpu": pl.Float64, "mem": pl.Float64},
    )
    risk = [snapshot.forecast(g.vmid) for g in guests]
    later = pl.DataFrame(
        {
            "node": [g.node for g in guests],
            "cpu": [f.cpu_p90 for f in risk],
            "mem": [f.mem_p90 for f in risk],
        },
        schema={"node": pl.String, "cpu": pl.Float64, "mem": pl.Float64},
    )
    whole = _whole_days(history)
    n_days = whole["ts"].dt.date().n_unique() if whole.height else 0
    cpus, mem = _capacities(snapshot, policy, history)
    exhaustion = (
        _exhaustion(whole, cpus, mem)
        if n_days >= NEED_DAYS
        else pl.DataFrame(schema=_EXHAUSTION_SCHEMA)
    )
    return CapacityReport(
        title=title,
        generated_at=snapshot.now,
        horizon_min=horizon_min,
        headroom=headroom(nodes, now, later, default_reserve=policy.memory_reserve),
        exhaustion=exhaustion,
        n_plus_one=n_plus_one(snapshot, policy) if online else None,
        imbalance=imbalance_over_time(history, policy),
        top_movers=_top_movers(migrations, snapshot, guest_names),
        forecast_vs_actual=(
            forecast_vs_actual.sort("series", "ts") if forecast_vs_actual is not None else None
        ),
        usage=_usage(history, cpus, mem),
        history_days=n_days,
        guests=len(guests),
        offline=tuple(sorted(n.name for n in snapshot.nodes if not n.online)),
        target_imbalance=policy.target_imbalance,
    )


# --- words and rows --------------------------------------------------------------------------


def _iso(epoch: float) -> str:
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


def n_plus_one_verdict(report: CapacityReport) -> list[str]:
    """The N+1 answer in words: a headline, then one line per stranded guest."""
    verdict = report.n_plus_one
    if verdict is None:
        return ["No node is online: there is no node to lose."]
    survivors = verdict.loads.filter(pl.col("eligible") & (pl.col("node") != verdict.node))
    head = f"Losing {verdict.node} (the largest node): "
    if verdict.survivable:
        mem, memory = float(survivors["mem_p90"].sum()), float(survivors["memory"].sum())
        cpu, cpus = float(survivors["cpu_p90"].sum()), float(survivors["cpus"].sum())
        line = (
            f"survivable — the other {survivors.height} nodes hold all {report.guests} guests "
            f"at {_share(mem, memory)} memory and {_share(cpu, cpus)} CPU (p90 forecast)"
        )
        fullest = survivors.with_columns((pl.col("mem_p90") / pl.col("memory")).alias("f"))
        if fullest.height:
            top = fullest.sort("f", descending=True).row(0, named=True)
            line += f"; fullest memory: {top['node']} at {100 * top['f']:.0f}%"
        hot = survivors.filter(pl.col("cpu_p90") > pl.col("cpus"))["node"].to_list()
        if hot:
            line += f". CPU would be overcommitted on {', '.join(hot)} (p90 above its cores)"
        return [head + line + "."]
    lines = [
        head + f"not survivable — {len(verdict.stranded)} of its guests would be stranded "
        f"(the other {survivors.height} nodes cannot take them):"
    ]
    lines += [f"{s.name} ({s.vmid}): {s.reason.value} — {s.detail}" for s in verdict.stranded]
    return lines


def _history_note(report: CapacityReport) -> str:
    return f"Not enough history ({report.history_days} days, need {NEED_DAYS})."


def _epoch(ts: pl.Series) -> list[float]:
    if ts.dtype.is_temporal():
        return (ts.cast(pl.Datetime("us")).dt.epoch("us") / 1e6).to_list()
    return ts.cast(pl.Float64).to_list()


def _forecast_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    per = frame.group_by("series", maintain_order=True).agg(
        pl.len().alias("points"),
        pl.col("actual").mean().alias("mean_actual"),
        (pl.col("actual") - pl.col("mean")).abs().mean().alias("mae"),
        (pl.col("actual") <= pl.col("p90")).mean().alias("covered"),
    )
    return [
        {
            "series": str(r["series"]),
            "points": int(r["points"]),
            "mean_actual": _num(r["mean_actual"], 3),
            "mean_abs_error": _num(r["mae"], 3),
            "p90_coverage_pct": _num(100 * r["covered"], 0) if r["covered"] is not None else None,
        }
        for r in per.iter_rows(named=True)
    ]


def table_rows(report: CapacityReport) -> dict[str, list[dict[str, Any]]]:
    """Per section, JSON-able rows (GiB, cores, ISO times) for table artifacts and the CLI."""
    verdict = report.n_plus_one
    rows: dict[str, list[dict[str, Any]]] = {
        "summary": [
            {
                "title": report.title,
                "generated_at": _iso(report.generated_at),
                "horizon_min": report.horizon_min,
                "nodes_online": report.headroom.height - 1,
                "nodes_offline": len(report.offline),
                "guests": report.guests,
                "history_days": report.history_days,
                "n_plus_one": n_plus_one_verdict(report)[0],
            }
        ],
        "headroom": [
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
        ],
        "n_plus_one": [],
        "stranded": [],
        "exhaustion": [
            {
                "node": r["node"],
                "resource": r["resource"],
                "capacity": _num(r["capacity"] / (GIB if r["resource"] == "memory" else 1), 2),
                "unit": "GiB" if r["resource"] == "memory" else "cores",
                "days": _num(r["days"]),
                "days_pessimistic": _num(r["days_pessimistic"]),
                "days_optimistic": _num(r["days_optimistic"]),
                "trend_per_day": _num(
                    (r["slope_per_day"] or 0) / (GIB if r["resource"] == "memory" else 1), 3
                )
                if r["slope_per_day"] is not None
                else None,
                "n_days": r["n_days"],
            }
            for r in report.exhaustion.iter_rows(named=True)
        ],
        "imbalance": [
            {
                "day": r["day"].isoformat(),
                "mean": _num(r["mean"], 3),
                "max": _num(r["max"], 3),
                "samples": r["samples"],
            }
            for r in _daily_imbalance(report.imbalance).iter_rows(named=True)
        ],
        "top_movers": [
            {
                "vmid": r["vmid"],
                "name": r["name"],
                "moves": r["moves"],
                "gib_moved": _num(r["gib_moved"]),
                "last_move": r["last_move"].strftime("%Y-%m-%d %H:%M UTC")
                if r["last_move"] is not None
                else None,
            }
            for r in report.top_movers.iter_rows(named=True)
        ],
        "forecast_vs_actual": (
            _forecast_rows(report.forecast_vs_actual)
            if report.forecast_vs_actual is not None
            else []
        ),
    }
    if verdict is not None:
        rows["n_plus_one"] = [
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
        rows["stranded"] = [
            {
                "vmid": s.vmid,
                "name": s.name,
                "node": s.node,
                "reason": s.reason.value,
                "detail": s.detail,
            }
            for s in verdict.stranded
        ]
    return rows


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


# --- sections shared by markdown and HTML ----------------------------------------------------


@dataclass(frozen=True)
class Figure:
    caption: str
    svg: str


@dataclass(frozen=True)
class Section:
    heading: str
    text: tuple[str, ...]  # plain sentences, escaped by each renderer
    items: tuple[str, ...] = ()
    table: str | None = None  # key into `table_rows`
    figures: tuple[Figure, ...] = ()


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


def _usage_figures(report: CapacityReport) -> tuple[Figure, ...]:
    usage = report.usage
    names = usage["node"].unique(maintain_order=True).to_list()
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
    figures = []
    for column, capacity, unit, scale, what in (
        ("mem", "memory", "GiB", GIB, "Memory"),
        ("cpu", "cpus", "cores", 1, "CPU"),
    ):
        lines = []
        for name in names:
            part = usage.filter(pl.col("node") == name)
            lines.append(
                Line(name, _epoch(part["ts"]), (part[column] / scale).to_list(), color=colors[name])
            )
        groups: dict[float, list[str]] = {}
        for r in usage.unique("node", keep="last", maintain_order=True).iter_rows(named=True):
            if r[capacity] is not None:
                groups.setdefault(r[capacity] / scale, []).append(r["node"])
        limit = "usable memory" if column == "mem" else "logical CPUs"
        rules = [
            Rule(
                value,
                limit if len(groups) == 1 else f"{limit}: {', '.join(members)}",
                colors[members[0]] if len(groups) > 1 else "#222",
            )
            for value, members in groups.items()
        ]
        svg = line_chart(lines, title=f"{what} use per node", unit=unit, rules=rules)
        figures.append(
            Figure(f"{what} use per node (peak per time bucket) against its capacity.", svg)
        )
    return tuple(figures)


def _imbalance_figure(report: CapacityReport) -> Figure:
    x, cols = _thin(
        _epoch(report.imbalance["ts"]), {"imbalance": report.imbalance["imbalance"].to_list()}
    )
    svg = line_chart(
        [Line("imbalance", x, cols["imbalance"])],
        title="Imbalance over time",
        unit="load MAD",
        rules=[Rule(report.target_imbalance, "target")],
    )
    return Figure("Spread of node load (mean absolute deviation) and the planner's target.", svg)


def _movers_figure(report: CapacityReport) -> Figure:
    movers = report.top_movers
    labels = [f"{n or '?'} ({v})" for n, v in zip(movers["name"], movers["vmid"], strict=True)]
    svg = bar_chart(
        labels,
        [Bars("moves", movers["moves"].cast(pl.Float64).to_list())],
        title="Top movers",
        unit="completed migrations",
    )
    return Figure("Guests migrated most often.", svg)


def _forecast_figures(frame: pl.DataFrame) -> tuple[Figure, ...]:
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
            title=f"Forecast vs actual: {series}",
            unit=unit,
        )
        figures.append(Figure(f"Guest {series}: what happened against the forecast.", svg))
    return tuple(figures)


def sections(report: CapacityReport, *, figures: bool = False) -> list[Section]:
    """The report's sections in order; charts only when ``figures`` (HTML) is asked for."""
    verdict = n_plus_one_verdict(report)
    h = report.horizon_min
    out = [
        Section(
            "Can the cluster lose a node?",
            (verdict[0],),
            tuple(verdict[1:]),
            "n_plus_one" if report.n_plus_one is not None else None,
        ),
        Section(
            "Headroom",
            (
                f"Free capacity per online node now (current use) and at the {h}-minute horizon "
                "(p90 forecast, the risk view). Free memory is after each node's reserve; "
                "negative means over capacity.",
            ),
            table="headroom",
            figures=_headroom_figures(report) if figures else (),
        ),
    ]
    if report.exhaustion.height == 0:
        days = Section("Days until a resource runs out", (_history_note(report),))
    else:
        soonest = report.exhaustion.filter(pl.col("days").is_not_null()).sort("days")
        first = (
            "No node's CPU or memory peaks are rising: nothing runs out on the current trend."
            if soonest.height == 0
            else "Soonest: {resource} on {node} in {days:.0f} days (band {days_pessimistic:.0f}"
            "–{days_optimistic:.0f}).".format(**soonest.row(0, named=True))
        )
        days = Section(
            "Days until a resource runs out",
            (
                first,
                f"Linear trend through the daily peaks of {report.history_days} whole days, with "
                "a 95% band. Memory capacity is the node's memory minus its reserve; CPU capacity "
                "is all its logical CPUs. No days: usage is not rising.",
            ),
            table="exhaustion",
        )
    out.append(days)
    have_history = report.usage.height > 0
    out.append(
        Section(
            "Usage over time",
            (
                "Peak CPU and memory per node in each time bucket, with capacity lines."
                if have_history
                else "No node history yet.",
            ),
            figures=_usage_figures(report) if figures and have_history else (),
        )
    )
    if report.imbalance.height:
        last = report.imbalance.row(-1, named=True)
        text = (
            "Mean absolute deviation of node load (weighted CPU and memory fractions) across "
            f"online nodes; the planner aims below {report.target_imbalance:.3f}. Latest: "
            f"{last['imbalance']:.3f} over {last['nodes']} nodes.",
        )
        out.append(
            Section(
                "Imbalance",
                text,
                table="imbalance",
                figures=(_imbalance_figure(report),) if figures else (),
            )
        )
    else:
        out.append(Section("Imbalance", ("No node history yet.",)))
    if report.top_movers.height:
        out.append(
            Section(
                "Top movers",
                (
                    "Guests migrated most often (completed migrations). GiB moved is estimated "
                    "as the memory each guest uses now times its moves.",
                ),
                table="top_movers",
                figures=(_movers_figure(report),) if figures else (),
            )
        )
    else:
        out.append(Section("Top movers", ("No completed migrations recorded.",)))
    frame = report.forecast_vs_actual
    if frame is None:
        out.append(Section("Forecast vs actual", ("No forecast model yet: nothing to compare.",)))
    else:
        out.append(
            Section(
                "Forecast vs actual",
                (
                    "For the busiest guests: mean absolute error of the mean forecast, and how "
                    "often the actual value stayed at or below the p90 forecast (ideal: 90%).",
                ),
                table="forecast_vs_actual",
                figures=_forecast_figures(frame) if figures else (),
            )
        )
    return out


# --- markdown --------------------------------------------------------------------------------

MAX_TABLE_ROWS = 31
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]|#"})


def _md(text: str) -> str:
    """Text safe inside markdown (and any HTML the viewer allows): no markup, one line."""
    return escape(" ".join(str(text).split()), quote=False).translate(_MD_SPECIAL)


_WORDS = {"cpu": "CPU", "cpus": "CPUs", "gib": "GiB", "pct": "%", "mem": "memory", "vmid": "VMID"}


def _label(key: str) -> str:
    words = " ".join(_WORDS.get(w, w) for w in key.split("_"))
    return words[:1].upper() + words[1:]


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else ""
    return str(value)


def _shown(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    if len(rows) <= MAX_TABLE_ROWS:
        return rows, ""
    return rows[-MAX_TABLE_ROWS:], f"Last {MAX_TABLE_ROWS} of {len(rows)} rows shown."


def _md_table(rows: list[dict[str, Any]]) -> list[str]:
    shown, note = _shown(rows)
    keys = list(shown[0])
    out = [
        "| " + " | ".join(_md(_label(k)) for k in keys) + " |",
        "|" + "|".join("---" for _ in keys) + "|",
    ]
    out += ["| " + " | ".join(_md(_cell(r[k])) for k in keys) + " |" for r in shown]
    return [*out, *([note] if note else [])]


def to_markdown(report: CapacityReport) -> str:
    """The report as markdown for a Prefect artifact: headings, sentences and tables."""
    rows = table_rows(report)
    lines = [
        f"# {_md(report.title)}",
        "",
        _md(
            f"Generated {_iso(report.generated_at)} (cluster time) · horizon "
            f"{report.horizon_min} min · {report.headroom.height - 1} nodes online · "
            f"{report.guests} guests"
            + (f" · offline: {', '.join(report.offline)}" if report.offline else "")
        ),
    ]
    for section in sections(report):
        lines += ["", f"## {_md(section.heading)}", ""]
        lines += [_md(t) for t in section.text]
        if section.items:
            lines += ["", *(f"- {_md(i)}" for i in section.items)]
        if section.table and rows[section.table]:
            lines += ["", *_md_table(rows[section.table])]
    return "\n".join(lines) + "\n"


# --- HTML ------------------------------------------------------------------------------------

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
  section, figure, table { break-inside: avoid; }
}
"""


def _html_table(rows: list[dict[str, Any]]) -> str:
    shown, note = _shown(rows)
    keys = list(shown[0])
    head = "".join(f"<th>{escape(_label(k))}</th>" for k in keys)
    body = []
    for r in shown:
        cells = "".join(
            f'<td class="num">{escape(_cell(r[k]))}</td>'
            if isinstance(r[k], int | float) and not isinstance(r[k], bool)
            else f"<td>{escape(_cell(r[k]))}</td>"
            for k in keys
        )
        body.append(f"<tr>{cells}</tr>")
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return table + (f"<p>{escape(note)}</p>" if note else "")


def figures(report: CapacityReport) -> list[Figure]:
    """Every chart of the HTML report, in order."""
    return [f for s in sections(report, figures=True) for f in s.figures]


def to_html(report: CapacityReport) -> str:
    """One self-contained HTML page: inline CSS and SVG charts, no scripts, no URLs."""
    rows = table_rows(report)
    bad = report.n_plus_one is None or not report.n_plus_one.survivable
    meta = (
        f"Generated {_iso(report.generated_at)} (cluster time) · horizon "
        f"{report.horizon_min} min · {report.headroom.height - 1} nodes online · "
        f"{report.guests} guests"
        + (f" · offline: {', '.join(report.offline)}" if report.offline else "")
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(report.title)}</title><style>{_CSS}</style></head>",
        f"<body><main><h1>{escape(report.title)}</h1>",
        f'<p class="meta">{escape(meta)}</p>',
    ]
    for i, section in enumerate(sections(report, figures=True)):
        parts.append(f"<section><h2>{escape(section.heading)}</h2>")
        for j, text in enumerate(section.text):
            css = ' class="verdict bad"' if bad else ' class="verdict"'
            parts.append(f"<p{css if i == 0 and j == 0 else ''}>{escape(text)}</p>")
        if section.items:
            parts.append("<ul>" + "".join(f"<li>{escape(t)}</li>" for t in section.items) + "</ul>")
        for figure in section.figures:
            parts.append(
                f"<figure>{figure.svg}<figcaption>{escape(figure.caption)}</figcaption></figure>"
            )
        if section.table and rows[section.table]:
            parts.append(_html_table(rows[section.table]))
        parts.append("</section>")
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


__all__ = [
    "CapacityReport",
    "Figure",
    "Section",
    "build_report",
    "figures",
    "n_plus_one_verdict",
    "sections",
    "table_rows",
    "to_html",
    "to_markdown",
]
