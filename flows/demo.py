"""`proxflow demo`: the whole product on the simulated cluster, from nothing, in a few minutes.

Every run starts clean: its data (history, models, Prefect's database, the report) lives in
one folder that is emptied first, so no leftover of an earlier run can change the story. The
simulated cluster runs at 60 simulated seconds per second, so a minute-long migration takes
about a second.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from engine import ClusterSnapshot, Plan, Policy, loads
from flows.progress import reporting
from flows.progress_bars import RichReporter
from flows.runtime import connect, use_settings
from flows.settings import Settings

# budgets large enough to reach the target in one run on the 5-node, 56-guest demo cluster
DEMO_POLICY: dict[str, Any] = {"max_moves": 20, "max_moves_per_node": 10}


def demo_settings(data_dir: Path, scenario: str = "demo") -> Settings:
    return Settings(
        data_dir=data_dir,
        simulator={"scenario": scenario, "speed": 60.0},
        forecast={"backfill": "week"},  # enough days for the exhaustion trends
        migrations={"poll_seconds": 0.25},
        policy=DEMO_POLICY,
    )


def reset(data_dir: Path) -> None:
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)


def _change(before: float, after: float, whole: float) -> str:
    return f"{100 * before / whole:.0f}% → {100 * after / whole:.0f}%"


def before_after(
    before: ClusterSnapshot, after: ClusterSnapshot, plan: Plan, policy: Policy
) -> Table:
    """Per node, current load before and after the run, and the predicted load the plan saw."""
    now_before, imb_now_before = loads(before, policy)
    now_after, imb_now_after = loads(after, policy)
    table = Table(
        title=(
            f"Node load: now {imb_now_before:.1%} → {imb_now_after:.1%} imbalance, "
            f"predicted {plan.imbalance_before:.1%} → {plan.imbalance_after:.1%}"
        )
    )
    for col in ("node", "CPU now", "CPU predicted", "memory now", "memory predicted"):
        table.add_column(col, justify="left" if col == "node" else "right")
    current_before = {n.node: n for n in now_before}
    current_after = {n.node: n for n in now_after}
    predicted_after = {n.node: n for n in plan.loads_after}
    for b in plan.loads_before:
        if not b.eligible:
            continue
        cb, ca, pa = current_before[b.node], current_after[b.node], predicted_after[b.node]
        table.add_row(
            b.node,
            _change(cb.cpu, ca.cpu, b.cpus),
            _change(b.cpu, pa.cpu, b.cpus),
            _change(cb.mem, ca.mem, b.memory),
            _change(b.mem, pa.mem, b.memory),
        )
    return table


def run_demo(console: Console, data_dir: Path, scenario: str = "demo") -> int:
    """The story, step by step; returns the exit code (0: every move done, target reached)."""
    from flows.balance import balance
    from flows.capacity import capacity_report
    from flows.ingest import ingest
    from flows.train import train
    from flows.views import nodes_table, plan_tables, results_table

    reset(data_dir)
    settings = demo_settings(data_dir, scenario)
    use_settings(settings)
    policy = settings.balance_policy()
    rt = connect(settings)  # starts the simulated cluster in this process
    console.print(Rule("1. The simulated cluster"))
    inventory = rt.gateway.inventory()
    console.print(
        f"{len(inventory.nodes)} nodes, {len(inventory.guests)} guests, PVE "
        f"{rt.gateway.version()}, reached over HTTPS with a verified certificate"
    )
    console.print(nodes_table(inventory.snapshot(), policy, "Nodes as they are"))

    with RichReporter(console) as bars, reporting(bars):
        console.print(Rule("2. History: a week backfilled from rrddata, then one ingest"))
        summary = ingest(backfill=True)
        console.print(
            f"{summary.backfilled_rows} samples backfilled; one ingest cycle read "
            f"{summary.guests} guests in {summary.api_calls} API calls"
        )
        console.print(Rule("3. Forecasts: train and validate against naive baselines"))
        for result in train():
            console.print(f"{result.column}: {result.detail}")

    console.print(Rule("4. The plan, explained"))
    preview = balance(dry_run=True)
    for table in plan_tables(preview.plan, skips=12):
        console.print(table)

    console.print(Rule("5. Executing through Prefect, under the concurrency limits"))
    with RichReporter(console) as bars, reporting(bars):
        outcome = balance(dry_run=False)
    console.print(results_table(outcome.results))
    after = rt.gateway.inventory().snapshot()
    console.print(
        before_after(replace(outcome.snapshot, forecasts=()), after, outcome.plan, policy)
    )

    console.print(Rule("6. Capacity report"))
    html = data_dir / "capacity-report.html"
    report = capacity_report(html=str(html))
    from analytics.report import n_plus_one_verdict

    for line in n_plus_one_verdict(report.report):
        console.print(line)
    console.print(f"wrote [bold]{html}[/bold] (open it in a browser; it works offline)")
    failed = [r for r in outcome.results if r.status != "ok"]
    reached = outcome.plan.imbalance_after < policy.target_imbalance
    console.print(Rule())
    console.print(
        f"{len(outcome.results) - len(failed)} of {len(outcome.results)} migrations done; "
        f"predicted imbalance {outcome.plan.imbalance_before:.1%} → "
        f"{outcome.plan.imbalance_after:.1%} (target {policy.target_imbalance:.0%})"
    )
    console.print(f"history, models and report: {data_dir}")
    use_settings(None)
    return 0 if not failed and reached else 1
