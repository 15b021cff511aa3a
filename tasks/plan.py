"""Plans as people read them: rows for tables, a markdown summary, Prefect artifacts, records."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import polars as pl
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from analytics import Store
from engine import Plan
from tasks.migrate import MoveResult
from tasks.records import write

GIB = 1024**3


def move_rows(plan: Plan) -> list[dict[str, Any]]:
    return [
        {
            "#": i,
            "vmid": m.vmid,
            "name": m.name,
            "kind": m.kind,
            "from": m.source,
            "to": m.target,
            "reason": m.reason.value,
            "detail": m.detail,
            "memory GiB": round(m.mem_bytes / GIB, 2),
            "gain": round(m.gain, 4),
            "cost": round(m.cost, 4),
        }
        for i, m in enumerate(plan.moves, 1)
    ]


def skip_rows(plan: Plan, limit: int | None = None) -> list[dict[str, Any]]:
    rows = [
        {
            "vmid": s.vmid,
            "name": s.name,
            "node": s.node,
            "reason": s.reason.value,
            "detail": s.detail,
        }
        for s in plan.skipped
    ]
    return rows if limit is None else rows[:limit]


def load_rows(plan: Plan) -> list[dict[str, Any]]:
    after = {n.node: n for n in plan.loads_after}
    rows = []
    for b in plan.loads_before:
        a = after.get(b.node, b)
        rows.append(
            {
                "node": b.node,
                "cpu before %": round(100 * b.cpu / max(b.cpus, 1), 1),
                "cpu after %": round(100 * a.cpu / max(a.cpus, 1), 1),
                "mem before %": round(100 * b.mem / max(b.memory, 1), 1),
                "mem after %": round(100 * a.mem / max(a.memory, 1), 1),
                "score before": round(b.score, 4),
                "score after": round(a.score, 4),
                "eligible": b.eligible,
            }
        )
    return rows


def _md_table(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "_none_\n"
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(str(r[h]).replace("|", "/") for h in head) + " |")
    return "\n".join(lines) + "\n"


def summary_markdown(plan: Plan, title: str, notes: Sequence[str] = ()) -> str:
    parts = [
        f"# {title}\n",
        f"Planner **{plan.planner}**: imbalance {plan.imbalance_before:.2%} → "
        f"**{plan.imbalance_after:.2%}** with {len(plan.moves)} move(s), "
        f"{plan.gib_moved:.1f} GiB moved, {len(plan.skipped)} guest(s) skipped.\n",
    ]
    parts += [f"- {n}\n" for n in [plan.note, *notes] if n]
    if plan.conflicts:
        parts.append("\n## Rule conflicts\n")
        parts += [
            f"- **{c.rule}** {list(c.vmids)}: {c.detail} → {c.resolution}\n" for c in plan.conflicts
        ]
    parts += ["\n## Moves\n", _md_table(move_rows(plan))]
    parts += ["\n## Node load (predicted)\n", _md_table(load_rows(plan))]
    notable = [r for r in skip_rows(plan) if r["reason"] != "ignored"][:30]
    parts += ["\n## Notable skips\n", _md_table(notable)]
    return "".join(parts)


def publish_plan(plan: Plan, key: str, title: str, notes: Sequence[str] = ()) -> None:
    """The plan as a markdown summary and a table of moves (keyed, so the UI tracks versions)."""
    create_markdown_artifact(
        markdown=summary_markdown(plan, title, notes), key=key, description=title
    )
    create_table_artifact(
        table=move_rows(plan) or [{"#": 0, "detail": "no moves"}],
        key=f"{key}-moves",
        description=f"{title}: moves with their reasons",
    )


def publish_results(results: Sequence[MoveResult], key: str) -> None:
    rows = [
        {
            "vmid": r.vmid,
            "name": r.name,
            "from": r.source,
            "to": r.target,
            "status": r.status,
            "detail": r.detail,
            "seconds": None if r.seconds is None else round(r.seconds, 1),
            "upid": r.upid or "",
        }
        for r in results
    ]
    create_table_artifact(
        table=rows or [{"status": "nothing to execute"}],
        key=key,
        description="what each planned migration did",
    )


def record_plan(store: Store, plan: Plan, plan_id: str, run_id: str, created: float) -> None:
    frame = pl.DataFrame(
        [
            {
                "plan_id": plan_id,
                "run_id": run_id,
                "created": created,
                "planner": plan.planner,
                "imbalance_before": plan.imbalance_before,
                "imbalance_after": plan.imbalance_after,
                "moves": json.dumps([asdict(m) for m in plan.moves], default=str),
                "skips": json.dumps([asdict(s) for s in plan.skipped], default=str),
            }
        ]
    )
    write(store, "plans", frame)
